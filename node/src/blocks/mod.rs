//! The block store: content-addressed, write-once blocks in append-only pack
//! files, verified on every read.
//!
//! Blocks are appended to `<dir>/<seq>.pack` files (layouts in
//! `pack_header.rs` and `record.rs`) rather than one file per block: creating
//! a file and syncing its directory for each 50 KB alert would cost more than
//! writing the alert. `put` only writes (to the page cache); `sync` makes all
//! puts since the last sync durable with one fsync per touched pack, plus one
//! directory fsync when a pack was created (group commit).
//!
//! # Crash rules
//!
//! Packs are never truncated or repaired on open. The index, not the pack,
//! says which records are live: it only ever refers to records whose pack was
//! synced before the index transaction committed. Whatever a crash leaves
//! after the last synced record (a torn record, zeros, garbage) is therefore
//! dead space that nothing points to. A reopened store never appends to an
//! old pack: its first `put` starts a new one, so bytes a crash left behind
//! are never overwritten or mistaken for live data, and old packs are
//! read-only. Reclaiming dead space (and blocks whose reference count fell
//! to zero) is left to a future compaction.

mod error;
mod pack_header;
mod packs;
mod record;
mod scan;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use finkfs_seam::{DiskRef, FileRef};

pub use error::BlockError;
pub use pack_header::{PACK_HEADER_BYTES, PACK_VERSION};
pub use packs::{pack_file_name, OPEN_PACKS_MAX};
pub use record::{RECORD_DATA_BYTES_LIMIT, RECORD_HEADER_BYTES};
pub use scan::{PackScan, ScanItem};

use packs::PackFiles;
use record::RecordHeader;

/// Where a block lives. The index keeps it, apart from the block itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockLocation {
    /// BLAKE3 of the block's data: its address.
    pub hash: [u8; 32],
    /// Sequence number of the pack file.
    pub pack: u64,
    /// Offset of the record (its header) in the pack.
    pub offset: u64,
    /// Bytes of block data.
    pub len: u32,
}

/// The pack number of a block no replica held intact when a snapshot that
/// refers to it was installed: no pack has it, and no record lies there.
pub const LOST_PACK: u64 = u64::MAX;

impl BlockLocation {
    /// The location of a block lost on every replica: it keeps the block's
    /// place in the index (its references count as any block's), reads of
    /// it are refused as damage, and the next intact copy written (a put,
    /// a replayed entry, a repair from a peer) replaces it.
    pub fn lost(hash: [u8; 32], len: u32) -> BlockLocation {
        BlockLocation {
            hash,
            pack: LOST_PACK,
            offset: 0,
            len,
        }
    }

    /// Whether this is the location of a block lost on every replica.
    pub fn is_lost(&self) -> bool {
        self.pack == LOST_PACK
    }
}

/// Sizes of the block store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockStoreOptions {
    /// A pack stops taking records once it would grow past this size.
    pub pack_bytes_max: u64,
    /// The largest block `put` accepts.
    pub block_bytes_max: u32,
}

impl Default for BlockStoreOptions {
    fn default() -> Self {
        BlockStoreOptions {
            pack_bytes_max: 256 * 1024 * 1024,
            block_bytes_max: 1024 * 1024,
        }
    }
}

impl BlockStoreOptions {
    fn check(&self) -> Result<(), BlockError> {
        if self.block_bytes_max == 0 || self.block_bytes_max > RECORD_DATA_BYTES_LIMIT {
            return Err(BlockError::InvalidOptions(format!(
                "block_bytes_max {} not in 1..={RECORD_DATA_BYTES_LIMIT}",
                self.block_bytes_max
            )));
        }
        let smallest = PACK_HEADER_BYTES as u64 + record::record_bytes(self.block_bytes_max);
        if self.pack_bytes_max < smallest {
            return Err(BlockError::InvalidOptions(format!(
                "pack_bytes_max {} cannot hold one block of {} bytes (needs {smallest})",
                self.pack_bytes_max, self.block_bytes_max
            )));
        }
        Ok(())
    }
}

/// The pack receiving new records.
#[derive(Debug)]
struct ActivePack {
    seq: u64,
    file: FileRef,
    /// Where the next record goes.
    end: u64,
}

/// Content-addressed blocks in pack files. `put`/`sync` take `&mut self`;
/// reads take `&self` and may run from many threads, also through a
/// [`BlockReader`] shared with readers while the store keeps writing.
#[derive(Debug)]
pub struct BlockStore {
    files: Arc<PackFiles>,
    options: BlockStoreOptions,
    active: Option<ActivePack>,
    next_seq: u64,
    /// Packs written since the last successful sync.
    unsynced: BTreeMap<u64, FileRef>,
    /// Whether a pack was created since the last successful directory sync.
    dir_unsynced: bool,
    /// Set by a failed sync: the file whose sync failed.
    poisoned: Option<PathBuf>,
}

