//! Compiles the client protocol. protoc comes from `protoc-bin-vendored`, so
//! a fresh machine needs no system package to build.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // The build script runs single-threaded: nothing reads the environment
    // concurrently while it is set.
    std::env::set_var("PROTOC", protoc);
    println!("cargo:rerun-if-changed=proto/client.proto");
    tonic_prost_build::configure()
        // Object bytes as `bytes::Bytes`: decoded without a copy out of the
        // receive buffer.
        .bytes(".")
        .compile_protos(&["proto/client.proto"], &["proto"])?;
    Ok(())
}
