//! The scrubber: a background task that reads and verifies every block the
//! index knows and every journal record, so that damage at rest is found
//! within one period even when nothing reads it — not a month later.
//!
//! A pass starts every `period`. It reads blocks at a rate that spreads the
//! pass over the period — the bytes the index holds divided by the period,
//! kept between [`SCRUB_RATE_FLOOR_BYTES_PER_S`] (small stores finish fast)
//! and [`SCRUB_RATE_CEILING_BYTES_PER_S`] (a large one does not starve
//! client I/O), and under the operator's cap if set. A block that fails
//! verification is repaired from the peers through [`ReadRepair`] (the
//! damaged copy is quarantined, never deleted). The journal is verified
//! read-only through its scan (the classification of opening it); its
//! damage is logged and counted here, and repaired elsewhere.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use finkfs_raft::journal::{Journal, JournalOptions};
use finkfs_seam::DiskRef;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::blocks::BlockLocation;
use crate::hex::hex;
use crate::index::LIST_LIMIT_MAX;
use crate::reader::ObjectReader;
use crate::repair::{now_unix_ms, DamagedBlock, LiveOutcome, ReadRepair};

/// Default time in which a full pass completes.
pub const SCRUB_PERIOD_DEFAULT: Duration = Duration::from_secs(24 * 60 * 60);
/// Slowest scrub rate: a small store is done in seconds, whatever the period.
pub const SCRUB_RATE_FLOOR_BYTES_PER_S: u64 = 4 << 20;
/// Fastest scrub rate, unless the operator's cap is lower.
pub const SCRUB_RATE_CEILING_BYTES_PER_S: u64 = 256 << 20;
/// Longest wait before the first pass after start-up.
pub const SCRUB_FIRST_PASS_DELAY_MAX: Duration = Duration::from_secs(60);
/// Block entries read from the index at a time.
const SCRUB_PAGE_BLOCKS: usize = 256;
const _: () = assert!(SCRUB_PAGE_BLOCKS <= LIST_LIMIT_MAX);
const _: () = assert!(SCRUB_RATE_FLOOR_BYTES_PER_S <= SCRUB_RATE_CEILING_BYTES_PER_S);

/// How the scrubber runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScrubSettings {
    /// A full pass completes within this time; zero turns scrubbing off.
    pub period: Duration,
    /// The operator's cap on the scrub rate, bytes per second.
    pub rate_cap_bytes_per_s: Option<u64>,
}

impl Default for ScrubSettings {
    fn default() -> Self {
        ScrubSettings {
            period: SCRUB_PERIOD_DEFAULT,
            rate_cap_bytes_per_s: None,
        }
    }
}

impl ScrubSettings {
    /// Whether the scrubber runs at all.
    pub fn is_enabled(&self) -> bool {
        !self.period.is_zero()
    }

    /// Bytes per second for a pass over `total_bytes`.
    pub fn rate_bytes_per_s(&self, total_bytes: u64) -> u64 {
        let period_s = self.period.as_secs_f64().max(0.001);
        let spread = (total_bytes as f64 / period_s).ceil() as u64;
        let rate = spread.clamp(SCRUB_RATE_FLOOR_BYTES_PER_S, SCRUB_RATE_CEILING_BYTES_PER_S);
        match self.rate_cap_bytes_per_s {
            Some(cap) => rate.min(cap.max(1)),
            None => rate,
        }
    }
}

/// Counters of the scrubber, for /metrics (damage and repairs are counted
/// in [`crate::repair::RepairStats`], shared with read repair).
#[derive(Debug, Default)]
pub struct ScrubStats {
    pub bytes: AtomicU64,
    pub passes: AtomicU64,
    /// When the last pass ended, Unix seconds (0: none yet).
    pub last_pass_unix: AtomicU64,
}

/// What one pass found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassSummary {
    pub blocks: u64,
    pub bytes: u64,
    pub damaged: u64,
    pub repaired: u64,
    pub unrepairable: u64,
    pub journal_damage: u64,
}

/// One node's scrubber.
pub struct Scrubber {
    reader: ObjectReader,
    repair: ReadRepair,
    disk: DiskRef,
    journal_dir: PathBuf,
    settings: ScrubSettings,
    stats: Arc<ScrubStats>,
}