impl BlockStore {
    /// Opens (creating if needed) the block store in `dir`. Existing packs
    /// are left as they are; their headers are checked and damage reported.
    pub fn open(
        disk: DiskRef,
        dir: PathBuf,
        options: BlockStoreOptions,
    ) -> Result<Self, BlockError> {
        options.check()?;
        disk.create_dir_all(&dir)
            .map_err(|e| BlockError::io(&dir, e))?;
        let files = Arc::new(PackFiles::new(disk, dir));
        let seqs = files.list().map_err(|e| BlockError::io(files.dir(), e))?;
        let next_seq = match seqs.last() {
            Some(last) => last.checked_add(1).ok_or_else(|| BlockError::PackCorrupt {
                file: files.path(*last),
                offset: 0,
                reason: "pack sequence number space exhausted".to_string(),
            })?,
            None => 0,
        };
        let store = BlockStore {
            files,
            options,
            active: None,
            next_seq,
            unsynced: BTreeMap::new(),
            dir_unsynced: false,
            poisoned: None,
        };
        store.report_damaged_headers(&seqs);
        tracing::debug!(dir = %store.files.dir().display(), packs = seqs.len(), "block store open");
        Ok(store)
    }

    /// The options this store was opened with.
    pub fn options(&self) -> &BlockStoreOptions {
        &self.options
    }

    /// The directory of the packs, relative to the disk root.
    pub fn dir(&self) -> &Path {
        self.files.dir()
    }

    /// The path of pack `seq`, relative to the disk root.
    pub fn pack_path(&self, seq: u64) -> PathBuf {
        self.files.path(seq)
    }

    /// Sequence numbers of all packs, ascending.
    pub fn packs(&self) -> Result<Vec<u64>, BlockError> {
        self.files
            .list()
            .map_err(|e| BlockError::io(self.files.dir(), e))
    }

    /// Whether a failed sync left the store refusing writes until reopened.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// Whether blocks were put since the last successful sync.
    pub fn has_unsynced(&self) -> bool {
        !self.unsynced.is_empty() || self.dir_unsynced
    }

    /// Appends a block whose BLAKE3 is `hash` (computed once, by the caller).
    /// The block is readable at once but durable only after [`Self::sync`].
    pub fn put(&mut self, hash: [u8; 32], data: &[u8]) -> Result<BlockLocation, BlockError> {
        self.check_not_poisoned()?;
        debug_assert_eq!(
            *blake3::hash(data).as_bytes(),
            hash,
            "caller passed a wrong hash"
        );
        let len = u32::try_from(data.len())
            .ok()
            .filter(|len| *len <= self.options.block_bytes_max)
            .ok_or(BlockError::TooLarge {
                len_bytes: data.len() as u64,
                max_bytes: self.options.block_bytes_max,
            })?;
        let needed = record::record_bytes(len);
        let pack_bytes_max = self.options.pack_bytes_max;
        let active = match self.active.take() {
            Some(active) if active.end + needed <= pack_bytes_max => active,
            _ => self.create_pack()?,
        };
        let active = self.active.insert(active);
        let offset = active.end;
        let header = record::encode(
            &RecordHeader {
                data_len: len,
                hash,
            },
            active.seq,
            offset,
        );
        let path = self.files.path(active.seq);
        // Header and data go in two writes so the payload is never copied.
        // The padding is not written: the next record's write extends the
        // file over it with zeros, and nothing reads past the data.
        active
            .file
            .write_at(offset, &header)
            .map_err(|e| BlockError::io(&path, e))?;
        let data_offset = offset + RECORD_HEADER_BYTES as u64;
        active
            .file
            .write_at(data_offset, data)
            .map_err(|e| BlockError::io(&path, e))?;
        // Only a fully written record moves the end; after a failed write
        // the next record overwrites the unreferenced bytes.
        active.end = offset + needed;
        self.unsynced.insert(active.seq, active.file.clone());
        Ok(BlockLocation {
            hash,
            pack: active.seq,
            offset,
            len,
        })
    }

    /// Makes every block put so far durable: one fsync per pack written,
    /// then the directory if a pack was created. A failure poisons the store.
    pub fn sync(&mut self) -> Result<(), BlockError> {
        self.check_not_poisoned()?;
        while let Some((seq, file)) = self.unsynced.pop_first() {
            if let Err(e) = file.sync() {
                return Err(self.poison(self.files.path(seq), e));
            }
        }
        if self.dir_unsynced {
            let dir = self.files.dir().to_path_buf();
            if let Err(e) = self.files.disk().sync_dir(&dir) {
                return Err(self.poison(dir, e));
            }
            self.dir_unsynced = false;
        }
        Ok(())
    }

