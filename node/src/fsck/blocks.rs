//! The packs: every record read and verified by the block store's own scan
//! (`BlockReader::scan_pack`), and compared with what the index says is
//! live. A live block that does not verify is damage; bytes nothing refers
//! to that do not verify, and records that verify but nothing refers to, are
//! what crashes leave (informational).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use finkfs_seam::DiskRef;

use crate::blocks::{
    BlockError, BlockLocation, BlockReader, ScanItem, LOST_PACK, PACK_HEADER_BYTES,
    RECORD_HEADER_BYTES,
};
use crate::hex::hex;

use super::index::{IndexContent, LiveBlock};
use super::report::{Problem, ProblemKind, Structure};
use super::{exists, first_unreadable, is_medium_error, Findings, FsckError, Progress};

pub(crate) fn check(
    disk: &DiskRef,
    dir: &Path,
    content: Option<&IndexContent>,
    findings: &mut Findings,
    progress: &mut dyn Progress,
) -> Result<(), FsckError> {
    let reader = BlockReader::read_only(disk.clone(), dir.to_path_buf());
    let packs: BTreeSet<u64> = if exists(disk, dir)? {
        reader
            .packs()
            .map_err(|e| fatal(dir, e))?
            .into_iter()
            .collect()
    } else {
        BTreeSet::new()
    };
    let empty = BTreeMap::new();
    let live_all = content.map_or(&empty, |c| &c.live);
    for &seq in &packs {
        let live: BTreeMap<u64, LiveBlock> = live_all
            .range((seq, 0)..=(seq, u64::MAX))
            .map(|((_, offset), live)| (*offset, *live))
            .collect();
        let mut pack = PackCheck {
            disk,
            reader: &reader,
            seq,
            path: reader.pack_path(seq),
            live,
            judged: BTreeSet::new(),
            index_known: content.is_some(),
        };
        let len = pack.run(findings)?;
        findings.totals.packs += 1;
        findings.totals.bytes_checked += len;
        progress.checked(len, &pack.path);
    }
    for ((seq, offset), live) in live_all {
        if !packs.contains(seq) {
            let detail = if *seq == LOST_PACK {
                format!(
                    "block {} was installed from a snapshot as lost: no replica held an intact copy; the objects that refer to it are not served until one is written again (from a backup)",
                    hex(&live.hash)
                )
            } else {
                format!(
                    "the index says block {} lives here, but the pack file is missing",
                    hex(&live.hash)
                )
            };
            let kind = ProblemKind::MissingBlock {
                hash: hex(&live.hash),
            };
            findings.push(blocks_problem(
                kind,
                &reader.pack_path(*seq),
                *offset,
                detail,
            ));
        }
    }
    Ok(())
}

fn blocks_problem(kind: ProblemKind, path: &Path, offset: u64, detail: String) -> Problem {
    Problem::new(Structure::Blocks, kind, path, Some(offset), detail)
}

fn fatal(path: &Path, error: BlockError) -> FsckError {
    match error {
        BlockError::Io { file, source } => FsckError::Io { file, source },
        other => FsckError::io(path, std::io::Error::other(other.to_string())),
    }
}

/// The check of one pack.
struct PackCheck<'a> {
    disk: &'a DiskRef,
    reader: &'a BlockReader,
    seq: u64,
    path: std::path::PathBuf,
    /// Live records of this pack by offset.
    live: BTreeMap<u64, LiveBlock>,
    /// Live offsets already judged (found intact or reported).
    judged: BTreeSet<u64>,
    /// Whether the index could be read (without it nothing is known live).
    index_known: bool,
}