impl Scrubber {
    /// A scrubber of the store `reader` reads and of the journal in
    /// `journal_dir` on `disk`, repairing through `repair`.
    pub fn new(
        reader: ObjectReader,
        repair: ReadRepair,
        disk: DiskRef,
        journal_dir: PathBuf,
        settings: ScrubSettings,
        stats: Arc<ScrubStats>,
    ) -> Scrubber {
        Scrubber {
            reader,
            repair,
            disk,
            journal_dir,
            settings,
            stats,
        }
    }

    /// Runs a pass every period until `stopped` turns true.
    pub async fn run(self, mut stopped: watch::Receiver<bool>) {
        if !self.settings.is_enabled() {
            return;
        }
        let mut next = Instant::now() + self.settings.period.min(SCRUB_FIRST_PASS_DELAY_MAX);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = stopped.wait_for(|s| *s) => return,
            }
            next = Instant::now() + self.settings.period;
            tokio::select! {
                summary = self.pass() => self.finish_pass(summary),
                _ = stopped.wait_for(|s| *s) => return,
            }
            if Instant::now() > next {
                tracing::warn!(period = ?self.settings.period, "a scrub pass took longer than the period (rate ceiling or cap too low for this store)");
            }
        }
    }

    fn finish_pass(&self, summary: PassSummary) {
        self.stats.passes.fetch_add(1, Ordering::Relaxed);
        self.stats
            .last_pass_unix
            .store(now_unix_ms() / 1000, Ordering::Relaxed);
        if summary.damaged > 0 || summary.journal_damage > 0 {
            tracing::warn!(?summary, "scrub pass found damage");
        } else {
            tracing::info!(?summary, "scrub pass clean");
        }
    }

    /// One pass: every block, then the journal.
    pub async fn pass(&self) -> PassSummary {
        let mut summary = PassSummary::default();
        let total = match self.total_bytes().await {
            Ok(total) => total,
            Err(error) => {
                tracing::error!(%error, "scrub cannot walk the index; pass skipped");
                return summary;
            }
        };
        let mut pace = Pace::new(self.settings.rate_bytes_per_s(total));
        if let Err(error) = self.scrub_blocks(&mut summary, &mut pace).await {
            tracing::error!(%error, "scrub of the blocks stopped early");
        }
        self.scrub_journal(&mut summary, &mut pace).await;
        summary
    }

    async fn total_bytes(&self) -> Result<u64, String> {
        let reader = self.reader.clone();
        let mut total = 0u64;
        let mut after: Option<[u8; 32]> = None;
        loop {
            let page = page(&reader, after).await?;
            let Some(last) = page.last() else {
                return Ok(total);
            };
            after = Some(last.hash);
            total += page.iter().map(|l| u64::from(l.len)).sum::<u64>();
        }
    }

    async fn scrub_blocks(&self, summary: &mut PassSummary, pace: &mut Pace) -> Result<(), String> {
        let mut after: Option<[u8; 32]> = None;
        loop {
            let page = page(&self.reader, after).await?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = Some(last.hash);
            for location in page {
                self.scrub_block(location, summary).await?;
                pace.spent(u64::from(location.len)).await;
            }
        }
    }

    async fn scrub_block(
        &self,
        location: BlockLocation,
        summary: &mut PassSummary,
    ) -> Result<(), String> {
        let reader = self.reader.clone();
        let read = finkfs_raft::rt::blocking(move || reader.blocks().read(&location))
            .await
            .map_err(|e| e.to_string())?;
        summary.blocks += 1;
        summary.bytes += u64::from(location.len);
        self.stats
            .bytes
            .fetch_add(u64::from(location.len), Ordering::Relaxed);
        let Err(error) = read else {
            return Ok(());
        };
        let Some(damaged) = DamagedBlock::from_read_error(location, &error) else {
            return Err(error.to_string());
        };
        summary.damaged += 1;
        tracing::warn!(
            block = %hex(&location.hash),
            file = %self.reader.blocks().pack_path(location.pack).display(),
            offset = location.offset,
            %error,
            "scrub found a damaged block"
        );
        match self.repair.repair(damaged).await {
            LiveOutcome::Repaired(_) => summary.repaired += 1,
            LiveOutcome::ReadAgain => {}
            LiveOutcome::Unrepairable { .. } => summary.unrepairable += 1,
        }
        Ok(())
    }

    async fn scrub_journal(&self, summary: &mut PassSummary, pace: &mut Pace) {
        let (disk, dir) = (self.disk.clone(), self.journal_dir.clone());
        let scanned = finkfs_raft::rt::blocking(move || {
            Journal::scan(&*disk, &dir, &JournalOptions::default())
        })
        .await;
        let report = match scanned {
            Ok(Ok(report)) => report,
            Ok(Err(error)) => {
                // Segments purged while the scan ran look like this too.
                tracing::warn!(%error, "scrub could not scan the journal this pass");
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "journal scan task failed");
                return;
            }
        };
        self.stats.bytes.fetch_add(report.bytes, Ordering::Relaxed);
        for damage in &report.damage {
            summary.journal_damage += 1;
            self.repair
                .stats()
                .journal_damage_found
                .fetch_add(1, Ordering::Relaxed);
            tracing::error!(%damage, "scrub found journal damage");
        }
        pace.spent(report.bytes).await;
    }
}

