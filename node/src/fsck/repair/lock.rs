//! Whether a node is running on a data directory: a repair must never
//! change files a running node holds open (it would keep writing from
//! what it has in memory). The daemon writes its process id to
//! [`PID_FILE`] at the root of the data directory when it starts; the file
//! left by a node that crashed names a process that is gone (or is no
//! longer a finkfs node), which does not count.

use std::io;
use std::path::Path;

use finkfs_seam::DiskRef;

/// The daemon's process id file, at the root of the data directory.
pub const PID_FILE: &str = "finkfs-node.pid";
/// The process name a node runs under (as Linux shows it in `comm`).
const NODE_PROCESS: &str = "finkfs-node";

/// Records this process as the node running on `disk`.
pub fn write_pid_file(disk: &DiskRef) -> io::Result<()> {
    let pid = std::process::id().to_string();
    finkfs_seam::write_file_atomic(&**disk, Path::new(PID_FILE), pid.as_bytes())
}

/// The process id of a finkfs node running on `disk`, if one is.
pub fn running_node(disk: &DiskRef) -> io::Result<Option<u32>> {
    let path = Path::new(PID_FILE);
    if !disk.exists(path)? {
        return Ok(None);
    }
    let bytes = finkfs_seam::read_file(&**disk, path)?;
    let Some(pid) = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
    else {
        return Ok(None);
    };
    if pid == std::process::id() {
        return Ok(None);
    }
    // /proc is not durable data: it tells whether that process lives.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    Ok(comm.trim().starts_with(NODE_PROCESS).then_some(pid))
}
