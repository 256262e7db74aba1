//! Guards against a leader crash that stalls writes (no new leader, a
//! client stuck on the dead node) or loses an acknowledged write: the
//! leader is SIGKILLed while writers are busy, and every object whose Put
//! returned Ok must read back byte-identical from the survivors.

use std::time::{Duration, Instant};

use finkfs_tests::load::{verify, WriteLoad};
use finkfs_tests::{LocalCluster, Settings};

/// Concurrent writers.
const WRITERS: u64 = 4;
/// Puts acknowledged before the leader is killed.
const ACKS_BEFORE_KILL: u64 = 40;
/// Puts sent after the kill that must be acknowledged.
const ACKS_AFTER_KILL: usize = 40;
/// Longest accepted time from the kill to the first acknowledged Put sent
/// after it (about a dozen election timeouts of these settings).
const RESUME_BOUND: Duration = Duration::from_secs(10);
/// Longest wait for any phase of the test.
const PHASE_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_resume_within_bound_after_leader_sigkill_and_every_acked_object_survives() {
    let mut cluster = LocalCluster::start(Settings::default()).await;
    let client = cluster.client().await;
    let load = WriteLoad::new("failover", 2);

    let scenario = async {
        let outcome = async {
            load.wait_for_acks(ACKS_BEFORE_KILL, PHASE_TIMEOUT).await?;
            let old = cluster.wait_for_leader(PHASE_TIMEOUT).await;
            let killed_at = Instant::now();
            cluster.kill(old);
            let acks = load
                .wait_for_acks_after(killed_at, ACKS_AFTER_KILL, PHASE_TIMEOUT)
                .await?;
            let new = cluster.wait_for_leader(PHASE_TIMEOUT).await;
            Ok::<_, String>((old, new, acks[0] - killed_at))
        }
        .await;
        load.stop();
        outcome
    };
    let ((), outcome) = tokio::join!(load.run(&client, WRITERS), scenario);
    let (old, new, resumed) = outcome.unwrap_or_else(|e| panic!("{e}"));

    let report = load.report();
    println!(
        "leader {old} killed; node {new} leads; first write sent after the kill acknowledged \
         {resumed:?} after it; {} puts acknowledged, {} failed",
        report.acked(),
        report.failed()
    );
    assert_ne!(old, new, "the killed node cannot lead");
    assert!(
        resumed < RESUME_BOUND,
        "writes resumed {resumed:?} after the leader was killed (bound {RESUME_BOUND:?})"
    );
    let verified = verify(&client, &report).await;
    assert_eq!(verified.acked, report.acked());
    assert!(report.acked() >= ACKS_BEFORE_KILL as usize + ACKS_AFTER_KILL);
}