/// One page of block locations after `after`, from a fresh index view.
async fn page(
    reader: &ObjectReader,
    after: Option<[u8; 32]>,
) -> Result<Vec<BlockLocation>, String> {
    let reader = reader.clone();
    let listed = finkfs_raft::rt::blocking(move || {
        let view = reader.index().view()?;
        let entries = view.blocks_after(after.as_ref(), SCRUB_PAGE_BLOCKS)?;
        Ok::<_, crate::index::IndexError>(entries.into_iter().map(|e| e.location).collect())
    })
    .await
    .map_err(|e| e.to_string())?;
    listed.map_err(|e| e.to_string())
}

/// Keeps a pass at its rate: after `bytes` more are read, sleeps until the
/// time those bytes are due.
struct Pace {
    started: Instant,
    bytes: u64,
    rate_bytes_per_s: u64,
}

impl Pace {
    fn new(rate_bytes_per_s: u64) -> Pace {
        assert!(rate_bytes_per_s > 0);
        Pace {
            started: Instant::now(),
            bytes: 0,
            rate_bytes_per_s,
        }
    }

    async fn spent(&mut self, bytes: u64) {
        self.bytes += bytes;
        let due = Duration::from_secs_f64(self.bytes as f64 / self.rate_bytes_per_s as f64);
        tokio::time::sleep_until(self.started + due).await;
    }
}

/// Starts the scrubber of a node as a task; it stops when `stopped` turns
/// true.
pub fn spawn_scrubber(
    scrubber: Scrubber,
    stopped: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    finkfs_raft::rt::spawn(scrubber.run(stopped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_spreads_a_pass_over_the_period_within_floor_and_ceiling() {
        let settings = ScrubSettings {
            period: Duration::from_secs(100),
            rate_cap_bytes_per_s: None,
        };
        assert_eq!(settings.rate_bytes_per_s(0), SCRUB_RATE_FLOOR_BYTES_PER_S);
        assert_eq!(settings.rate_bytes_per_s(1000 << 20), 10 << 20);
        assert_eq!(
            settings.rate_bytes_per_s(u64::MAX / 2),
            SCRUB_RATE_CEILING_BYTES_PER_S
        );
    }

    #[test]
    fn operator_cap_wins_over_the_floor() {
        let settings = ScrubSettings {
            period: Duration::from_secs(100),
            rate_cap_bytes_per_s: Some(1 << 20),
        };
        assert_eq!(settings.rate_bytes_per_s(0), 1 << 20);
    }

    #[test]
    fn zero_period_turns_scrubbing_off() {
        let settings = ScrubSettings {
            period: Duration::ZERO,
            rate_cap_bytes_per_s: None,
        };
        assert!(!settings.is_enabled());
        assert!(ScrubSettings::default().is_enabled());
    }
}
