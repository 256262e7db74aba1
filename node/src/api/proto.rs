//! The messages and service stubs of the client protocol (package
//! `finkfs.client.v1`), generated from `node/proto/client.proto` at build
//! time.

tonic::include_proto!("finkfs.client.v1");
