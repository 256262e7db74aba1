//! The writer's mutations: append, sync, truncate, purge. Each says what is
//! on disk when it returns; any write or sync error poisons the journal.

use std::io::IoSlice;
use std::path::PathBuf;
use std::sync::{Arc, RwLockWriteGuard};

use super::open::remove_durably;
use super::record::HashedPayload;
use super::recovery::Entry;
use super::segment::{self, SegmentHeader};
use super::state::{self, SegmentRef, State};
use super::{marker, record, Hash, Journal, JournalError, Tail};

/// Most bytes of records one write carries. The pieces are not copied, so
/// this bounds only how long the records of a large batch stay unreadable
/// (each becomes readable when its write returns); measured on ext4, writes
/// beyond about 1 MiB gain nothing.
pub const WRITE_BYTES_MAX: u64 = 1 << 20;
/// Most records one write carries: three pieces each (header, payload,
/// padding) stay well within the kernel's limit of 1024 pieces per call.
const WRITE_RECORDS_MAX: usize = 256;

/// One record to append: its index, its term, and its payload with the
/// payload's hash.
#[derive(Debug)]
pub struct Append<'a, B> {
    pub index: u64,
    pub term: u64,
    pub payload: &'a HashedPayload<B>,
}

/// Records placed after the tail but not yet written: their headers, one
/// after the other, and the payloads the headers go with.
struct Run<'a> {
    headers: Vec<u8>,
    payloads: Vec<&'a [u8]>,
    entries: Vec<Entry>,
    bytes: u64,
}

impl<'a> Run<'a> {
    fn new(mut headers: Vec<u8>) -> Run<'a> {
        headers.clear();
        Run {
            headers,
            payloads: Vec::new(),
            entries: Vec::new(),
            bytes: 0,
        }
    }

    /// Whether a record of `record_bytes` must wait for the next write (a
    /// record larger than a write still goes alone).
    fn is_full(&self, record_bytes: u64) -> bool {
        !self.entries.is_empty()
            && (self.entries.len() >= WRITE_RECORDS_MAX
                || self.bytes + record_bytes > WRITE_BYTES_MAX)
    }

    fn push(&mut self, entry: Entry, payload: &'a [u8]) {
        if let Some(last) = self.entries.last() {
            assert_eq!(last.end_offset(), entry.offset, "a run is contiguous");
        }
        self.bytes += record::record_bytes(entry.payload_len);
        self.entries.push(entry);
        self.payloads.push(payload);
    }

    /// Header, payload and padding of every record, in file order.
    fn slices(&self) -> Vec<IoSlice<'_>> {
        let headers = self.headers.chunks_exact(record::HEADER_BYTES);
        assert_eq!(headers.len(), self.payloads.len());
        let mut slices = Vec::with_capacity(3 * self.payloads.len());
        for ((header, payload), entry) in headers.zip(&self.payloads).zip(&self.entries) {
            slices.push(IoSlice::new(header));
            slices.push(IoSlice::new(payload));
            slices.push(IoSlice::new(record::padding(entry.payload_len)));
        }
        slices
    }

    fn clear(&mut self) {
        self.headers.clear();
        self.payloads.clear();
        self.entries.clear();
        self.bytes = 0;
    }
}

/// Which end of the journal goes first when every segment is removed, so
/// that a crash midway leaves what the operation allows: truncation a
/// prefix of the old journal, purging a suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    NewestFirst,
    OldestFirst,
}

