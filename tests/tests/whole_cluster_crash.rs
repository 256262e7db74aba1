//! Guards against losing acknowledged writes when every node dies at
//! once: an acknowledgement sent before the journal, the blocks or the
//! index were durable, or a restart that cannot re-apply what the index
//! had not yet synced. All three nodes are SIGKILLed under a write load
//! and restarted, three times over; every object whose Put returned Ok
//! must read back byte-identical.

use std::time::{Duration, Instant};

use finkfs_tests::load::{verify, WriteLoad};
use finkfs_tests::{LocalCluster, Settings};

/// Concurrent writers.
const WRITERS: u64 = 4;
/// Times every node is killed and restarted.
const CRASHES: u32 = 3;
/// Puts acknowledged before each crash.
const ACKS_BETWEEN_CRASHES: u64 = 50;
/// Puts sent after the last restart that must be acknowledged.
const ACKS_AFTER_RESTART: usize = 20;
/// Longest wait for any phase of the test.
const PHASE_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acked_object_survives_repeated_sigkill_of_all_nodes_under_load() {
    let mut cluster = LocalCluster::start(Settings::default()).await;
    let client = cluster.client().await;
    let load = WriteLoad::new("crash", 3);

    let scenario = async {
        let outcome = async {
            let mut crashes = Vec::new();
            for _ in 0..CRASHES {
                let target = load.acked() + ACKS_BETWEEN_CRASHES;
                load.wait_for_acks(target, PHASE_TIMEOUT).await?;
                let ids = cluster.ids();
                cluster.kill_many(&ids);
                let acked_at_crash = load.acked();
                for id in &ids {
                    cluster.restart(*id).await;
                }
                let leader = cluster.wait_for_leader(PHASE_TIMEOUT).await;
                crashes.push((acked_at_crash, leader));
            }
            load.wait_for_acks_after(Instant::now(), ACKS_AFTER_RESTART, PHASE_TIMEOUT)
                .await?;
            Ok::<_, String>(crashes)
        }
        .await;
        load.stop();
        outcome
    };
    let ((), outcome) = tokio::join!(load.run(&client, WRITERS), scenario);
    let crashes = outcome.unwrap_or_else(|e| panic!("{e}"));

    let report = load.report();
    for (acked, leader) in &crashes {
        println!(
            "all nodes killed after {acked} acknowledged puts; node {leader} led after the restart"
        );
    }
    println!(
        "{} puts acknowledged, {} failed",
        report.acked(),
        report.failed()
    );
    let verified = verify(&client, &report).await;
    assert_eq!(verified.acked, report.acked());
    let (last_crash_acks, _) = crashes[crashes.len() - 1];
    assert!(report.acked() as u64 >= last_crash_acks + ACKS_AFTER_RESTART as u64);
}
