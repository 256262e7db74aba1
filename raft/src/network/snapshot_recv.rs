//! Receiving a full snapshot (server side of InstallSnapshot).
//!
//! The chunks are written through the seam into
//! `<snapshot dir>/incoming/receiving.part`; each chunk's BLAKE3 is checked
//! before it is written, and the whole file's length and BLAKE3 against the
//! trailer. Only then is the file fsynced, renamed to
//! `incoming/<BLAKE3 hex>.snap`, the directory fsynced, and the snapshot
//! handed to `Raft::install_full_snapshot`. A stream that fails anywhere
//! leaves nothing behind but a temporary file that is removed.
//!
//! One snapshot per group is received at a time. The receive and the install
//! run in their own task, holding the group's receive lock until openraft
//! has installed the snapshot, even if the sender hangs up meanwhile. The
//! next receive clears `incoming/`, so the state machine's
//! `install_snapshot` must move the file out (`SnapshotFile::rename_to`) or
//! read what it needs before it returns.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use finkfs_seam::{DiskRef, FileRef};
use futures_util::StreamExt;
use openraft::storage::RaftStateMachine;
use tonic::Status;

use super::convert::{self, hash_from_bytes};
use super::proto;
use super::server::{invalid, stopped, GroupHandle, GroupRegistry};
use super::snapshot_file::SnapshotFile;
use super::transport::IncomingChunks;
use super::{SNAPSHOT_CHUNK_BYTES, SNAPSHOT_FILE_BYTES_MAX, STREAM_IDLE_TIMEOUT};
use crate::types::{GroupId, Snapshot, SnapshotMeta, TypeConfig};

/// Subdirectory of a group's snapshot directory where received snapshots
/// land.
pub const INCOMING_DIR: &str = "incoming";
/// Name of the file a snapshot is received into.
const PART_FILE: &str = "receiving.part";

/// Receives one snapshot stream and installs it.
pub(crate) async fn receive<SM>(
    registry: Arc<GroupRegistry<SM>>,
    mut inbound: IncomingChunks,
) -> Result<proto::SnapshotReply, Status>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    let first = next_chunk(&mut inbound)
        .await?
        .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
    let handle = registry.require(GroupId(first.group_id))?;
    let header = first
        .header
        .clone()
        .ok_or_else(|| Status::invalid_argument("first snapshot chunk has no header"))?;
    let (vote, meta) =
        convert::snapshot_header_from_proto(header).map_err(|e| invalid("snapshot header", &e))?;
    check_against_committed(&handle, &meta)?;
    let guard = Arc::clone(&handle.receiving)
        .try_lock_owned()
        .map_err(|_| {
            Status::aborted(format!(
                "a snapshot for group {} is already being received",
                first.group_id
            ))
        })?;
    // The task outlives this call if the sender hangs up, so that the receive
    // lock is held until openraft is done with the file.
    let task = crate::rt::spawn(async move {
        let _guard = guard;
        let file = receive_file(&handle, first, inbound).await?;
        tracing::info!(path = %file.path().display(), bytes = file.len_bytes(), "snapshot received");
        let snapshot = Snapshot {
            meta,
            snapshot: file,
        };
        let response = handle
            .raft()
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| stopped(&e))?;
        Ok(proto::SnapshotReply {
            vote: Some(convert::vote_to_proto(&response.vote)),
        })
    });
    task.await
        .map_err(|e| Status::internal(format!("snapshot receive task failed: {e}")))?
}

/// openraft asserts that a snapshot newer than the local committed log id
/// is at a greater index; refuse one that is not instead (best effort: the
/// committed log id only grows).
fn check_against_committed<SM>(handle: &GroupHandle<SM>, meta: &SnapshotMeta) -> Result<(), Status>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    use openraft::async_runtime::watch::WatchReceiver;
    let committed = handle.raft().metrics().borrow_watched().local_committed;
    if let (Some(last), Some(committed)) = (meta.last_log_id, committed) {
        if last > committed && last.index <= committed.index {
            return Err(Status::failed_precondition(format!(
                "snapshot up to {last} contradicts the locally committed log id {committed}"
            )));
        }
    }
    Ok(())
}

async fn next_chunk(inbound: &mut IncomingChunks) -> Result<Option<proto::SnapshotChunk>, Status> {
    match tokio::time::timeout(STREAM_IDLE_TIMEOUT, inbound.next()).await {
        Err(_) => Err(Status::deadline_exceeded(
            "no snapshot chunk arrived in time",
        )),
        Ok(item) => item.transpose(),
    }
}

