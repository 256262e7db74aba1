//! One simulated file (an inode): its durable bytes, the writes and length
//! changes not yet synced, and what the running system sees.

use std::collections::BTreeSet;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, RngCore};

use crate::faults::{CrashPolicy, FaultKind, InjectedFault};

/// The unit a power cut tears writes at, and the unit of at-rest faults.
pub const SECTOR_BYTES: u64 = 512;

/// The largest file the simulator holds (every file lives in memory).
pub const FILE_BYTES_MAX: u64 = 1 << 32;

const _: () = assert!(FILE_BYTES_MAX.is_multiple_of(SECTOR_BYTES));

/// An operation applied to `current` but not yet to `durable`.
#[derive(Debug, Clone)]
enum Pending {
    /// `lost` writes never reach `durable` (an injected lost write).
    Write {
        offset: u64,
        bytes: Vec<u8>,
        lost: bool,
    },
    SetLen {
        len: u64,
    },
}

/// What a power cut does to one pending write.
#[derive(Debug, Clone, Copy)]
enum Fate {
    Lost,
    Kept,
    Torn,
}

#[derive(Debug, Clone)]
pub(crate) struct FileState {
    /// What survives a power cut.
    pub(crate) durable: Vec<u8>,
    /// What the running system reads: `durable` with pending ops applied,
    /// plus whatever a failed sync or a lost write left in the page cache.
    pub(crate) current: Vec<u8>,
    pending: Vec<Pending>,
    /// The path last given to this inode, for fault reports.
    pub(crate) path: PathBuf,
    /// Cloned into every open handle: more than one strong count means the
    /// file is open, so an unlinked file keeps its data.
    pub(crate) handles: Arc<()>,
    /// Sectors whose reads fail until a write covers them.
    bad_sectors: BTreeSet<u64>,
}