impl Journal {
    fn state_mut(&self) -> RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .expect("journal index lock poisoned by a panic")
    }

    fn check_poisoned(&self) -> Result<(), JournalError> {
        if self.poisoned {
            return Err(JournalError::Poisoned);
        }
        Ok(())
    }

    /// Poisons the journal if `result` is an error: after a failed write or
    /// sync the page cache no longer tells what the disk holds.
    fn poison_on_error<T>(&mut self, result: Result<T, JournalError>) -> Result<T, JournalError> {
        if let Err(error) = &result {
            tracing::error!(dir = %self.dir.display(), %error, "journal poisoned by a failed write or sync");
            self.poisoned = true;
            self.forget_unsynced();
        }
        result
    }

    /// Cuts the active segment back to its last successful sync, best
    /// effort. After a failed sync the page cache may go on showing writes
    /// the disk will never hold (Linux drops them from the disk but not from
    /// the cache), and a reopen without a reboot would take them for durable
    /// records. Nothing past the last successful sync was acknowledged.
    fn forget_unsynced(&mut self) {
        let Some(tail) = &self.tail else {
            return;
        };
        if let Err(error) = tail.file.set_len(tail.synced) {
            tracing::warn!(file = %tail.path.display(), %error, "could not cut unsynced records");
        }
        let mut state = self
            .state
            .write()
            .expect("journal index lock poisoned by a panic");
        while state
            .entries
            .back()
            .is_some_and(|e| e.segment == tail.key && e.end_offset() > tail.synced)
        {
            state.entries.pop_back();
        }
    }

    /// Appends one record. A non-empty journal takes only the next index; an
    /// empty one takes any index (a new chain starts). The record is in the
    /// page cache, readable, and NOT durable until [`Journal::sync`].
    pub fn append(&mut self, index: u64, term: u64, payload: &[u8]) -> Result<(), JournalError> {
        self.append_hashed(index, term, &HashedPayload::new(payload))
    }

    /// [`Journal::append`] of a payload hashed beforehand, perhaps on another
    /// thread while this one waited for an fsync: hashing is most of the CPU
    /// an append costs.
    pub fn append_hashed<B: AsRef<[u8]>>(
        &mut self,
        index: u64,
        term: u64,
        hashed: &HashedPayload<B>,
    ) -> Result<(), JournalError> {
        self.append_batch(&[Append {
            index,
            term,
            payload: hashed,
        }])
    }

    /// Appends consecutive records (the first one as [`Journal::append`]
    /// takes it) with as few writes as the segment rolls allow: the records
    /// of one segment go in vectored writes of up to [`WRITE_BYTES_MAX`],
    /// header, payload and padding of each handed to the disk as they are,
    /// without a copy. Each record is readable once the write holding it
    /// returned; none is durable before [`Journal::sync`]. Every record is
    /// checked (length, index) before anything is written, so a refused
    /// batch appends nothing.
    pub fn append_batch<B: AsRef<[u8]>>(
        &mut self,
        records: &[Append<'_, B>],
    ) -> Result<(), JournalError> {
        self.check_poisoned()?;
        self.check_batch(records)?;
        let mut run = Run::new(std::mem::take(&mut self.scratch));
        let mut result = Ok(());
        for record in records {
            result = self.place(record, &mut run);
            if result.is_err() {
                break;
            }
        }
        let result = result.and_then(|()| self.write_run(&mut run));
        self.scratch = run.headers;
        result
    }

    /// Checks every record's length and index, in order, without writing.
    fn check_batch<B: AsRef<[u8]>>(&self, records: &[Append<'_, B>]) -> Result<(), JournalError> {
        let max = u64::from(self.options.record_bytes_max);
        let mut expected = self.next_index;
        for record in records {
            let len = record.payload.bytes().len() as u64;
            if len > max {
                return Err(JournalError::RecordTooLarge { bytes: len, max });
            }
            if let Some(expected) = expected.filter(|&expected| record.index != expected) {
                return Err(JournalError::NotContiguous {
                    expected,
                    got: record.index,
                });
            }
            assert!(
                record.index < u64::MAX,
                "journal index u64::MAX is reserved"
            );
            expected = Some(record.index + 1);
        }
        Ok(())
    }

    /// Gives one record its place after the tail (and after `run`), writing
    /// `run` first when the record must go in a new segment or `run` is full.
    fn place<'a, B: AsRef<[u8]>>(
        &mut self,
        record: &Append<'a, B>,
        run: &mut Run<'a>,
    ) -> Result<(), JournalError> {
        let payload_len =
            u32::try_from(record.payload.bytes().len()).expect("checked by check_batch");
        let record_bytes = record::record_bytes(payload_len);
        if !self.tail_fits(record_bytes) || run.is_full(record_bytes) {
            self.write_run(run)?;
        }
        self.make_room(record.index, record_bytes)?;
        let tail = self
            .tail
            .as_mut()
            .expect("make_room leaves an active segment");
        let placement = record::Placement {
            index: record.index,
            term: record.term,
            synced_len: tail.synced,
            previous_chain: tail.chain,
        };
        let header = record::encode_header(&mut run.headers, &placement, record.payload);
        run.push(
            Entry {
                index: record.index,
                term: record.term,
                offset: tail.len,
                payload_len,
                segment: tail.key,
            },
            record.payload.bytes(),
        );
        tail.len += record_bytes;
        tail.chain = header.chain;
        self.unsynced = true;
        self.next_index = Some(record.index + 1);
        Ok(())
    }

    /// Whether the active segment exists and takes `record_bytes` more
    /// without rolling (see [`Journal::make_room`]).
    fn tail_fits(&self, record_bytes: u64) -> bool {
        self.tail.as_ref().is_some_and(|tail| {
            tail.len <= segment::HEADER_BYTES as u64
                || tail.len + record_bytes <= self.options.segment_bytes_max
        })
    }

    /// Writes the placed records of `run` with one vectored write, then
    /// makes them readable. A failed write poisons the journal.
    fn write_run(&mut self, run: &mut Run<'_>) -> Result<(), JournalError> {
        let Some(first) = run.entries.first() else {
            return Ok(());
        };
        let tail = self.tail.as_ref().expect("placed records have a segment");
        assert_eq!(first.segment, tail.key, "a run stays in one segment");
        let offset = first.offset;
        let written = tail
            .file
            .write_vectored_at(offset, &run.slices())
            .map_err(|source| JournalError::io(&tail.path, offset, source));
        self.poison_on_error(written)?;
        self.state_mut().entries.extend(run.entries.drain(..));
        run.clear();
        Ok(())
    }

    /// Makes every append so far durable with one fsync of the active
    /// segment (earlier segments were synced when the journal rolled past
    /// them). Many appends, one sync: group commit.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.check_poisoned()?;
        if !self.unsynced {
            return Ok(());
        }
        self.sync_tail()
    }

    fn sync_tail(&mut self) -> Result<(), JournalError> {
        let Some(tail) = &self.tail else {
            return Ok(());
        };
        let result = tail
            .file
            .sync()
            .map_err(|e| JournalError::io(&tail.path, tail.len, e));
        self.poison_on_error(result)?;
        if let Some(tail) = &mut self.tail {
            tail.synced = tail.len;
        }
        self.unsynced = false;
        Ok(())
    }

    /// Ensures the active segment can take a record of `record_bytes`:
    /// creates the first segment, or rolls to a new one when the active one
    /// would pass `segment_bytes_max` (a lone oversize record still fits).
    fn make_room(&mut self, index: u64, record_bytes: u64) -> Result<(), JournalError> {
        let Some(tail) = &self.tail else {
            return self.create_segment(index, [0u8; 32]);
        };
        let holds_records = tail.len > segment::HEADER_BYTES as u64;
        if !holds_records || tail.len + record_bytes <= self.options.segment_bytes_max {
            return Ok(());
        }
        let chain = tail.chain;
        // Sync the full segment before the next exists: recovery relies on a
        // later segment proving every earlier one durable.
        self.unsynced = true;
        self.sync_tail()?;
        self.create_segment(index, chain)
    }

    /// Creates a segment durably (header synced, directory synced) before
    /// any record goes into it.
    fn create_segment(&mut self, first_index: u64, prev_chain: Hash) -> Result<(), JournalError> {
        let path = self.dir.join(segment::file_name(first_index));
        let header = SegmentHeader {
            first_index,
            prev_chain,
        }
        .encode();
        let created = self.disk.create(&path).and_then(|file| {
            file.write_at(0, &header)?;
            file.sync()?;
            self.disk.sync_dir(&self.dir)?;
            Ok(file)
        });
        let file = self.poison_on_error(created.map_err(|e| JournalError::io(&path, 0, e)))?;
        tracing::debug!(file = %path.display(), first_index, "journal segment created");
        let segment = SegmentRef {
            path: path.clone(),
            file: Arc::clone(&file),
        };
        self.state_mut().segments.insert(first_index, segment);
        self.tail = Some(Tail {
            key: first_index,
            path,
            file,
            len: segment::HEADER_BYTES as u64,
            chain: prev_chain,
            synced: segment::HEADER_BYTES as u64,
        });
        Ok(())
    }

    /// Removes every record with index > `index`, durably before returning:
    /// later segments are removed newest first (each removal synced into
    /// the directory), then the segment holding `index` is cut and synced.
    /// A crash midway leaves a prefix of the old journal. When record
    /// `index` itself is damaged, see [`Journal::truncate_after_damaged`].
    pub fn truncate_after(&mut self, index: u64) -> Result<(), JournalError> {
        self.check_poisoned()?;
        let (first, highest) = {
            let state = self.state();
            (state.first_index(), state.highest_index())
        };
        let Some(highest) = highest else {
            return Ok(());
        };
        if index >= highest {
            return Ok(());
        }
        if first.is_none_or(|first| index < first) {
            return self.clear(Order::NewestFirst);
        }
        let (entry, segment, header) = match self.verified(index) {
            Ok(verified) => verified,
            Err(damaged @ JournalError::Corrupt { .. }) => {
                return self.truncate_after_damaged(index, damaged)
            }
            Err(error) => return Err(error),
        };
        let doomed = {
            let mut state = self.state_mut();
            let doomed = state.remove_segments_after(entry.segment);
            state.cut_after(index);
            doomed
        };
        self.next_index = Some(index + 1);
        self.tail = None;
        let new_len = entry.end_offset();
        self.remove_and_cut(&doomed, &segment, Some(new_len))?;
        self.tail = Some(Tail {
            key: entry.segment,
            path: segment.path,
            file: segment.file,
            len: new_len,
            chain: header.chain,
            synced: new_len,
        });
        self.unsynced = false;
        Ok(())
    }

    /// `truncate_after(index)` when record `index` does not verify (a
    /// follower whose damaged committed record is the leader's match point).
    /// Its end and chain value are unknown, and damage is never cut: the
    /// damaged bytes stay, the records after them go (later segments newest
    /// first, then the holding segment cut at the first valid record above
    /// `index`), and the journal goes on in a new segment at `index + 1`
    /// whose header starts a new chain (recovery takes a segment header's
    /// chain as the anchor after damage). A crash before that segment exists
    /// leaves the damaged bytes at the end of the journal, where recovery
    /// may take them for a torn tail: the log store then sees committed
    /// entries missing, as for any loss it cannot prove was a crash.
    fn truncate_after_damaged(
        &mut self,
        index: u64,
        damaged: JournalError,
    ) -> Result<(), JournalError> {
        let (holder, cut_at, doomed) = {
            let mut state = self.state_mut();
            let Some((&key, holder)) = state.segments.range(..=index).next_back() else {
                // No segment can hold `index`: nothing to go on from.
                return Err(damaged);
            };
            let holder = holder.clone();
            let cut_at = state
                .entries
                .iter()
                .find(|e| e.index > index && e.segment == key)
                .map(|e| e.offset);
            let doomed = state.remove_segments_after(key);
            state.cut_after(index);
            (holder, cut_at, doomed)
        };
        self.next_index = Some(index + 1);
        self.tail = None;
        self.unsynced = false;
        tracing::warn!(
            dir = %self.dir.display(),
            index,
            "truncating after a damaged record: its bytes stay, the journal goes on in a new segment"
        );
        self.remove_and_cut(&doomed, &holder, cut_at)?;
        self.create_segment(index + 1, [0u8; 32])
    }

    /// The I/O of a truncation: removes `doomed` (newest first, each removal
    /// synced into the directory), then cuts `segment` to `len` if given and
    /// syncs it. A failure poisons the journal.
    fn remove_and_cut(
        &mut self,
        doomed: &[PathBuf],
        segment: &SegmentRef,
        len: Option<u64>,
    ) -> Result<(), JournalError> {
        let offset = len.unwrap_or(0);
        let result = doomed
            .iter()
            .try_for_each(|path| remove_durably(&*self.disk, &self.dir, path))
            .and_then(|()| {
                len.map_or(Ok(()), |len| segment.file.set_len(len))
                    .map_err(|e| JournalError::io(&segment.path, offset, e))
            })
            .and_then(|()| {
                segment
                    .file
                    .sync()
                    .map_err(|e| JournalError::io(&segment.path, offset, e))
            });
        self.poison_on_error(result)
    }

    /// Reads and verifies record `index`, with the segment holding it.
    fn verified(
        &self,
        index: u64,
    ) -> Result<(Entry, SegmentRef, record::RecordHeader), JournalError> {
        let state = self.state();
        state.read(index)?;
        let entry = *state.entry(index).ok_or(JournalError::NotFound { index })?;
        let segment = state
            .segments
            .get(&entry.segment)
            .expect("every entry's segment is indexed")
            .clone();
        let (header, _) = state::read_entry(&segment, &entry)?;
        Ok((entry, segment, header))
    }

    /// Makes records <= `index` unreadable and deletes, durably and oldest
    /// first, every segment whose records are all <= `index`. If records
    /// <= `index` remain in the oldest kept segment, the purge point is first
    /// written to the purge marker, so they stay unreadable after a restart.
    /// If `index` reaches the last record, the journal becomes empty and the
    /// next append may start at any index.
    pub fn purge_up_to(&mut self, index: u64) -> Result<(), JournalError> {
        self.check_poisoned()?;
        let (first, highest) = {
            let state = self.state();
            (state.first_index(), state.highest_index())
        };
        let (Some(first), Some(highest)) = (first, highest) else {
            return Ok(());
        };
        if index < first {
            return Ok(());
        }
        if index >= highest {
            return self.clear(Order::OldestFirst);
        }
        let (doomed, needs_marker) = {
            let mut state = self.state_mut();
            let keys: Vec<u64> = state.segments.keys().copied().collect();
            let whole = keys
                .windows(2)
                .take_while(|pair| pair[1] <= index + 1)
                .count();
            let needs_marker = keys.get(whole).is_some_and(|&key| key <= index);
            let doomed: Vec<PathBuf> = keys[..whole]
                .iter()
                .filter_map(|k| state.segments.remove(k))
                .map(|s| s.path)
                .collect();
            state.cut_up_to(index);
            (doomed, needs_marker)
        };
        let marker_path = self.dir.join(marker::FILE_NAME);
        let mut result = Ok(());
        if needs_marker {
            result =
                finkfs_seam::write_file_atomic(&*self.disk, &marker_path, &marker::encode(index))
                    .map_err(|e| JournalError::io(&marker_path, 0, e));
        }
        let result = result.and_then(|()| {
            doomed
                .iter()
                .try_for_each(|path| remove_durably(&*self.disk, &self.dir, path))
        });
        self.poison_on_error(result)
    }

    /// Removes every segment and the purge marker: the journal is empty.
    fn clear(&mut self, order: Order) -> Result<(), JournalError> {
        let mut paths: Vec<PathBuf> = {
            let mut state = self.state_mut();
            let paths = state.segments.values().map(|s| s.path.clone()).collect();
            *state = State::default();
            paths
        };
        if order == Order::NewestFirst {
            paths.reverse();
        }
        self.tail = None;
        self.next_index = None;
        self.unsynced = false;
        let marker_path = self.dir.join(marker::FILE_NAME);
        let result = paths
            .iter()
            .try_for_each(|path| remove_durably(&*self.disk, &self.dir, path))
            .and_then(|()| {
                self.disk
                    .exists(&marker_path)
                    .map_err(|e| JournalError::io(&marker_path, 0, e))
            })
            .and_then(|exists| {
                if exists {
                    remove_durably(&*self.disk, &self.dir, &marker_path)
                } else {
                    Ok(())
                }
            });
        self.poison_on_error(result)
    }
}
