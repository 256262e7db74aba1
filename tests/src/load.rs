//! A concurrent write load that records exactly which writes were
//! acknowledged, and the check that every acknowledged object reads back
//! byte-identical.
//!
//! Only a Put that returned `Ok` counts as acknowledged. A Put that failed
//! (its node died, the retries ran out) may or may not have been stored;
//! if it was, it must be intact.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use finkfs_node::client::Client;
use futures_util::{stream, StreamExt};

use crate::alerts::{synthetic_alert, Alert};
use crate::poll;

/// Reads in flight while checking a load.
const VERIFY_READS_IN_FLIGHT_MAX: usize = 8;

/// One Put of the load.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The writer that made it.
    pub writer: u64,
    /// Its number within the writer's sequence.
    pub index: u64,
    /// The object's path.
    pub path: String,
    /// When the Put was sent.
    pub started: Instant,
    /// When it returned.
    pub finished: Instant,
    /// `None` when acknowledged; the error otherwise.
    pub error: Option<String>,
}

impl Attempt {
    /// Whether the Put returned `Ok`.
    pub fn acked(&self) -> bool {
        self.error.is_none()
    }
}

/// Writers putting synthetic alerts until stopped.
///
/// [`WriteLoad::run`] is a future to join with the test's own steps (not
/// a spawned task: `Client::put`'s future cannot be `tokio::spawn`ed, see
/// `docs/testing.md`); those steps watch it through the other methods and
/// end it with [`WriteLoad::stop`].
#[derive(Clone)]
pub struct WriteLoad {
    prefix: String,
    seed: u64,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    attempts: Arc<Mutex<Vec<Attempt>>>,
}

