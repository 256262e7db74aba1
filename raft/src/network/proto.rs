//! The messages and service stubs of the peer protocol (package
//! `finkfs.peer.v1`), generated from `raft/proto/peer.proto` at build time.

tonic::include_proto!("finkfs.peer.v1");
