//! Recovery: turns the physical scan of every segment into what the journal
//! holds (records in place, index ranges known lost, damage) and decides what
//! a crash left behind that `open` may cut.
//!
//! The rule that separates a crash from corruption (invariant 4, after
//! "Protocol-Aware Recovery for Consensus-Based Storage", FAST 2018):
//!
//! * A segment is created only after the one before it was synced, so bad
//!   bytes in any segment but the last are corruption, wherever they are.
//! * In the last segment, bad bytes below the `synced_len` of any record
//!   that verifies were synced before that record was written: corruption,
//!   reported, never cut.
//! * Bad bytes in the last segment that no record proves synced can be what
//!   a power cut leaves of writes not yet synced (which the disk may have
//!   lost, kept or torn in any order): a torn tail, which `open` cuts from
//!   the first such byte, with any record after it (none of them was synced
//!   either). Zero bytes at the end are cut too; they hold nothing. With no
//!   valid record after the bad bytes this is the classic rule: a damaged
//!   tail with nothing valid after it is torn.
//! * A last segment no longer than a header whose header does not verify is
//!   a creation cut short: `open` removes it.
//!
//! The limit of one fsync per batch: a record of the last synced batch that
//! rots before anything is appended after it is indistinguishable from a
//! torn write of that batch, so it is cut like one.

use std::path::{Path, PathBuf};

use finkfs_seam::FileRef;

use super::record::{self, RecordHeader};
use super::report::Damage;
use super::scan::{Item, SegmentScan};
use super::segment::{self, SegmentHeader};
use super::Hash;

/// A record in its place in the journal (it may still be marked lost by a
/// chain break).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub index: u64,
    pub term: u64,
    pub offset: u64,
    pub payload_len: u32,
    /// The segment holding it, by the first index in the segment's name.
    pub segment: u64,
}

impl Entry {
    pub fn end_offset(&self) -> u64 {
        self.offset + record::record_bytes(self.payload_len)
    }
}

/// Indices known to be lost, and where the damage that lost them is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    pub first: u64,
    pub last: u64,
    pub file: PathBuf,
    pub offset: u64,
    pub reason: String,
}

/// What a crash left that `open` removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TornAction {
    /// Cut the last segment at `offset`.
    Cut {
        path: PathBuf,
        offset: u64,
        bytes: u64,
    },
    /// Remove the last segment file: its creation was cut short.
    Remove { path: PathBuf, bytes: u64 },
}

/// A segment file the journal keeps.
#[derive(Debug)]
pub struct KeptSegment {
    pub key: u64,
    pub path: PathBuf,
    pub file: FileRef,
    /// Length once a torn tail is cut.
    pub len: u64,
    pub header: Option<SegmentHeader>,
}

/// The result of recovery, before anything is changed on disk.
#[derive(Debug)]
pub struct Analysis {
    pub segments: Vec<KeptSegment>,
    /// Records in place, in increasing index order, above the purge point.
    pub entries: Vec<Entry>,
    pub lost: Vec<Lost>,
    pub damage: Vec<Damage>,
    pub torn: Option<TornAction>,
    /// The chain value the next append links to.
    pub last_chain: Hash,
}