impl WriteLoad {
    /// A load of night `seed` under `prefix`: writer `w` puts alert `i`
    /// under `<prefix>/w<w>`, then `i + 1`.
    pub fn new(prefix: &str, seed: u64) -> WriteLoad {
        WriteLoad {
            prefix: prefix.to_string(),
            seed,
            stop: Arc::new(AtomicBool::new(false)),
            acked: Arc::new(AtomicU64::new(0)),
            attempts: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Runs `writers` concurrent writers through `client` until
    /// [`WriteLoad::stop`]; each finishes its Put in flight.
    pub async fn run(&self, client: &Client, writers: u64) {
        let writers = (0..writers).map(|writer| self.writer(client, writer));
        futures_util::future::join_all(writers).await;
    }

    async fn writer(&self, client: &Client, writer: u64) {
        let prefix = writer_prefix(&self.prefix, writer);
        let mut index = 0;
        while !self.stop.load(Ordering::Acquire) {
            let alert = synthetic_alert(&prefix, self.seed, index);
            let started = Instant::now();
            let result = client.put(&alert.path, alert.data).await;
            let attempt = Attempt {
                writer,
                index,
                path: alert.path,
                started,
                finished: Instant::now(),
                error: result.err().map(|e| e.to_string()),
            };
            if attempt.acked() {
                self.acked.fetch_add(1, Ordering::AcqRel);
            }
            lock(&self.attempts).push(attempt);
            index += 1;
        }
    }

    /// Tells the writers to stop after their Put in flight.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Puts acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Acquire)
    }

    /// Waits until at least `count` Puts are acknowledged.
    pub async fn wait_for_acks(&self, count: u64, timeout: Duration) -> Result<(), String> {
        let what = format!("{count} acknowledged puts");
        poll::until(&what, timeout, || {
            let acked = self.acked();
            async move {
                if acked >= count {
                    Ok(Some(()))
                } else {
                    Err(format!("{acked} acknowledged"))
                }
            }
        })
        .await
    }

    /// Waits until at least `count` Puts sent after `after` are
    /// acknowledged; the acknowledgement times of those Puts, sorted.
    pub async fn wait_for_acks_after(
        &self,
        after: Instant,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<Instant>, String> {
        let what = format!("{count} puts sent after the fault acknowledged");
        poll::until(&what, timeout, || {
            let mut acks: Vec<Instant> = lock(&self.attempts)
                .iter()
                .filter(|a| a.acked() && a.started >= after)
                .map(|a| a.finished)
                .collect();
            acks.sort();
            let seen = acks.len();
            async move {
                if seen >= count {
                    Ok(Some(acks))
                } else {
                    Err(format!("{seen} acknowledged"))
                }
            }
        })
        .await
    }

    /// Every attempt so far (all of them once [`WriteLoad::run`] returned).
    pub fn report(&self) -> LoadReport {
        LoadReport {
            prefix: self.prefix.clone(),
            seed: self.seed,
            attempts: lock(&self.attempts).clone(),
        }
    }
}

/// Every Put of a stopped load.
#[derive(Debug, Clone)]
pub struct LoadReport {
    prefix: String,
    seed: u64,
    /// Every attempt, in completion order.
    pub attempts: Vec<Attempt>,
}

impl LoadReport {
    /// Acknowledged Puts.
    pub fn acked(&self) -> usize {
        self.attempts.iter().filter(|a| a.acked()).count()
    }

    /// Puts that failed.
    pub fn failed(&self) -> usize {
        self.attempts.len() - self.acked()
    }

    /// The object an attempt wrote.
    pub fn alert(&self, attempt: &Attempt) -> Alert {
        synthetic_alert(
            &writer_prefix(&self.prefix, attempt.writer),
            self.seed,
            attempt.index,
        )
    }
}

/// What checking a load found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Acknowledged objects read back byte-identical.
    pub acked: usize,
    /// Failed Puts whose object was nevertheless stored (intact).
    pub failed_but_stored: usize,
    /// Failed Puts whose object is absent.
    pub failed_absent: usize,
}

/// Checks through `client` that every acknowledged object of `report`
/// reads back byte-identical, that every failed one is absent or intact,
/// and that the load's prefix holds nothing else. Panics on a violation.
pub async fn verify(client: &Client, report: &LoadReport) -> Verified {
    let expected: HashMap<String, &Attempt> = report
        .attempts
        .iter()
        .map(|a| (a.path.clone(), a))
        .collect();
    let listed = client
        .list_all(&format!("{}/", report.prefix))
        .await
        .unwrap_or_else(|e| panic!("listing {}: {e}", report.prefix));
    for info in &listed {
        let attempt = expected
            .get(&info.path)
            .unwrap_or_else(|| panic!("{} is listed but no writer ever put it", info.path));
        let alert = report.alert(attempt);
        assert_eq!(
            info.size,
            alert.data.len() as u64,
            "listed size of {}",
            info.path
        );
        assert_eq!(
            info.blake3,
            *blake3::hash(&alert.data).as_bytes(),
            "listed BLAKE3 of {}",
            info.path
        );
    }
    let checks = stream::iter(report.attempts.iter())
        .map(|attempt| check_one(client, report, attempt))
        .buffer_unordered(VERIFY_READS_IN_FLIGHT_MAX)
        .collect::<Vec<Outcome>>()
        .await;
    let count = |o: Outcome| checks.iter().filter(|c| **c == o).count();
    let verified = Verified {
        acked: count(Outcome::Acked),
        failed_but_stored: count(Outcome::FailedStored),
        failed_absent: count(Outcome::FailedAbsent),
    };
    assert_eq!(
        listed.len(),
        verified.acked + verified.failed_but_stored,
        "the listing holds exactly the objects read back"
    );
    verified
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Acked,
    FailedStored,
    FailedAbsent,
}

async fn check_one(client: &Client, report: &LoadReport, attempt: &Attempt) -> Outcome {
    let alert = report.alert(attempt);
    if !attempt.acked() {
        let stat = client
            .stat(&alert.path)
            .await
            .unwrap_or_else(|e| panic!("stat of {} (its put failed): {e}", alert.path));
        if stat.is_none() {
            return Outcome::FailedAbsent;
        }
    }
    let data = client.get(&alert.path).await.unwrap_or_else(|e| {
        let acked = if attempt.acked() {
            "acknowledged"
        } else {
            "stored"
        };
        panic!("{acked} object {} unreadable: {e}", alert.path)
    });
    assert!(
        data == alert.data,
        "{} reads back {} bytes that differ from the {} written",
        alert.path,
        data.len(),
        alert.data.len()
    );
    if attempt.acked() {
        Outcome::Acked
    } else {
        Outcome::FailedStored
    }
}

fn writer_prefix(prefix: &str, writer: u64) -> String {
    format!("{prefix}/w{writer}")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
