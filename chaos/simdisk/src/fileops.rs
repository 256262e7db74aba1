//! The operations of an open file handle, with the faults they can meet.

use std::io;
use std::path::PathBuf;

use rand::Rng;

use crate::faults::{FaultKind, FaultOp, InjectedFault};
use crate::file::{FileState, SECTOR_BYTES};
use crate::namespace::Ino;
use crate::state::{checked_end, State};

/// Where a handle points: an inode, valid only in the epoch it was opened.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HandleId {
    pub(crate) ino: Ino,
    pub(crate) epoch: u64,
}

impl State {
    fn live(&mut self, id: HandleId) -> io::Result<&mut FileState> {
        if id.epoch != self.epoch {
            return Err(stale());
        }
        self.files.get_mut(&id.ino).ok_or_else(stale)
    }

    fn live_path(&mut self, id: HandleId) -> io::Result<PathBuf> {
        Ok(self.live(id)?.path.clone())
    }

    pub(crate) fn len(&mut self, id: HandleId) -> io::Result<u64> {
        Ok(self.live(id)?.len())
    }

    /// A read past the end is `UnexpectedEof` before any fault is drawn: it
    /// never reaches the device. An empty read succeeds anywhere, as
    /// `pread` of zero bytes does.
    pub(crate) fn read_at(&mut self, id: HandleId, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let path = self.live_path(id)?;
        if buf.is_empty() {
            return Ok(());
        }
        let len = buf.len() as u64;
        let file_len = self.live(id)?.len();
        if offset.checked_add(len).is_none_or(|end| end > file_len) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{}: read of {len} bytes at {offset} past the end",
                    path.display()
                ),
            ));
        }
        if let Some(fault) = self.injected(FaultOp::Read, &[&path], Some((offset, len))) {
            return Err(fault.error());
        }
        if self.live(id)?.read(offset, buf).is_err() {
            let kind = FaultKind::Eio { op: FaultOp::Read };
            self.fault_log
                .push(InjectedFault::at(kind, &path, offset, len));
            return Err(finkfs_seam::eio());
        }
        Ok(())
    }

    /// A failed write changes nothing. A misdirected write lands elsewhere
    /// in both views; a lost write shows in the running view only.
    pub(crate) fn write_at(&mut self, id: HandleId, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let path = self.live_path(id)?;
        checked_end(offset, bytes.len())?;
        let len = bytes.len() as u64;
        if let Some(fault) = self.injected(FaultOp::Write, &[&path], Some((offset, len))) {
            return Err(fault.error());
        }
        let misdirect_armed = !bytes.is_empty() && self.plan.misdirect_armed(&path, false);
        let misdirect =
            misdirect_armed || (!bytes.is_empty() && self.draw(self.plan.rates.misdirect));
        let landing = if misdirect {
            let file_len = self.live(id)?.len();
            landing_offset(&mut self.rng, offset, len, file_len)
        } else {
            offset
        };
        let new_len = self.live(id)?.len().max(landing + len);
        if !bytes.is_empty() {
            self.check_capacity(id.ino, new_len)?;
        }
        if misdirect_armed {
            self.plan.misdirect_armed(&path, true);
        }
        let lost = !bytes.is_empty()
            && (self.plan.lose_armed(&path, true) || self.draw(self.plan.rates.lost_write));
        self.live(id)?.write(landing, bytes, lost);
        if misdirect {
            let kind = FaultKind::Misdirected { landed_at: landing };
            self.fault_log
                .push(InjectedFault::at(kind, &path, offset, len));
        }
        if lost {
            let fault = InjectedFault::at(FaultKind::LostWrite, &path, landing, len);
            self.fault_log.push(fault);
        }
        Ok(())
    }

    pub(crate) fn set_len(&mut self, id: HandleId, len_bytes: u64) -> io::Result<()> {
        let path = self.live_path(id)?;
        checked_end(len_bytes, 0)?;
        if let Some(fault) = self.injected(FaultOp::Write, &[&path], Some((len_bytes, 0))) {
            return Err(fault.error());
        }
        self.check_capacity(id.ino, len_bytes)?;
        self.live(id)?.set_len(len_bytes);
        Ok(())
    }

    /// A failed sync has the failed-fsync semantics of [`FileState::fail_sync`].
    pub(crate) fn sync(&mut self, id: HandleId) -> io::Result<()> {
        let path = self.live_path(id)?;
        if let Some(fault) = self.injected(FaultOp::Sync, &[&path], None) {
            let file = self.files.get_mut(&id.ino).ok_or_else(stale)?;
            file.fail_sync(&mut self.rng, &mut self.fault_log);
            return Err(fault.error());
        }
        self.live(id)?.sync();
        Ok(())
    }
}

/// A misdirected write's landing offset: `offset` shifted by a random
/// non-zero multiple of the sector size, within the file or just past it.
fn landing_offset(rng: &mut impl Rng, offset: u64, len: u64, file_len: u64) -> u64 {
    let limit = file_len.max(offset + len) + SECTOR_BYTES;
    let steps_back = offset / SECTOR_BYTES;
    let steps_forward = (limit - offset) / SECTOR_BYTES;
    debug_assert!(steps_forward >= 1);
    let choice = rng.gen_range(0..steps_back + steps_forward);
    if choice < steps_back {
        offset - (steps_back - choice) * SECTOR_BYTES
    } else {
        offset + (choice - steps_back + 1) * SECTOR_BYTES
    }
}

fn stale() -> io::Error {
    io::Error::other("stale handle: opened before a power cut")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    #[test]
    fn landing_offset_moves_by_whole_sectors_and_stays_near_the_file() {
        let mut rng = SmallRng::seed_from_u64(3);
        for _ in 0..1000 {
            let landed = landing_offset(&mut rng, 1100, 100, 4096);
            assert_ne!(landed, 1100);
            assert_eq!(landed.abs_diff(1100) % SECTOR_BYTES, 0);
            assert!(landed <= 4096 + SECTOR_BYTES, "{landed}");
        }
    }

    #[test]
    fn landing_offset_of_an_append_at_zero_moves_forward() {
        let mut rng = SmallRng::seed_from_u64(4);
        for _ in 0..100 {
            assert_eq!(landing_offset(&mut rng, 0, 10, 0), SECTOR_BYTES);
        }
    }
}