/// Writes the stream's chunks to a verified, durable file.
async fn receive_file<SM>(
    handle: &GroupHandle<SM>,
    first: proto::SnapshotChunk,
    mut inbound: IncomingChunks,
) -> Result<SnapshotFile, Status>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotFile>,
{
    let dir = handle.snapshot_dir().join(INCOMING_DIR);
    let disk = Arc::clone(handle.snapshot_disk());
    let part = blocking({
        let (disk, dir) = (Arc::clone(&disk), dir.clone());
        move || Part::start(disk, dir)
    })
    .await?;
    let file = match receive_chunks(part, first, &mut inbound).await {
        Ok((part, trailer)) => blocking(move || part.finish(trailer)).await,
        Err(status) => Err(status),
    };
    if file.is_err() {
        // Leave no partial file behind; a failure here is only logged: the
        // next receive clears the directory again.
        let part_path = dir.join(PART_FILE);
        let removed = blocking(move || remove_if_exists(disk.as_ref(), &part_path)).await;
        if let Err(status) = removed {
            tracing::warn!(%status, "could not remove a partial snapshot");
        }
    }
    file
}

/// Reads chunks until the trailer; returns the part file and the trailer's
/// length and BLAKE3.
async fn receive_chunks(
    mut part: Part,
    first: proto::SnapshotChunk,
    inbound: &mut IncomingChunks,
) -> Result<(Part, (u64, [u8; 32])), Status> {
    let group_id = first.group_id;
    let mut chunk = first;
    loop {
        if chunk.group_id != group_id {
            return Err(Status::invalid_argument(
                "snapshot chunks name different groups",
            ));
        }
        let trailer = chunk.trailer.take();
        part.check_chunk(&chunk)?;
        let (offset, data) = (chunk.offset, chunk.data);
        part = blocking(move || part.write(offset, data).map(|()| part)).await?;
        if let Some(trailer) = trailer {
            let file_blake3 = hash_from_bytes(&trailer.file_blake3, "trailer.file_blake3")
                .map_err(|e| invalid("snapshot trailer", &e))?;
            if next_chunk(inbound).await?.is_some() {
                return Err(Status::invalid_argument("snapshot chunk after the trailer"));
            }
            return Ok((part, (trailer.file_bytes, file_blake3)));
        }
        chunk = next_chunk(inbound).await?.ok_or_else(|| {
            Status::invalid_argument(format!(
                "snapshot stream ended at byte {} before its trailer",
                part.received
            ))
        })?;
        if chunk.header.is_some() {
            return Err(Status::invalid_argument("snapshot header in a later chunk"));
        }
    }
}

/// The file a snapshot is being received into.
struct Part {
    disk: DiskRef,
    dir: PathBuf,
    file: FileRef,
    received: u64,
    hasher: blake3::Hasher,
}

impl Part {
    /// Clears the incoming directory and creates the part file.
    fn start(disk: DiskRef, dir: PathBuf) -> Result<Part, Status> {
        disk.create_dir_all(&dir).map_err(|e| io_status(&dir, &e))?;
        let leftovers = disk.list(&dir).map_err(|e| io_status(&dir, &e))?;
        for name in &leftovers {
            let path = dir.join(name);
            disk.remove(&path).map_err(|e| io_status(&path, &e))?;
        }
        let path = dir.join(PART_FILE);
        let file = disk.create(&path).map_err(|e| io_status(&path, &e))?;
        Ok(Part {
            disk,
            dir,
            file,
            received: 0,
            hasher: blake3::Hasher::new(),
        })
    }

    /// Checks a chunk's place, size and BLAKE3 before anything is written.
    fn check_chunk(&self, chunk: &proto::SnapshotChunk) -> Result<(), Status> {
        if chunk.offset != self.received {
            return Err(Status::invalid_argument(format!(
                "snapshot chunk at offset {} where {} was expected",
                chunk.offset, self.received
            )));
        }
        let bytes = chunk.data.len() as u64;
        if bytes > SNAPSHOT_CHUNK_BYTES as u64 {
            return Err(Status::invalid_argument(format!(
                "snapshot chunk of {bytes} bytes, more than {SNAPSHOT_CHUNK_BYTES}"
            )));
        }
        if self.received + bytes > SNAPSHOT_FILE_BYTES_MAX {
            return Err(Status::invalid_argument(format!(
                "snapshot larger than {SNAPSHOT_FILE_BYTES_MAX} bytes"
            )));
        }
        let expected = hash_from_bytes(&chunk.data_blake3, "data_blake3")
            .map_err(|e| invalid("snapshot chunk", &e))?;
        let actual = blake3::hash(&chunk.data);
        if actual != blake3::Hash::from(expected) {
            return Err(Status::data_loss(format!(
                "snapshot chunk at offset {} failed its BLAKE3 check",
                chunk.offset
            )));
        }
        Ok(())
    }

    fn write(&mut self, offset: u64, data: Bytes) -> Result<(), Status> {
        let path = self.dir.join(PART_FILE);
        self.file
            .write_at(offset, &data)
            .map_err(|e| io_status(&path, &e))?;
        self.hasher.update(&data);
        self.received += data.len() as u64;
        Ok(())
    }