/// Classifies every scanned segment (in name order). Records and damage at or
/// below `purged` are dropped: they were purged.
pub fn analyze(mut scans: Vec<SegmentScan>, purged: Option<u64>) -> Analysis {
    let torn = take_torn(&mut scans);
    if let Some(last) = scans.last_mut() {
        zero_tail_is_damage(last);
    }
    let lookahead = scans
        .iter()
        .flat_map(|scan| scan.items.iter())
        .filter_map(|item| match item {
            Item::Record { header, .. } => Some(header.index),
            _ => None,
        })
        .collect();
    let mut classifier = Classifier::new(lookahead);
    for scan in &scans {
        classifier.segment(scan);
    }
    let Classifier {
        found,
        mut entries,
        mut lost,
        last_chain,
        ..
    } = classifier;
    let keep = |upper: Option<u64>| match (purged, upper) {
        (Some(p), Some(upper)) => upper > p.saturating_add(1),
        _ => true,
    };
    let damage = found
        .into_iter()
        .filter(|f| keep(f.upper))
        .map(|f| f.damage)
        .collect();
    if let Some(p) = purged {
        entries.retain(|e| e.index > p);
        lost.retain(|l| l.last > p);
        for l in &mut lost {
            l.first = l.first.max(p + 1);
        }
    }
    let segments = scans
        .into_iter()
        .map(|scan| {
            let len = match &torn {
                Some(TornAction::Cut { path, offset, .. }) if *path == scan.path => *offset,
                _ => scan.len,
            };
            KeptSegment {
                key: scan.name_index,
                path: scan.path,
                file: scan.file,
                len,
                header: scan.header.ok(),
            }
        })
        .collect();
    Analysis {
        segments,
        entries,
        lost,
        damage,
        torn,
        last_chain,
    }
}

/// Finds (and takes out of the scan) what a crash left at the end of the
/// last segment: everything from the first bad byte that no surviving record
/// proves synced. Nothing is cut from a segment whose header does not verify:
/// a crash never damages a synced header, so such a file is damaged (or not
/// a segment at all) and is kept as evidence.
fn take_torn(scans: &mut Vec<SegmentScan>) -> Option<TornAction> {
    let last = scans.last_mut()?;
    let header_bytes = segment::HEADER_BYTES as u64;
    if last.header.is_err() {
        if last.len > header_bytes {
            return None;
        }
        let scan = scans.pop()?;
        return Some(TornAction::Remove {
            path: scan.path,
            bytes: scan.len,
        });
    }
    // Bytes below `proven` were durable when some surviving record was
    // appended (the header was synced when the segment was created).
    let proven = last
        .items
        .iter()
        .filter_map(|item| match item {
            Item::Record { header, .. } => Some(header.synced_len),
            _ => None,
        })
        .fold(header_bytes, u64::max);
    // A deliberate bug the simulator's tests switch on: no record proves
    // anything synced, so every damaged record is cut as torn.
    let proven = if crate::rt::sabotaged(crate::rt::Sabotage::TruncateOnChecksumFailure) {
        header_bytes
    } else {
        proven
    };
    let torn = last.items.iter().position(|item| match item {
        Item::Invalid { offset, .. } | Item::ZeroTail { offset } => *offset >= proven,
        Item::Record { .. } => false,
    })?;
    let offset = match &last.items[torn] {
        Item::Invalid { offset, .. } | Item::ZeroTail { offset } | Item::Record { offset, .. } => {
            *offset
        }
    };
    last.items.truncate(torn);
    Some(TornAction::Cut {
        path: last.path.clone(),
        offset,
        bytes: last.len - offset,
    })
}

/// Zero bytes still ending the last segment once the torn tail is taken
/// were proven synced (or sit in a segment whose header does not verify):
/// appends would go after them, so they are reported now as damage. In
/// earlier segments trailing zeros hold nothing; a missing index shows at
/// the next segment's header.
fn zero_tail_is_damage(last: &mut SegmentScan) {
    if let Some(Item::ZeroTail { offset }) = last.items.last() {
        let offset = *offset;
        last.items.pop();
        last.items.push(Item::Invalid {
            offset,
            len: last.len - offset,
            reason: "zero bytes where synced records were".to_string(),
        });
    }
}

/// What the chain value before the next in-place record is known to be.
#[derive(Debug, Clone, Copy)]
enum Anchor {
    /// Lost records or a gap came before: the next record's link cannot be
    /// checked; its own chain value becomes the anchor.
    Unknown,
    Known(Hash),
    /// The previous record broke the chain. If the next one links to the
    /// value it should have had, only its chain field was damaged; if not,
    /// the next record starts a new anchor without a second report.
    Provisional(Hash),
}

struct Found {
    damage: Damage,
    /// Damage concerns only indices below this (None: unknown, at the end).
    upper: Option<u64>,
}

