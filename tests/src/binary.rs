//! Where the `finkfs-node` binary under test is.
//!
//! A test executable lives in `target/<profile>/deps/`; cargo puts the
//! node binary in `target/<profile>/`. `FINKFS_NODE_BIN` overrides the
//! search. Nothing is built here: a missing binary is a clear failure.

use std::path::PathBuf;

/// Environment variable naming the node binary explicitly.
pub const NODE_BIN_ENV: &str = "FINKFS_NODE_BIN";
/// File name of the node binary.
pub const NODE_BIN_NAME: &str = "finkfs-node";

/// The node binary, or a message saying how to build it.
pub fn node_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(NODE_BIN_ENV) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        return Err(format!(
            "{NODE_BIN_ENV}={} is not a file; build the node with `cargo build -p finkfs-node`",
            path.display()
        ));
    }
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot locate the test executable: {e}"))?;
    let mut candidates = Vec::new();
    // target/<profile>/deps/<test> -> target/<profile>/finkfs-node
    for dir in exe.ancestors().skip(1).take(2) {
        candidates.push(dir.join(NODE_BIN_NAME));
    }
    if let Some(found) = candidates.iter().find(|c| c.is_file()) {
        return Ok(found.clone());
    }
    let looked: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
    Err(format!(
        "no {NODE_BIN_NAME} binary (looked at {}); build it with `cargo build -p finkfs-node` \
         (same profile as the tests) or name it with {NODE_BIN_ENV}",
        looked.join(", ")
    ))
}