    /// Checks the trailer, makes the file durable under its final name.
    fn finish(self, (file_bytes, file_blake3): (u64, [u8; 32])) -> Result<SnapshotFile, Status> {
        if file_bytes != self.received {
            return Err(Status::data_loss(format!(
                "snapshot trailer says {file_bytes} bytes, {} were received",
                self.received
            )));
        }
        let actual = self.hasher.finalize();
        if actual != blake3::Hash::from(file_blake3) {
            return Err(Status::data_loss(
                "received snapshot file failed its BLAKE3 check",
            ));
        }
        let part_path = self.dir.join(PART_FILE);
        self.file.sync().map_err(|e| io_status(&part_path, &e))?;
        drop(self.file);
        let final_path = self.dir.join(format!("{}.snap", actual.to_hex()));
        self.disk
            .rename(&part_path, &final_path)
            .map_err(|e| io_status(&final_path, &e))?;
        self.disk
            .sync_dir(&self.dir)
            .map_err(|e| io_status(&self.dir, &e))?;
        Ok(SnapshotFile::from_parts(
            self.disk,
            final_path,
            file_bytes,
            file_blake3,
        ))
    }
}

fn remove_if_exists(disk: &dyn finkfs_seam::Disk, path: &Path) -> Result<(), Status> {
    if disk.exists(path).map_err(|e| io_status(path, &e))? {
        disk.remove(path).map_err(|e| io_status(path, &e))?;
        disk.sync_dir(finkfs_seam::parent_dir(path))
            .map_err(|e| io_status(path, &e))?;
    }
    Ok(())
}

fn io_status(path: &Path, error: &std::io::Error) -> Status {
    tracing::error!(path = %path.display(), %error, "snapshot receive failed on the local disk");
    Status::internal(format!(
        "snapshot receive failed at {}: {error}",
        path.display()
    ))
}

/// Runs seam I/O off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    crate::rt::blocking(work)
        .await
        .map_err(|e| Status::internal(format!("snapshot I/O task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use finkfs_simdisk::SimDisk;

    use super::*;

    fn chunk(offset: u64, data: &'static [u8]) -> proto::SnapshotChunk {
        proto::SnapshotChunk {
            group_id: 0,
            header: None,
            offset,
            data: Bytes::from_static(data),
            data_blake3: Bytes::copy_from_slice(blake3::hash(data).as_bytes()),
            trailer: None,
        }
    }

    fn part() -> (SimDisk, Part) {
        let sim = SimDisk::new(3);
        let disk: DiskRef = Arc::new(sim.clone());
        (
            sim,
            Part::start(disk, PathBuf::from("snapshots/incoming")).unwrap(),
        )
    }

    #[test]
    fn verified_chunks_become_a_durable_snapshot() {
        let (sim, mut part) = part();
        for (offset, data) in [(0u64, &b"hello "[..]), (6, &b"world"[..])] {
            part.check_chunk(&chunk(offset, data)).unwrap();
            part.write(offset, Bytes::from_static(data)).unwrap();
        }
        let whole = *blake3::hash(b"hello world").as_bytes();
        let file = part.finish((11, whole)).unwrap();
        sim.power_cut();
        assert_eq!(file.read_all().unwrap(), b"hello world");
        assert_eq!(
            file.path().parent().unwrap(),
            Path::new("snapshots/incoming")
        );
    }

    #[test]
    fn chunk_with_wrong_blake3_is_refused_before_writing() {
        let (_, part) = part();
        let mut bad = chunk(0, b"hello");
        bad.data = Bytes::from_static(b"jello");
        assert_eq!(
            part.check_chunk(&bad).unwrap_err().code(),
            tonic::Code::DataLoss
        );
    }

    #[test]
    fn chunk_out_of_place_is_refused() {
        let (_, part) = part();
        assert_eq!(
            part.check_chunk(&chunk(5, b"x")).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn whole_file_mismatch_is_data_loss() {
        let (_, mut part) = part();
        part.write(0, Bytes::from_static(b"abc")).unwrap();
        let other = *blake3::hash(b"abd").as_bytes();
        assert_eq!(
            part.finish((3, other)).unwrap_err().code(),
            tonic::Code::DataLoss
        );
    }

    #[test]
    fn leftovers_are_cleared_when_a_receive_starts() {
        let sim = SimDisk::new(4);
        let disk: DiskRef = Arc::new(sim.clone());
        let dir = PathBuf::from("snapshots/incoming");
        disk.create_dir_all(&dir).unwrap();
        disk.create(&dir.join("old.snap")).unwrap();
        let _part = Part::start(Arc::clone(&disk), dir.clone()).unwrap();
        assert_eq!(disk.list(&dir).unwrap(), vec![PART_FILE.to_string()]);
    }
}