struct Classifier {
    /// Index of every valid record in file order, to look one record ahead.
    lookahead: Vec<u64>,
    seen: usize,
    expected: Option<u64>,
    anchor: Anchor,
    found: Vec<Found>,
    /// Damage waiting for the next in-place index to bound it.
    awaiting_upper: Vec<usize>,
    /// Corrupt regions since the last in-place record: the indices missing
    /// when the next one appears are theirs.
    pending: Vec<usize>,
    entries: Vec<Entry>,
    lost: Vec<Lost>,
    last_chain: Hash,
}

impl Classifier {
    fn new(lookahead: Vec<u64>) -> Classifier {
        Classifier {
            lookahead,
            seen: 0,
            expected: None,
            anchor: Anchor::Unknown,
            found: Vec::new(),
            awaiting_upper: Vec::new(),
            pending: Vec::new(),
            entries: Vec::new(),
            lost: Vec::new(),
            last_chain: [0u8; 32],
        }
    }

    fn segment(&mut self, scan: &SegmentScan) {
        self.header(scan);
        for item in &scan.items {
            match item {
                Item::Record { offset, header } => self.record(scan, *offset, header),
                Item::Invalid {
                    offset,
                    len,
                    reason,
                } => self.corrupt(&scan.path, *offset, *len, reason.clone()),
                // Zero bytes ending a segment hold no record; whether indices
                // are missing shows at the next segment's header.
                Item::ZeroTail { .. } => {}
            }
        }
    }

    fn header(&mut self, scan: &SegmentScan) {
        let header = match &scan.header {
            Ok(header) => *header,
            Err(reason) => {
                // Records carry their own index and link to the previous
                // record, so the segment's records are still checked.
                self.report(
                    Damage::BadSegmentHeader {
                        file: scan.path.clone(),
                        reason: reason.clone(),
                    },
                    None,
                );
                // The file name still says where the first segment starts:
                // records damaged before its first valid one are lost
                // indices, not a journal that begins later (which would
                // look like a log purged without a purge point).
                if self.expected.is_none() {
                    self.expected = Some(scan.name_index);
                }
                return;
            }
        };
        if header.first_index != scan.name_index {
            let reason = format!(
                "header first index {} differs from the file name's {}",
                header.first_index, scan.name_index
            );
            self.report(
                Damage::BadSegmentHeader {
                    file: scan.path.clone(),
                    reason,
                },
                None,
            );
        }
        let Some(expected) = self.expected else {
            self.expected = Some(header.first_index);
            self.anchor = Anchor::Known(header.prev_chain);
            self.last_chain = header.prev_chain;
            return;
        };
        if header.first_index < expected {
            let reason = format!(
                "first index {} overlaps the previous segment, which reaches index {}",
                header.first_index,
                expected - 1
            );
            self.report(
                Damage::BadSegmentHeader {
                    file: scan.path.clone(),
                    reason,
                },
                None,
            );
            return;
        }
        if header.first_index > expected {
            self.missing(expected, header.first_index, &scan.path, 0);
            self.anchor = Anchor::Known(header.prev_chain);
            self.last_chain = header.prev_chain;
        } else {
            // The first record is checked against the previous record's
            // chain; a header claiming another predecessor shows there.
            self.anchor = match self.anchor {
                Anchor::Known(chain) => Anchor::Known(chain),
                Anchor::Provisional(chain) if chain == header.prev_chain => Anchor::Known(chain),
                Anchor::Provisional(_) | Anchor::Unknown => Anchor::Known(header.prev_chain),
            };
        }
        self.resolve(header.first_index);
        self.expected = Some(header.first_index);
    }