    /// A reader of this store's blocks that can be shared with other
    /// threads while this store keeps writing.
    pub fn reader(&self) -> BlockReader {
        BlockReader {
            files: self.files.clone(),
        }
    }

    /// Reads and verifies the block at `loc`; see [`BlockReader::read`].
    pub fn read(&self, loc: &BlockLocation) -> Result<Vec<u8>, BlockError> {
        read_block(&self.files, loc)
    }

    /// `len` bytes at `start` of the block at `loc`; see
    /// [`BlockReader::read_range`].
    pub fn read_range(
        &self,
        loc: &BlockLocation,
        start: u32,
        len: u32,
    ) -> Result<Vec<u8>, BlockError> {
        read_block_range(&self.files, loc, start, len)
    }

    /// Walks every record of pack `seq`, verifying each; see [`PackScan`].
    pub fn scan_pack(&self, seq: u64) -> Result<PackScan, BlockError> {
        scan_pack(&self.files, seq)
    }

    fn create_pack(&mut self) -> Result<ActivePack, BlockError> {
        let seq = self.next_seq;
        let path = self.files.path(seq);
        let file = self
            .files
            .disk()
            .create(&path)
            .map_err(|e| BlockError::io(&path, e))?;
        // From here the name is taken, whatever happens to the header.
        self.next_seq += 1;
        self.dir_unsynced = true;
        let header = pack_header::encode(seq);
        file.write_at(0, &header)
            .map_err(|e| BlockError::io(&path, e))?;
        self.unsynced.insert(seq, file.clone());
        self.files.insert(seq, file.clone());
        tracing::debug!(pack = %path.display(), "new pack");
        Ok(ActivePack {
            seq,
            file,
            end: PACK_HEADER_BYTES as u64,
        })
    }

    fn check_not_poisoned(&self) -> Result<(), BlockError> {
        match &self.poisoned {
            Some(file) => Err(BlockError::Poisoned { file: file.clone() }),
            None => Ok(()),
        }
    }

    fn poison(&mut self, file: PathBuf, source: io::Error) -> BlockError {
        tracing::error!(file = %file.display(), error = %source, "sync failed; block store poisoned until reopened");
        self.poisoned = Some(file.clone());
        self.active = None;
        BlockError::Io { file, source }
    }

    fn report_damaged_headers(&self, seqs: &[u64]) {
        for (i, seq) in seqs.iter().enumerate() {
            let Err(why) = self.check_header(*seq) else {
                continue;
            };
            let path = self.files.path(*seq);
            if i + 1 == seqs.len() && why.starts_with("short") {
                // The newest pack may have been created just before a power
                // cut; with nothing synced in it, nothing can refer to it.
                tracing::info!(pack = %path.display(), %why, "newest pack has no complete header (crash while creating it?)");
            } else {
                tracing::error!(pack = %path.display(), %why, "pack header damaged; its records are still verified one by one");
            }
        }
    }

    fn check_header(&self, seq: u64) -> Result<(), String> {
        let file = self
            .files
            .get(seq)
            .map_err(|e| format!("cannot open: {e}"))?;
        let len = file.len().map_err(|e| format!("cannot stat: {e}"))?;
        if len < PACK_HEADER_BYTES as u64 {
            return Err(format!("short pack: {len} bytes"));
        }
        let mut header = [0u8; PACK_HEADER_BYTES];
        file.read_at(0, &mut header)
            .map_err(|e| format!("cannot read header: {e}"))?;
        pack_header::decode(&header, seq)
    }
}

/// Reads of a block store, shareable between threads (cheap to clone). Packs
/// are write-once where records live, so a reader needs no lock against the
/// writer: it reads only records the index points to, which were fully
/// written before the index referred to them.
#[derive(Debug, Clone)]
pub struct BlockReader {
    files: Arc<PackFiles>,
}

impl BlockReader {
    /// A reader of the packs in `dir` without opening a store: nothing is
    /// created or written, for fsck, which must leave a data directory
    /// exactly as it found it.
    pub fn read_only(disk: DiskRef, dir: PathBuf) -> BlockReader {
        BlockReader {
            files: Arc::new(PackFiles::new(disk, dir)),
        }
    }

    /// Sequence numbers of all packs, ascending (other names are ignored).
    pub fn packs(&self) -> Result<Vec<u64>, BlockError> {
        self.files
            .list()
            .map_err(|e| BlockError::io(self.files.dir(), e))
    }

    /// Reads and verifies the block at `loc`: the record header must be
    /// intact, for this place, and name `loc.hash` and `loc.len`; the data
    /// must hash to `loc.hash`. Any mismatch is [`BlockError::Corrupt`].
    pub fn read(&self, loc: &BlockLocation) -> Result<Vec<u8>, BlockError> {
        read_block(&self.files, loc)
    }