impl PackCheck<'_> {
    /// Scans the pack, then reads each live record the scan did not account
    /// for; the pack's length.
    fn run(&mut self, findings: &mut Findings) -> Result<u64, FsckError> {
        let file = self
            .disk
            .open(&self.path)
            .map_err(|e| FsckError::io(&self.path, e))?;
        let len = file.len().map_err(|e| FsckError::io(&self.path, e))?;
        let scan = self
            .reader
            .scan_pack(self.seq)
            .map_err(|e| fatal(&self.path, e))?;
        let mut scanned_to = 0;
        for item in scan {
            match item {
                Ok(ScanItem::Record(location)) => {
                    scanned_to = location.offset;
                    self.record(&location, findings);
                }
                Ok(ScanItem::Damaged {
                    offset,
                    len_bytes,
                    reason,
                    ..
                }) => {
                    scanned_to = offset + len_bytes;
                    self.damaged(offset, len_bytes, len, &reason, findings);
                }
                Err(BlockError::Io { source, .. }) if is_medium_error(&source) => {
                    let at = first_unreadable(&file, scanned_to, len - scanned_to);
                    let detail = format!("the disk cannot read this sector ({source}); the scan of this pack stopped here");
                    findings.push(blocks_problem(
                        ProblemKind::Unreadable,
                        &self.path,
                        at,
                        detail,
                    ));
                    break;
                }
                Err(error) => return Err(fatal(&self.path, error)),
            }
        }
        self.read_unjudged(findings)?;
        Ok(len)
    }

    fn record(&mut self, location: &BlockLocation, findings: &mut Findings) {
        findings.totals.block_records += 1;
        match self.live.get(&location.offset) {
            Some(live) if live.hash == location.hash && live.len == location.len => {
                self.judged.insert(location.offset);
            }
            // Left for the direct read, which says what the index expected.
            Some(_) => {}
            None if self.index_known => {
                let detail = format!("a record of {} bytes that verifies, but nothing refers to it (its index commit was lost in a crash, or it was stored twice); compaction will reclaim it", location.len);
                let kind = ProblemKind::OrphanBlock {
                    hash: hex(&location.hash),
                };
                findings.push(blocks_problem(kind, &self.path, location.offset, detail));
            }
            None => {}
        }
    }

    /// Bytes holding no verifiable record: damage where a live record lies.
    fn damaged(
        &mut self,
        offset: u64,
        bytes: u64,
        pack_len: u64,
        reason: &str,
        findings: &mut Findings,
    ) {
        let end = offset + bytes;
        let hit: Vec<(u64, LiveBlock)> = self
            .live
            .range(offset..end)
            .map(|(o, l)| (*o, *l))
            .collect();
        for (at, live) in &hit {
            self.judged.insert(*at);
            let record_end = at + RECORD_HEADER_BYTES as u64 + u64::from(live.len);
            let (kind, detail) = if record_end > pack_len {
                (
                    ProblemKind::MissingBlock {
                        hash: hex(&live.hash),
                    },
                    format!(
                        "block {} is cut off: the pack ends at {pack_len} ({reason})",
                        hex(&live.hash)
                    ),
                )
            } else {
                (
                    ProblemKind::ChecksumMismatch,
                    format!("live block {} does not verify: {reason}", hex(&live.hash)),
                )
            };
            findings.push(blocks_problem(kind, &self.path, *at, detail));
        }
        if !hit.is_empty() {
            return;
        }
        if offset == 0 && bytes <= PACK_HEADER_BYTES as u64 && !self.live.is_empty() {
            let detail = format!("pack header: {reason} (its records still verify one by one)");
            findings.push(blocks_problem(
                ProblemKind::BadHeader,
                &self.path,
                0,
                detail,
            ));
            return;
        }
        let why = if self.index_known {
            "nothing refers to these bytes: what a crash leaves after the last synced record"
        } else {
            "the index could not be read, so whether anything lived here is unknown"
        };
        let detail = format!("{bytes} bytes hold no record that verifies ({reason}); {why}");
        findings.push(blocks_problem(
            ProblemKind::DeadBytes { bytes },
            &self.path,
            offset,
            detail,
        ));
    }

    /// Live records the scan did not account for (the index points into the
    /// middle of a record, past the end, at another block, or the scan
    /// stopped): each read directly, which says what is wrong.
    fn read_unjudged(&mut self, findings: &mut Findings) -> Result<(), FsckError> {
        let unjudged: Vec<(u64, LiveBlock)> = self
            .live
            .iter()
            .filter(|(offset, _)| !self.judged.contains(offset))
            .map(|(o, l)| (*o, *l))
            .collect();
        for (offset, live) in unjudged {
            let location = BlockLocation {
                hash: live.hash,
                pack: self.seq,
                offset,
                len: live.len,
            };
            let (kind, detail) = match self.reader.read(&location) {
                Ok(_) => continue,
                Err(BlockError::Corrupt { reason, .. })
                    if reason.contains("ends before") || reason.contains("missing") =>
                {
                    (
                        ProblemKind::MissingBlock {
                            hash: hex(&live.hash),
                        },
                        format!("block {}: {reason}", hex(&live.hash)),
                    )
                }
                Err(BlockError::Corrupt { reason, .. }) => (
                    ProblemKind::ChecksumMismatch,
                    format!("live block {} does not verify: {reason}", hex(&live.hash)),
                ),
                Err(BlockError::Io { source, .. }) if is_medium_error(&source) => (
                    ProblemKind::Unreadable,
                    format!(
                        "block {}: the disk cannot read it ({source})",
                        hex(&live.hash)
                    ),
                ),
                Err(error) => return Err(fatal(&self.path, error)),
            };
            findings.push(blocks_problem(kind, &self.path, offset, detail));
        }
        Ok(())
    }
}