impl FileState {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            durable: Vec::new(),
            current: Vec::new(),
            pending: Vec::new(),
            path,
            handles: Arc::new(()),
            bad_sectors: BTreeSet::new(),
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.current.len() as u64
    }

    pub(crate) fn is_open(&self) -> bool {
        Arc::strong_count(&self.handles) > 1
    }

    /// Copies `current[offset..]` into `buf`. The caller has checked the
    /// range; a latent sector error in it fails the read.
    pub(crate) fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), u64> {
        let end = offset + buf.len() as u64;
        if let Some(bad) = self.bad_sector_in(offset, end) {
            return Err(bad);
        }
        buf.copy_from_slice(&self.current[index(offset)..index(end)]);
        Ok(())
    }

    fn bad_sector_in(&self, offset: u64, end: u64) -> Option<u64> {
        if offset == end {
            return None;
        }
        let first = offset / SECTOR_BYTES;
        let last = (end - 1) / SECTOR_BYTES;
        self.bad_sectors.range(first..=last).next().copied()
    }

    /// Records a write in the page cache and as pending. A write rewrites
    /// (and so remaps) every bad sector it touches.
    pub(crate) fn write(&mut self, offset: u64, bytes: &[u8], lost: bool) {
        if bytes.is_empty() {
            return;
        }
        write_into(&mut self.current, offset, bytes);
        let end = offset + bytes.len() as u64;
        let touched = offset / SECTOR_BYTES..=(end - 1) / SECTOR_BYTES;
        self.bad_sectors.retain(|sector| !touched.contains(sector));
        self.pending.push(Pending::Write {
            offset,
            bytes: bytes.to_vec(),
            lost,
        });
    }

    pub(crate) fn set_len(&mut self, len: u64) {
        self.current.resize(index(len), 0);
        self.pending.push(Pending::SetLen { len });
    }

    /// A successful sync: every pending op except lost writes is durable.
    pub(crate) fn sync(&mut self) {
        for op in std::mem::take(&mut self.pending) {
            match op {
                Pending::Write { lost: true, .. } => {}
                Pending::Write { offset, bytes, .. } => {
                    write_into(&mut self.durable, offset, &bytes)
                }
                Pending::SetLen { len } => self.durable.resize(index(len), 0),
            }
        }
    }

    /// A failed sync (fsyncgate): each pending op is either made durable or
    /// dropped for good, and forgotten either way, while `current` keeps
    /// showing it. A retried sync then succeeds with nothing to do.
    pub(crate) fn fail_sync(&mut self, rng: &mut SmallRng, log: &mut Vec<InjectedFault>) {
        for op in std::mem::take(&mut self.pending) {
            let reaches_disk = rng.gen_bool(0.5);
            match op {
                Pending::Write { lost: true, .. } => {}
                Pending::Write { offset, bytes, .. } if reaches_disk => {
                    write_into(&mut self.durable, offset, &bytes);
                }
                Pending::Write { offset, bytes, .. } => {
                    let len = bytes.len() as u64;
                    log.push(InjectedFault::at(
                        FaultKind::FailedSync,
                        &self.path,
                        offset,
                        len,
                    ));
                }
                Pending::SetLen { len } if reaches_disk => self.durable.resize(index(len), 0),
                Pending::SetLen { len } => {
                    log.push(self.set_len_fault(FaultKind::FailedSync, len));
                }
            }
        }
    }

    /// A power cut: pending ops meet their fate under `policy`, then the
    /// running view falls back to what is durable.
    pub(crate) fn power_cut(
        &mut self,
        policy: CrashPolicy,
        rng: &mut SmallRng,
        log: &mut Vec<InjectedFault>,
    ) {
        for op in std::mem::take(&mut self.pending) {
            match op {
                Pending::Write { lost: true, .. } => {}
                Pending::Write { offset, bytes, .. } => {
                    let fate = write_fate(policy, rng);
                    self.apply_at_cut(fate, offset, &bytes, rng, log);
                }
                Pending::SetLen { len } => {
                    let kept = match policy {
                        CrashPolicy::LoseUnsynced => false,
                        CrashPolicy::KeepUnsynced => true,
                        CrashPolicy::Random => rng.gen_bool(0.5),
                    };
                    if kept {
                        self.durable.resize(index(len), 0);
                    }
                    let kind = if kept {
                        FaultKind::KeptUnsynced
                    } else {
                        FaultKind::LostUnsynced
                    };
                    log.push(self.set_len_fault(kind, len));
                }
            }
        }
        self.current = self.durable.clone();
    }

    fn apply_at_cut(
        &mut self,
        fate: Fate,
        offset: u64,
        bytes: &[u8],
        rng: &mut SmallRng,
        log: &mut Vec<InjectedFault>,
    ) {
        let kind = match fate {
            Fate::Lost => FaultKind::LostUnsynced,
            Fate::Kept => {
                write_into(&mut self.durable, offset, bytes);
                FaultKind::KeptUnsynced
            }
            Fate::Torn => {
                tear_into(&mut self.durable, offset, bytes, rng);
                FaultKind::TornWrite
            }
        };
        log.push(InjectedFault::at(
            kind,
            &self.path,
            offset,
            bytes.len() as u64,
        ));
    }

    fn set_len_fault(&self, kind: FaultKind, len: u64) -> InjectedFault {
        InjectedFault {
            kind,
            path: self.path.clone(),
            offset: Some(len),
            len: None,
        }
    }

    /// Flips one bit at rest, in both views where the byte exists.
    pub(crate) fn flip_bit(&mut self, bit_offset: u64) -> io::Result<()> {
        let byte = bit_offset / 8;
        let mask = 1u8 << (bit_offset % 8);
        self.at_rest(byte, 1, |bytes| bytes[0] ^= mask)
    }

    /// Zeroes one sector at rest, in both views where it exists.
    pub(crate) fn zero_sector(&mut self, sector: u64) -> io::Result<()> {
        let offset = sector.saturating_mul(SECTOR_BYTES);
        self.at_rest(offset, SECTOR_BYTES, |bytes| bytes.fill(0))
    }

    /// Makes reads of one existing sector fail until it is rewritten.
    pub(crate) fn mark_bad_sector(&mut self, sector: u64) -> io::Result<()> {
        self.at_rest(sector.saturating_mul(SECTOR_BYTES), SECTOR_BYTES, |_| {})?;
        self.bad_sectors.insert(sector);
        Ok(())
    }

    /// Overwrites bytes at rest in both views, extending them if needed.
    pub(crate) fn plant(&mut self, offset: u64, bytes: &[u8]) {
        write_into(&mut self.durable, offset, bytes);
        write_into(&mut self.current, offset, bytes);
    }

    /// Runs `change` on `[offset, offset + len)` clipped to each view; fails
    /// if the range lies past the end of both.
    fn at_rest(&mut self, offset: u64, len: u64, change: impl Fn(&mut [u8])) -> io::Result<()> {
        let mut touched = false;
        for view in [&mut self.durable, &mut self.current] {
            let view_len = view.len() as u64;
            if offset < view_len {
                let end = view_len.min(offset.saturating_add(len));
                change(&mut view[index(offset)..index(end)]);
                touched = true;
            }
        }
        if touched {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: offset {offset} is past the end", self.path.display()),
            ))
        }
    }
}

