//! Guards against the runtime seam leaking nondeterminism or tasks: random
//! draws that do not replay from the seed, tasks that survive their node's
//! power cut, and a hook that changes anything when it is not installed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::ThreadId;
use std::time::Duration;

use finkfs_raft::rt::{self, FinkRuntime, IoKind, NodeTag};
use openraft::AsyncRuntime;
use rand_rt::Rng;
use tokio::sync::oneshot;

const NODE_A: NodeTag = NodeTag {
    node: 1,
    incarnation: 0,
};
const NODE_B: NodeTag = NodeTag {
    node: 2,
    incarnation: 0,
};

/// Draws through openraft's entry point, the one behind its election
/// timeouts and tick phase.
fn draws(tag: NodeTag, count: usize) -> Vec<u64> {
    rt::in_node_sync(tag, || {
        (0..count)
            .map(|_| FinkRuntime::thread_rng().next_u64())
            .collect()
    })
}

/// Node A's draws in a world of `seed`, with node B drawing `b_draws`
/// times in between.
fn world_draws(seed: u64, b_draws: usize) -> Vec<u64> {
    let _hook = rt::install_hook(seed);
    let mut seen = draws(NODE_A, 3);
    draws(NODE_B, b_draws);
    seen.extend(draws(NODE_A, 3));
    seen
}

#[test]
fn seeded_thread_rng_repeats_and_streams_are_per_node() {
    let first = world_draws(812, 1);
    assert_eq!(first, world_draws(812, 1), "same seed, same draws");
    assert_ne!(first, world_draws(813, 1), "another seed, other draws");
    assert_eq!(
        first,
        world_draws(812, 5),
        "another node's extra draws must not reshuffle this node's"
    );
    let _hook = rt::install_hook(812);
    let next_incarnation = NodeTag {
        incarnation: 1,
        ..NODE_A
    };
    assert_ne!(draws(NODE_A, 3), draws(next_incarnation, 3));
}

fn on_fire() -> u8 {
    panic!("disk on fire")
}

/// Sets its flag when dropped: tells that a task's future is gone.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Spawns a child that spawns a grandchild; the grandchild reports its node
/// and then waits forever, holding a drop flag.
async fn spawn_family(dropped: Arc<AtomicBool>) -> Option<NodeTag> {
    let (started, seen) = oneshot::channel();
    let child = rt::spawn(async move {
        rt::spawn(async move {
            let _flag = DropFlag(dropped);
            let _ = started.send(rt::current_node());
            std::future::pending::<()>().await;
        });
        // The child itself ends at once: its grandchild must still be
        // tracked by the node, not by its parent.
    });
    child.await.expect("the child runs");
    seen.await.expect("the grandchild starts")
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn stopping_a_node_aborts_its_grandchildren_and_no_other_node() {
    let _hook = rt::install_hook(7);
    let a_dropped = Arc::new(AtomicBool::new(false));
    let b_dropped = Arc::new(AtomicBool::new(false));
    let a_seen = rt::in_node(NODE_A, spawn_family(Arc::clone(&a_dropped))).await;
    let b_seen = rt::in_node(NODE_B, spawn_family(Arc::clone(&b_dropped))).await;
    assert_eq!(a_seen, Some(NODE_A), "a grandchild inherits its node");
    assert_eq!(b_seen, Some(NODE_B));
    assert_eq!(rt::node_tasks(NODE_A), 1, "only the grandchild is left");

    rt::stop_node(NODE_A).await;
    assert!(a_dropped.load(Ordering::SeqCst), "grandchild still alive");
    assert_eq!(rt::node_tasks(NODE_A), 0);
    assert!(
        !b_dropped.load(Ordering::SeqCst),
        "another node was stopped"
    );
    assert_eq!(rt::node_tasks(NODE_B), 1);

    let late = rt::in_node_sync(NODE_A, || rt::spawn(async { 1 }));
    let joined = late.await;
    assert!(
        joined.is_err_and(|e| e.is_cancelled()),
        "a task spawned for a stopped node must never run"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn blocking_under_the_hook_runs_inline_and_io_pause_replays() {
    async fn pauses(seed: u64) -> Vec<Duration> {
        let _hook = rt::install_hook(seed);
        let mut seen = Vec::new();
        for _ in 0..8 {
            let started = tokio::time::Instant::now();
            rt::in_node(NODE_A, rt::io_pause(IoKind::JournalSync)).await;
            seen.push(started.elapsed());
        }
        seen
    }
    let first = pauses(21).await;
    assert_eq!(first, pauses(21).await, "same seed, same latencies");
    assert!(first.iter().all(|pause| *pause <= Duration::from_millis(5)));
    assert!(first.iter().any(|pause| !pause.is_zero()), "{first:?}");

    let _hook = rt::install_hook(21);
    let here = std::thread::current().id();
    let ran_on: ThreadId = rt::in_node(NODE_A, rt::blocking(|| std::thread::current().id()))
        .await
        .expect("inline work succeeds");
    assert_eq!(ran_on, here, "under the hook blocking work runs inline");
    let panicked = rt::blocking(on_fire).await;
    let error = panicked.expect_err("a panic becomes an error");
    assert!(error.to_string().contains("disk on fire"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_hook_rt_is_plain_tokio() {
    let inherited = rt::in_node(NODE_A, async {
        rt::spawn(async { rt::current_node() }).await.unwrap()
    })
    .await;
    assert_eq!(inherited, None, "a plain tokio task carries no node tag");
    assert_eq!(rt::node_tasks(NODE_A), 0, "no groups without the hook");

    let here = std::thread::current().id();
    let ran_on = rt::blocking(|| std::thread::current().id()).await.unwrap();
    assert_ne!(ran_on, here, "blocking work goes to tokio's pool");
    let panicked = rt::blocking(on_fire).await;
    assert!(panicked.is_err(), "a panic on the pool becomes an error");

    let blocking_via_openraft = FinkRuntime::spawn_blocking(|| 42).await.unwrap();
    assert_eq!(blocking_via_openraft, 42);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn without_the_hook_io_pause_takes_no_time() {
    let started = tokio::time::Instant::now();
    rt::io_pause(IoKind::JournalSync).await;
    assert_eq!(started.elapsed(), Duration::ZERO);
    // Stopping is a no-op: nothing is grouped.
    let task = rt::in_node_sync(NODE_A, || rt::spawn(std::future::pending::<()>()));
    rt::stop_node(NODE_A).await;
    assert!(!task.is_finished());
    task.abort();
}
