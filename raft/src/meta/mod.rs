//! The meta store: the vote and the other small state of a group that must
//! survive a crash, kept in two checksummed, versioned copies, `meta.a` and
//! `meta.b` (layout in `copy`, and in `docs/format/meta.md`).
//!
//! Why two copies, written A then B with a sync after each: a power cut
//! during `save` tears at most the copy being written, so the other holds
//! either the new generation or the previous one. Recovery takes the newest
//! copy that verifies. For that to hold on the next save, `open` first
//! brings both copies to the newest generation (a copy left older by a cut,
//! damaged or missing is rewritten atomically) and syncs them: the value it
//! returns is durable before the caller acts on it. When no copy verifies,
//! `open` still succeeds, with `lost = true`, and touches nothing: the node
//! must not vote (invariant 5) until the caller repairs it with `save`.

mod copy;

use std::io;
use std::path::{Path, PathBuf};

use finkfs_seam::{write_file_atomic, Disk, DiskRef, FileRef};

pub use copy::{FORMAT_VERSION, PAYLOAD_BYTES_MAX, PAYLOAD_OFFSET};

use copy::{Copy, CopyProblem};

/// File names of the copies, in the order `save` writes them.
pub const COPY_NAMES: [&str; 2] = ["meta.a", "meta.b"];

/// What recovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaRecovery {
    /// Generation of the newest copy that verifies (0 if none).
    pub generation: u64,
    /// Its payload; None if never saved or lost.
    pub payload: Option<Vec<u8>>,
    /// Every copy that did not verify, with where and why.
    pub damaged: Vec<MetaDamage>,
    /// Every copy is damaged: the state is gone, the node must not vote.
    pub lost: bool,
}

/// A copy that did not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaDamage {
    pub file: PathBuf,
    pub offset: u64,
    pub reason: String,
}

/// Errors of the meta store. Damage is not an error: it is reported in
/// [`MetaRecovery`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetaError {
    #[error("meta I/O error on {} at offset {offset}: {source}", file.display())]
    Io {
        file: PathBuf,
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("meta payload of {bytes} bytes exceeds the ceiling of {max} bytes")]
    PayloadTooLarge { bytes: u64, max: u64 },
    /// A previous save failed midway: reopen.
    #[error("meta store poisoned by an earlier write or sync failure; reopen it")]
    Poisoned,
    #[error("{} has meta format version {version}, this build reads only version {supported}", file.display())]
    UnsupportedVersion {
        file: PathBuf,
        version: u32,
        supported: u32,
    },
}

fn io_error(file: &Path, offset: u64) -> impl FnOnce(io::Error) -> MetaError + '_ {
    move |source| MetaError::Io {
        file: file.to_path_buf(),
        offset,
        source,
    }
}

/// The two copies of one group's meta record, and the newest value.
#[derive(Debug)]
pub struct MetaStore {
    disk: DiskRef,
    paths: [PathBuf; 2],
    /// Open handles for in-place writes; None for a copy that is missing.
    files: [Option<FileRef>; 2],
    generation: u64,
    payload: Option<Vec<u8>>,
    poisoned: bool,
}

impl MetaStore {
    /// Opens `dir` (creating it durably). A fresh directory gets both copies
    /// at generation 0 with no payload, each written atomically.
    pub fn open(disk: DiskRef, dir: PathBuf) -> Result<(MetaStore, MetaRecovery), MetaError> {
        disk.create_dir_all(&dir).map_err(io_error(&dir, 0))?;
        let paths = COPY_NAMES.map(|name| dir.join(name));
        let found = [read_copy(&*disk, &paths[0])?, read_copy(&*disk, &paths[1])?];
        let recovery = recover(&found, &paths);
        if !recovery.lost {
            let newest = copy::encode(recovery.generation, recovery.payload.as_deref());
            for (found, path) in found.iter().zip(&paths) {
                if !matches!(found, Found::Valid(c) if c.generation == recovery.generation && c.payload == recovery.payload)
                {
                    tracing::info!(file = %path.display(), generation = recovery.generation, "writing meta copy");
                    write_file_atomic(&*disk, path, &newest).map_err(io_error(path, 0))?;
                }
            }
        }
        for damage in &recovery.damaged {
            tracing::error!(file = %damage.file.display(), offset = damage.offset, reason = %damage.reason, "meta copy damaged");
        }
        let files = [
            open_and_sync(&*disk, &paths[0])?,
            open_and_sync(&*disk, &paths[1])?,
        ];
        let store = MetaStore {
            disk,
            paths,
            files,
            generation: recovery.generation,
            payload: recovery.payload.clone(),
            poisoned: false,
        };
        Ok((store, recovery))
    }

    /// Read-only recovery of `dir`, for fsck: nothing is written. An absent
    /// directory reads as fresh.
    pub fn scan(disk: &dyn Disk, dir: &Path) -> Result<MetaRecovery, MetaError> {
        let paths = COPY_NAMES.map(|name| dir.join(name));
        let found = [read_copy(disk, &paths[0])?, read_copy(disk, &paths[1])?];
        Ok(recover(&found, &paths))
    }

