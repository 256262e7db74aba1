//! Checking a backup: that its manifest, snapshot and every block it names
//! are on the target, and with `read_data`, that their bytes match their
//! hashes.

use std::io;
use std::path::PathBuf;

use super::target::BackupTarget;
use super::BackupError;

/// One thing wrong with a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyProblem {
    pub file: PathBuf,
    pub offset: u64,
    pub reason: String,
}

/// What verifying one backup found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    pub seq: u64,
    pub blocks_checked: u64,
    /// Bytes re-hashed (zero without `read_data`).
    pub bytes_read: u64,
    pub problems: Vec<VerifyProblem>,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

impl BackupTarget {
    /// Verifies backup `seq`. Without `read_data`, checks that every file it
    /// names exists with the right length; with it, re-hashes every byte.
    /// A damaged manifest is an error (nothing else can be checked).
    pub fn verify(&self, seq: u64, read_data: bool) -> Result<VerifyReport, BackupError> {
        let manifest = self.manifest(seq)?;
        let mut report = VerifyReport {
            seq,
            ..VerifyReport::default()
        };
        let snapshot_path = BackupTarget::snapshot_path(&manifest.snapshot_hash);
        let snapshot = if read_data {
            self.read_snapshot(&manifest)
                .map(|bytes| bytes.len() as u64)
        } else {
            self.expect_len(&snapshot_path, manifest.snapshot_len)
        };
        record(&mut report, snapshot_path, snapshot)?;
        for block in &manifest.blocks {
            let path = BackupTarget::block_path(&block.hash);
            let checked = if read_data {
                self.read_block(block).map(|data| data.len() as u64)
            } else {
                self.expect_len(&path, block.len)
            };
            record(&mut report, path, checked)?;
            report.blocks_checked += 1;
        }
        if !read_data {
            report.bytes_read = 0;
        }
        Ok(report)
    }

    /// The file's length, or a problem when it differs from `expected`.
    fn expect_len(&self, path: &std::path::Path, expected: u64) -> Result<u64, BackupError> {
        let len = self
            .disk()
            .open(path)
            .and_then(|file| file.len())
            .map_err(|e| BackupError::io(path, e))?;
        if len != expected {
            return Err(BackupError::Corrupt {
                file: path.to_path_buf(),
                offset: 0,
                reason: format!("{len} bytes where the manifest names {expected}"),
            });
        }
        Ok(len)
    }
}

/// Adds the outcome of one check to the report: damage and a missing file
/// are problems; any other I/O error stops the verification.
fn record(
    report: &mut VerifyReport,
    path: PathBuf,
    outcome: Result<u64, BackupError>,
) -> Result<(), BackupError> {
    match outcome {
        Ok(bytes) => report.bytes_read += bytes,
        Err(BackupError::Corrupt {
            file,
            offset,
            reason,
        }) => report.problems.push(VerifyProblem {
            file,
            offset,
            reason,
        }),
        Err(BackupError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            report.problems.push(VerifyProblem {
                file: path,
                offset: 0,
                reason: "missing".into(),
            })
        }
        Err(other) => return Err(other),
    }
    Ok(())
}
