//! The checksummed, hash-chained journal: the durable Raft log of one group.
//!
//! A directory of segment files, each named by the index of its first record
//! and starting with a header (see `segment`), followed by records (see
//! `record`). One writer ([`Journal`]) appends, syncs, truncates and purges;
//! any number of [`JournalReader`]s read concurrently. The byte layout and the
//! recovery rules are in `docs/format/journal.md`.
//!
//! Durability contract:
//! * [`Journal::append`] and [`Journal::append_batch`] write into the page
//!   cache only (a batch with as few vectored writes as it can);
//! * [`Journal::sync`] makes every append so far durable with one fsync of the
//!   active segment (group commit);
//! * [`Journal::truncate_after`] and [`Journal::purge_up_to`] are durable when
//!   they return;
//! * a new segment is created only after the previous one is synced, and its
//!   header and directory entry are synced before any record goes into it.
//!
//! After a write or sync error the journal is poisoned: every later mutation
//! returns [`JournalError::Poisoned`] until it is reopened.

mod error;
mod marker;
mod open;
mod reader;
mod record;
mod recovery;
mod repair;
mod report;
mod scan;
mod segment;
mod state;
mod writer;

use std::path::PathBuf;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use finkfs_seam::{DiskRef, FileRef};

pub use error::JournalError;
pub use open::RecoveredJournal;
pub use reader::JournalReader;
pub use record::HashedPayload;
pub use report::{Damage, RecoveryReport, TornTail};
pub use segment::FORMAT_VERSION;
pub use writer::{Append, WRITE_BYTES_MAX};

use state::State;

/// A BLAKE3 digest.
pub(crate) type Hash = [u8; 32];

/// Ceilings of a journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalOptions {
    /// A segment is rolled when the next record would take it past this
    /// (a single larger record still gets a segment of its own).
    pub segment_bytes_max: u64,
    /// Largest payload accepted; also bounds what a damaged length can make
    /// a scan read.
    pub record_bytes_max: u32,
}

impl Default for JournalOptions {
    fn default() -> JournalOptions {
        JournalOptions {
            segment_bytes_max: 64 << 20,
            record_bytes_max: 64 << 20,
        }
    }
}

/// One verified record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub index: u64,
    pub term: u64,
    pub payload: Vec<u8>,
}

/// The single writer of a journal directory.
#[derive(Debug)]
pub struct Journal {
    disk: DiskRef,
    dir: PathBuf,
    options: JournalOptions,
    state: Arc<RwLock<State>>,
    /// The segment appends go to; None when the journal holds no segment.
    tail: Option<Tail>,
    /// The index the next append must carry; None when any index may start
    /// a new chain.
    next_index: Option<u64>,
    poisoned: bool,
    /// Appends since the last sync of the tail segment.
    unsynced: bool,
    /// Reused buffer for the record headers of a write.
    scratch: Vec<u8>,
}

/// The writer's view of the active segment.
#[derive(Debug)]
struct Tail {
    key: u64,
    path: PathBuf,
    file: FileRef,
    /// Where the next record goes.
    len: u64,
    /// Chain value the next record links to.
    chain: Hash,
    /// Bytes of the segment known durable; every record carries it so that
    /// recovery can tell synced bytes from bytes a crash may have torn.
    synced: u64,
}

impl Journal {
    fn state(&self) -> RwLockReadGuard<'_, State> {
        self.state
            .read()
            .expect("journal index lock poisoned by a panic")
    }

    /// Lowest index the journal holds. When recovery reported damage this
    /// may be an index whose record is lost (reading it returns
    /// [`JournalError::Corrupt`]); in a clean journal it is the lowest
    /// readable index. None if the journal is empty.
    pub fn first_index(&self) -> Option<u64> {
        self.state().first_index()
    }

    /// `(index, term)` of the last record, None if the journal is empty.
    pub fn last(&self) -> Option<(u64, u64)> {
        self.state().last()
    }

    /// Reads one record, verified from disk.
    pub fn read(&self, index: u64) -> Result<Record, JournalError> {
        self.state().read(index)
    }

    /// A read handle for other threads.
    pub fn reader(&self) -> JournalReader {
        JournalReader::new(Arc::clone(&self.state))
    }

    /// The directory of this journal, relative to the disk root.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}