fn write_fate(policy: CrashPolicy, rng: &mut SmallRng) -> Fate {
    match policy {
        CrashPolicy::LoseUnsynced => Fate::Lost,
        CrashPolicy::KeepUnsynced => Fate::Kept,
        CrashPolicy::Random => match rng.gen_range(0..3u8) {
            0 => Fate::Lost,
            1 => Fate::Kept,
            _ => Fate::Torn,
        },
    }
}

/// Writes `bytes` at `offset`, extending `view` with zeros if needed.
pub(crate) fn write_into(view: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let end = index(offset) + bytes.len();
    if view.len() < end {
        view.resize(end, 0);
    }
    view[index(offset)..end].copy_from_slice(bytes);
}

/// Applies a write interrupted by a power cut: each sector it covers (sectors
/// are aligned to file offsets) independently keeps its old bytes, takes the
/// new ones, or gets garbage. Only bytes inside the write change, so data
/// synced earlier in a shared sector survives. The file grows to the end of
/// the write; old bytes past the old end read as zeros.
fn tear_into(view: &mut Vec<u8>, offset: u64, bytes: &[u8], rng: &mut SmallRng) {
    let end = offset + bytes.len() as u64;
    if (view.len() as u64) < end {
        view.resize(index(end), 0);
    }
    let mut start = offset;
    while start < end {
        let piece_end = ((start / SECTOR_BYTES + 1) * SECTOR_BYTES).min(end);
        let target = &mut view[index(start)..index(piece_end)];
        match rng.gen_range(0..3u8) {
            0 => {}
            1 => target.copy_from_slice(&bytes[index(start - offset)..index(piece_end - offset)]),
            _ => rng.fill_bytes(target),
        }
        start = piece_end;
    }
}

/// Converts an offset the caller has bounded by [`FILE_BYTES_MAX`].
pub(crate) fn index(offset: u64) -> usize {
    usize::try_from(offset).expect("offsets are bounded by FILE_BYTES_MAX")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn torn_write_leaves_bytes_outside_the_write_alone() {
        for seed in 0..64 {
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut view = vec![7u8; 2048];
            tear_into(&mut view, 100, &[9u8; 1000], &mut rng);
            assert!(view[..100].iter().all(|&b| b == 7), "seed {seed}");
            assert!(view[1100..].iter().all(|&b| b == 7), "seed {seed}");
        }
    }

    #[test]
    fn successful_sync_skips_lost_writes_and_applies_the_rest_in_order() {
        let mut file = FileState::new("f".into());
        file.write(0, b"aaaa", false);
        file.write(1, b"bb", true);
        file.set_len(3);
        file.sync();
        assert_eq!(file.durable, b"aaa");
        assert_eq!(file.current, b"abb");
    }

    #[test]
    fn bad_sector_fails_reads_until_rewritten() {
        let mut file = FileState::new("f".into());
        file.write(0, &[1u8; 1024], false);
        file.sync();
        file.mark_bad_sector(1).unwrap();
        let mut buf = [0u8; 10];
        assert_eq!(file.read(0, &mut buf), Ok(()));
        assert_eq!(file.read(510, &mut buf), Err(1));
        file.write(600, b"x", false);
        assert_eq!(file.read(510, &mut buf), Ok(()));
    }
}