    /// The newest saved payload; None if never saved (or lost).
    pub fn payload(&self) -> Option<&[u8]> {
        self.payload.as_deref()
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Saves `payload` as generation + 1, durably before returning: written
    /// to copy A and synced, then to copy B and synced.
    pub fn save(&mut self, payload: &[u8]) -> Result<(), MetaError> {
        if self.poisoned {
            return Err(MetaError::Poisoned);
        }
        if payload.len() as u64 > u64::from(PAYLOAD_BYTES_MAX) {
            return Err(MetaError::PayloadTooLarge {
                bytes: payload.len() as u64,
                max: u64::from(PAYLOAD_BYTES_MAX),
            });
        }
        let generation = self.generation + 1;
        let bytes = copy::encode(generation, Some(payload));
        for which in 0..COPY_NAMES.len() {
            if let Err(error) = self.write_copy(which, &bytes) {
                self.poisoned = true;
                tracing::error!(file = %self.paths[which].display(), %error, "meta store poisoned");
                return Err(error);
            }
        }
        self.generation = generation;
        self.payload = Some(payload.to_vec());
        Ok(())
    }

    fn write_copy(&mut self, which: usize, bytes: &[u8]) -> Result<(), MetaError> {
        let path = &self.paths[which];
        match &self.files[which] {
            Some(file) => {
                file.write_at(0, bytes).map_err(io_error(path, 0))?;
                file.set_len(bytes.len() as u64)
                    .map_err(io_error(path, 0))?;
                file.sync().map_err(io_error(path, 0))
            }
            None => {
                // Only after recovery found every copy lost and one missing.
                write_file_atomic(&*self.disk, path, bytes).map_err(io_error(path, 0))?;
                self.files[which] = Some(self.disk.open(path).map_err(io_error(path, 0))?);
                Ok(())
            }
        }
    }
}

/// One copy as found on disk.
enum Found {
    Missing,
    Valid(Copy),
    Damaged(MetaDamage),
}

fn read_copy(disk: &dyn Disk, path: &Path) -> Result<Found, MetaError> {
    if !disk.exists(path).map_err(io_error(path, 0))? {
        return Ok(Found::Missing);
    }
    let file = disk.open(path).map_err(io_error(path, 0))?;
    let len = file.len().map_err(io_error(path, 0))?;
    if len > copy::COPY_BYTES_MAX {
        let reason = format!(
            "file is {len} bytes, larger than any copy ({} bytes)",
            copy::COPY_BYTES_MAX
        );
        return Ok(Found::Damaged(MetaDamage {
            file: path.to_path_buf(),
            offset: copy::COPY_BYTES_MAX,
            reason,
        }));
    }
    let mut bytes = vec![0u8; usize::try_from(len).expect("bounded by COPY_BYTES_MAX")];
    file.read_at(0, &mut bytes).map_err(io_error(path, 0))?;
    match copy::decode(&bytes) {
        Ok(copy) => Ok(Found::Valid(copy)),
        Err(CopyProblem::Damaged { offset, reason }) => Ok(Found::Damaged(MetaDamage {
            file: path.to_path_buf(),
            offset,
            reason,
        })),
        Err(CopyProblem::UnsupportedVersion(version)) => Err(MetaError::UnsupportedVersion {
            file: path.to_path_buf(),
            version,
            supported: FORMAT_VERSION,
        }),
    }
}

/// Picks the newest valid copy and lists the damaged ones. Both copies
/// missing is a fresh directory; one missing beside a generation-0 copy is a
/// fresh directory whose creation was cut short (each copy is created
/// atomically, A first). Any other missing copy is damage.
fn recover(found: &[Found; 2], paths: &[PathBuf; 2]) -> MetaRecovery {
    let fresh = match found {
        [Found::Missing, Found::Missing] => true,
        [Found::Valid(c), Found::Missing] | [Found::Missing, Found::Valid(c)] => c.generation == 0,
        _ => false,
    };
    if fresh {
        return MetaRecovery {
            generation: 0,
            payload: None,
            damaged: Vec::new(),
            lost: false,
        };
    }
    let mut newest: Option<&Copy> = None;
    let mut damaged = Vec::new();
    for (found, path) in found.iter().zip(paths) {
        match found {
            Found::Missing => damaged.push(MetaDamage {
                file: path.clone(),
                offset: 0,
                reason: "copy missing".to_string(),
            }),
            Found::Damaged(damage) => damaged.push(damage.clone()),
            Found::Valid(copy) => match newest {
                Some(best)
                    if best.generation == copy.generation && best.payload != copy.payload =>
                {
                    let reason = format!(
                        "generation {} differs in payload from the other copy",
                        copy.generation
                    );
                    damaged.push(MetaDamage {
                        file: path.clone(),
                        offset: copy::PAYLOAD_OFFSET as u64,
                        reason,
                    });
                }
                Some(best) if best.generation >= copy.generation => {}
                _ => newest = Some(copy),
            },
        }
    }
    match newest {
        Some(copy) => MetaRecovery {
            generation: copy.generation,
            payload: copy.payload.clone(),
            damaged,
            lost: false,
        },
        None => MetaRecovery {
            generation: 0,
            payload: None,
            damaged,
            lost: true,
        },
    }
}

fn open_and_sync(disk: &dyn Disk, path: &Path) -> Result<Option<FileRef>, MetaError> {
    if !disk.exists(path).map_err(io_error(path, 0))? {
        return Ok(None);
    }
    let file = disk.open(path).map_err(io_error(path, 0))?;
    // What recovery returned must be durable before the caller acts on it:
    // a copy read from the page cache after a process crash may not be.
    file.sync().map_err(io_error(path, 0))?;
    Ok(Some(file))
}
