//! What fsck found: totals, typed problems, and the verdict. The serde
//! shape is the `--json` output of `finkfs fsck`, a stable contract: fields
//! are only ever added.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The verdict on a data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// No damage. Informational findings (a torn tail, orphan blocks) may
    /// still be listed: they are what crashes leave, and recovery handles them.
    Healthy,
    /// At least one problem that a crash does not explain.
    Corrupt,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Healthy => "HEALTHY",
            Status::Corrupt => "CORRUPT",
        })
    }
}

/// The structure of a group directory a problem was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Structure {
    /// The Raft log: segments and the purge marker.
    Journal,
    /// The vote / log store state copies.
    Meta,
    /// The pack files.
    Blocks,
    /// The index database and its header shadow.
    Index,
    /// Snapshot files.
    Snapshots,
}

impl fmt::Display for Structure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Structure::Journal => "journal",
            Structure::Meta => "meta",
            Structure::Blocks => "blocks",
            Structure::Index => "index",
            Structure::Snapshots => "snapshots",
        })
    }
}

/// What kind of problem. Kinds that are the normal trace of a crash are
/// informational ([`ProblemKind::is_damage`] is false).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProblemKind {
    /// Informational: the end of the last journal segment, written but not
    /// synced before a crash; the next start cuts it.
    TornTail { bytes: u64 },
    /// Bytes that do not verify against their checksum (bit rot, a zeroed
    /// sector, garbage, a write that never landed or landed elsewhere).
    ChecksumMismatch,
    /// A journal record that verifies but does not link to the one before.
    ChainBreak { index: u64 },
    /// Journal indices missing, from `from` to `to` inclusive.
    IndexGap { from: u64, to: u64 },
    /// A file header (journal segment, pack, purge marker) that does not
    /// verify or does not fit its file.
    BadHeader,
    /// A vote / state copy that does not verify or is missing.
    BadCopy,
    /// Every vote / state copy is damaged: the node must not vote.
    VoteLost,
    /// The state copies verify but their content is not a valid state, or
    /// contradicts the journal (committed entries missing).
    BadState,
    /// A block the index refers to is not where the index says, or a
    /// manifest names a block the index does not know.
    MissingBlock { hash: String },
    /// Informational: a block record that verifies but nothing refers to
    /// (a write whose index commit a crash lost). Space for compaction.
    OrphanBlock { hash: String },
    /// Informational: pack bytes holding no verifiable record that nothing
    /// refers to (what a crash leaves after the last synced record).
    DeadBytes { bytes: u64 },
    /// A block's reference count differs from the manifests that name it.
    RefCountMismatch {
        hash: String,
        stored: u64,
        counted: u64,
    },
    /// A file that must exist does not (the index while packs exist).
    MissingFile,
    /// Informational: a temporary file a crash left; the next start
    /// removes it.
    Leftover,
    /// A sector the disk could not read (EIO): a latent sector error.
    Unreadable,
    /// Log entries `from` to `to` that no structure of the node holds:
    /// purged from the journal, beyond the newest snapshot and beyond what
    /// the index applied. The node cannot start; it must rejoin.
    EntriesLost { from: u64, to: u64 },
}

impl ProblemKind {
    /// Whether this is damage (as opposed to the normal trace of a crash).
    pub fn is_damage(&self) -> bool {
        !matches!(
            self,
            ProblemKind::TornTail { .. }
                | ProblemKind::OrphanBlock { .. }
                | ProblemKind::DeadBytes { .. }
                | ProblemKind::Leftover
        )
    }

    /// The kind's name, as in the JSON `kind` field.
    pub fn name(&self) -> &'static str {
        match self {
            ProblemKind::TornTail { .. } => "torn_tail",
            ProblemKind::ChecksumMismatch => "checksum_mismatch",
            ProblemKind::ChainBreak { .. } => "chain_break",
            ProblemKind::IndexGap { .. } => "index_gap",
            ProblemKind::BadHeader => "bad_header",
            ProblemKind::BadCopy => "bad_copy",
            ProblemKind::VoteLost => "vote_lost",
            ProblemKind::BadState => "bad_state",
            ProblemKind::MissingBlock { .. } => "missing_block",
            ProblemKind::OrphanBlock { .. } => "orphan_block",
            ProblemKind::DeadBytes { .. } => "dead_bytes",
            ProblemKind::RefCountMismatch { .. } => "ref_count_mismatch",
            ProblemKind::MissingFile => "missing_file",
            ProblemKind::Leftover => "leftover",
            ProblemKind::Unreadable => "unreadable",
            ProblemKind::EntriesLost { .. } => "entries_lost",
        }
    }
}