    /// Reads `len` bytes at `start` of the block at `loc`, after verifying
    /// the whole block (a checksum covers the block, not a range of it).
    pub fn read_range(
        &self,
        loc: &BlockLocation,
        start: u32,
        len: u32,
    ) -> Result<Vec<u8>, BlockError> {
        read_block_range(&self.files, loc, start, len)
    }

    /// Walks every record of pack `seq`, verifying each; see [`PackScan`].
    pub fn scan_pack(&self, seq: u64) -> Result<PackScan, BlockError> {
        scan_pack(&self.files, seq)
    }

    /// The path of pack `seq`, relative to the disk root.
    pub fn pack_path(&self, seq: u64) -> PathBuf {
        self.files.path(seq)
    }
}

fn read_block(files: &PackFiles, loc: &BlockLocation) -> Result<Vec<u8>, BlockError> {
    let path = files.path(loc.pack);
    let corrupt = |reason: String| BlockError::Corrupt {
        hash: loc.hash,
        file: path.clone(),
        offset: loc.offset,
        reason,
    };
    if loc.len > RECORD_DATA_BYTES_LIMIT {
        return Err(corrupt(format!(
            "location claims {} bytes, over the format limit",
            loc.len
        )));
    }
    if loc.is_lost() {
        return Err(corrupt(
            "no replica held an intact copy when a snapshot referring to it was installed"
                .to_string(),
        ));
    }
    let file = files
        .get(loc.pack)
        .map_err(|e| read_error(e, &path, corrupt))?;
    let mut header = [0u8; RECORD_HEADER_BYTES];
    file.read_at(loc.offset, &mut header)
        .map_err(|e| read_error(e, &path, corrupt))?;
    let found = record::decode(&header, loc.pack, loc.offset).map_err(corrupt)?;
    if found.hash != loc.hash {
        return Err(corrupt(format!(
            "record holds block {}, not the one the index expects",
            crate::hex::hex(&found.hash)
        )));
    }
    if found.data_len != loc.len {
        return Err(corrupt(format!(
            "record holds {} bytes, index expects {}",
            found.data_len, loc.len
        )));
    }
    let mut data = vec![0u8; loc.len as usize];
    file.read_at(loc.offset + RECORD_HEADER_BYTES as u64, &mut data)
        .map_err(|e| read_error(e, &path, corrupt))?;
    if blake3::hash(&data).as_bytes() != &loc.hash && !skip_read_checksum() {
        return Err(corrupt(
            "block data does not hash to its address".to_string(),
        ));
    }
    Ok(data)
}

fn read_block_range(
    files: &PackFiles,
    loc: &BlockLocation,
    start: u32,
    len: u32,
) -> Result<Vec<u8>, BlockError> {
    let end = start.checked_add(len).filter(|end| *end <= loc.len);
    let Some(end) = end else {
        return Err(BlockError::RangeOutOfBounds {
            hash: loc.hash,
            start,
            len,
            block_len: loc.len,
        });
    };
    let mut data = read_block(files, loc)?;
    data.truncate(end as usize);
    data.drain(..start as usize);
    Ok(data)
}

fn scan_pack(files: &PackFiles, seq: u64) -> Result<PackScan, BlockError> {
    let path = files.path(seq);
    let file = files.get(seq).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => BlockError::NoSuchPack { file: path.clone() },
        _ => BlockError::io(&path, e),
    })?;
    PackScan::new(file, seq, path)
}

/// A read that finds the file or record missing is damage (the index says a
/// synced record lives there); any other failure is an I/O error.
fn read_error(e: io::Error, path: &Path, corrupt: impl FnOnce(String) -> BlockError) -> BlockError {
    match e.kind() {
        io::ErrorKind::NotFound => corrupt("pack file is missing".to_string()),
        io::ErrorKind::UnexpectedEof => corrupt("pack ends before the record does".to_string()),
        _ => BlockError::io(path, e),
    }
}

/// A deliberate bug the simulator's tests switch on (never on in a node):
/// reads serve what the disk returned without checking it.
pub(crate) fn skip_read_checksum() -> bool {
    finkfs_raft::rt::sabotaged(finkfs_raft::rt::Sabotage::SkipReadChecksum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_that_cannot_hold_one_block_are_refused() {
        let options = BlockStoreOptions {
            pack_bytes_max: 1000,
            block_bytes_max: 1000,
        };
        assert!(matches!(
            options.check(),
            Err(BlockError::InvalidOptions(_))
        ));
        assert!(BlockStoreOptions::default().check().is_ok());
    }
}