    fn record(&mut self, scan: &SegmentScan, offset: u64, header: &RecordHeader) {
        let next = self.lookahead.get(self.seen + 1).copied();
        self.seen += 1;
        if let Some(expected) = self.expected {
            // A valid record below the expected index, or above it while the
            // record after it continues below it, is a copy in the wrong place.
            let misplaced = header.index < expected
                || (header.index > expected && next.is_some_and(|n| n <= header.index));
            if misplaced {
                let reason = format!(
                    "valid record for index {} found where index {expected} belongs (misdirected or stale write)",
                    header.index
                );
                self.corrupt(&scan.path, offset, header.record_bytes(), reason);
                return;
            }
            if header.index > expected {
                self.missing(expected, header.index, &scan.path, offset);
                self.anchor = Anchor::Unknown;
            }
        }
        self.resolve(header.index);
        self.check_chain(&scan.path, offset, header);
        self.entries.push(Entry {
            index: header.index,
            term: header.term,
            offset,
            payload_len: header.payload_len,
            segment: scan.name_index,
        });
        self.expected = Some(header.index + 1);
        self.last_chain = header.chain;
    }

    fn check_chain(&mut self, file: &Path, offset: u64, header: &RecordHeader) {
        self.anchor = match self.anchor {
            Anchor::Unknown => Anchor::Known(header.chain),
            Anchor::Provisional(previous) => {
                let linked = record::chain(&previous, &header.checksum);
                Anchor::Known(if linked == header.chain {
                    linked
                } else {
                    header.chain
                })
            }
            Anchor::Known(previous) => {
                let linked = record::chain(&previous, &header.checksum);
                if linked == header.chain {
                    Anchor::Known(linked)
                } else {
                    let index = header.index;
                    self.report(
                        Damage::ChainBreak {
                            file: file.to_path_buf(),
                            offset,
                            index,
                        },
                        Some(index + 1),
                    );
                    self.lost.push(Lost {
                        first: index,
                        last: index,
                        file: file.to_path_buf(),
                        offset,
                        reason: "record does not link to the record before it (chain break)"
                            .to_string(),
                    });
                    Anchor::Provisional(linked)
                }
            }
        };
    }

    /// Bytes that hold no record belonging here.
    fn corrupt(&mut self, file: &Path, offset: u64, len: u64, reason: String) {
        let id = self.report(
            Damage::CorruptRecord {
                file: file.to_path_buf(),
                offset,
                len,
                indices: None,
                reason,
            },
            None,
        );
        self.pending.push(id);
        self.anchor = Anchor::Unknown;
    }

    /// Indices `from..until` are absent: lost in the pending corrupt regions,
    /// or, if there are none, a gap.
    fn missing(&mut self, from: u64, until: u64, file: &Path, offset: u64) {
        debug_assert!(from < until);
        let lost = if let Some(&first) = self.pending.first() {
            for &id in &self.pending {
                if let Damage::CorruptRecord { indices, .. } = &mut self.found[id].damage {
                    *indices = Some(from..=until - 1);
                }
            }
            let Damage::CorruptRecord {
                file,
                offset,
                reason,
                ..
            } = &self.found[first].damage
            else {
                unreachable!("pending damage is always a corrupt record");
            };
            Lost {
                first: from,
                last: until - 1,
                file: file.to_path_buf(),
                offset: *offset,
                reason: reason.clone(),
            }
        } else {
            let gap = Damage::Gap {
                file: file.to_path_buf(),
                offset,
                after_index: from.saturating_sub(1),
                next_index: until,
            };
            self.report(gap, Some(until));
            let reason = format!("index missing: gap before index {until}");
            Lost {
                first: from,
                last: until - 1,
                file: file.to_path_buf(),
                offset,
                reason,
            }
        };
        self.lost.push(lost);
    }

    /// The next in-place index is `upper`: damage before it is bounded.
    fn resolve(&mut self, upper: u64) {
        for id in self.awaiting_upper.drain(..) {
            self.found[id].upper = Some(upper);
        }
        self.pending.clear();
    }

    fn report(&mut self, damage: Damage, upper: Option<u64>) -> usize {
        let id = self.found.len();
        self.found.push(Found { damage, upper });
        if upper.is_none() {
            self.awaiting_upper.push(id);
        }
        id
    }
}