/// One finding, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub structure: Structure,
    #[serde(flatten)]
    pub kind: ProblemKind,
    /// The file, relative to the data directory.
    pub file: String,
    /// Byte offset in the file; None where the layer that found the damage
    /// cannot tell (redb reports damaged pages without their position).
    pub offset: Option<u64>,
    /// What is wrong, for a person.
    pub detail: String,
}

impl Problem {
    pub(crate) fn new(
        structure: Structure,
        kind: ProblemKind,
        file: &Path,
        offset: Option<u64>,
        detail: impl Into<String>,
    ) -> Problem {
        Problem {
            structure,
            kind,
            file: file.display().to_string(),
            offset,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = if self.kind.is_damage() {
            "DAMAGE"
        } else {
            "note"
        };
        write!(
            f,
            "{severity} {} {}: {}",
            self.structure,
            self.kind.name(),
            self.file
        )?;
        if let Some(offset) = self.offset {
            write!(f, " at offset {offset}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// What was checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Raft groups checked.
    pub groups: u64,
    /// Objects in the index.
    pub objects: u64,
    /// Bytes of those objects.
    pub object_bytes: u64,
    /// Blocks in the index.
    pub blocks: u64,
    /// Bytes of those blocks.
    pub block_bytes: u64,
    /// Pack files scanned.
    pub packs: u64,
    /// Block records in the packs that verified.
    pub block_records: u64,
    /// Journal segments scanned.
    pub journal_segments: u64,
    /// Journal records that verified.
    pub journal_records: u64,
    /// Snapshot files verified.
    pub snapshots: u64,
    /// Bytes read and verified, all structures together.
    pub bytes_checked: u64,
}

impl Totals {
    /// Adds the counts of `other`.
    pub(crate) fn add(&mut self, other: &Totals) {
        // Spelled out so that a new count cannot be forgotten here.
        let Totals {
            groups,
            objects,
            object_bytes,
            blocks,
            block_bytes,
            packs,
            block_records,
            journal_segments,
            journal_records,
            snapshots,
            bytes_checked,
        } = other;
        self.groups += groups;
        self.objects += objects;
        self.object_bytes += object_bytes;
        self.blocks += blocks;
        self.block_bytes += block_bytes;
        self.packs += packs;
        self.block_records += block_records;
        self.journal_segments += journal_segments;
        self.journal_records += journal_records;
        self.snapshots += snapshots;
        self.bytes_checked += bytes_checked;
    }
}

/// Version of the report's JSON shape; raised only if a field changes
/// meaning or goes away (fields are added without a change).
pub const REPORT_VERSION: u32 = 1;

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsckReport {
    /// [`REPORT_VERSION`].
    pub version: u32,
    /// The group directories checked, relative to the data directory.
    pub groups: Vec<String>,
    pub totals: Totals,
    /// Every finding, damage and informational, in the order found.
    pub problems: Vec<Problem>,
    pub status: Status,
}

impl FsckReport {
    pub(crate) fn new(groups: Vec<String>, totals: Totals, problems: Vec<Problem>) -> FsckReport {
        let status = if problems.iter().any(|p| p.kind.is_damage()) {
            Status::Corrupt
        } else {
            Status::Healthy
        };
        FsckReport {
            version: REPORT_VERSION,
            groups,
            totals,
            problems,
            status,
        }
    }

    /// Whether no damage was found.
    pub fn is_healthy(&self) -> bool {
        self.status == Status::Healthy
    }

    /// The problems that are damage.
    pub fn damage(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.kind.is_damage())
    }
}
