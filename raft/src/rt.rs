//! The runtime seam: every task, blocking call, I/O latency and random draw
//! of finkfs's Raft nodes goes through here, so that a deterministic
//! simulator can take them over.
//!
//! Outside the simulator (no hook installed on this thread) everything is
//! plain tokio: [`spawn`] is `tokio::spawn`, [`blocking`] is
//! `spawn_blocking`, [`io_pause`] returns at once and [`thread_rng`] is
//! seeded by the OS.
//!
//! Under the simulator's hook ([`install_hook`]), which lives on the one
//! thread of a `current_thread` runtime:
//! * a task spawned from inside a node ([`in_node`]) inherits the node's tag
//!   and joins the node's group, so [`stop_node`] can abort every task the
//!   node started, grandchildren included, as a machine stopping would;
//! * [`blocking`] runs its closure inline after 0–2 seeded yields: no
//!   thread races the simulation;
//! * [`io_pause`] sleeps a seeded virtual latency;
//! * [`thread_rng`] (and so openraft's election timeouts) draws from a
//!   stream of the current node, seeded from the world seed, the node and
//!   its incarnation: one node's extra draw does not reshuffle the others.
//!
//! openraft's watch channels are [`FinkWatch`], not tokio's, in and out of
//! the simulator: tokio's wakes its waiters in an order drawn from an
//! OS-seeded RNG.

mod sabotage;
mod watch;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use openraft::{AsyncRuntime, OptionalSend};
use openraft_rt_tokio::TokioRuntime;
use rand_rt::rngs::SmallRng;
use rand_rt::{Rng, RngExt, SeedableRng};
use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinHandle};

pub use sabotage::{sabotaged, Sabotage};
pub use watch::{FinkWatch, FinkWatchReceiver, FinkWatchSender};

/// The openraft runtime of finkfs: tokio, except that spawns, blocking
/// calls and the random number generator go through this module.
#[derive(Debug)]
pub struct FinkRuntime {
    tokio: TokioRuntime,
}

impl AsyncRuntime for FinkRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = JoinHandle<T>;
    type Sleep = <TokioRuntime as AsyncRuntime>::Sleep;
    type Instant = <TokioRuntime as AsyncRuntime>::Instant;
    type TimeoutError = <TokioRuntime as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> =
        <TokioRuntime as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = SmallRng;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        TokioRuntime::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        TokioRuntime::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        join_error.is_panic()
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        thread_rng()
    }

    type Mpsc = <TokioRuntime as AsyncRuntime>::Mpsc;
    type Watch = watch::FinkWatch;
    type Oneshot = <TokioRuntime as AsyncRuntime>::Oneshot;
    type Mutex<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::Mutex<T>;

    fn new(threads: usize) -> Self {
        FinkRuntime {
            tokio: TokioRuntime::new(threads),
        }
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.tokio.block_on(future)
    }

    async fn spawn_blocking<F, T>(f: F) -> Result<T, io::Error>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        blocking(f).await.map_err(io::Error::other)
    }
}

/// One incarnation of one simulated node: a power cut ends an incarnation,
/// a restart begins the next one with fresh tasks and a fresh RNG stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeTag {
    pub node: u64,
    pub incarnation: u64,
}

impl fmt::Display for NodeTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {} incarnation {}", self.node, self.incarnation)
    }
}

/// Why work handed to [`blocking`] produced no result.
#[derive(Debug, thiserror::Error)]
#[error("blocking task failed: {reason}")]
pub struct BlockingError {
    reason: String,
}

/// What kind of I/O [`io_pause`] stands for; each has its own latency range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IoKind {
    /// A journal fsync.
    JournalSync,
}

impl IoKind {
    /// The longest simulated latency of this kind.
    fn latency_max(self) -> Duration {
        match self {
            IoKind::JournalSync => Duration::from_millis(5),
        }
    }
}

/// Most times [`blocking`] yields before running its closure inline.
const BLOCKING_YIELDS_MAX: u32 = 2;

tokio::task_local! {
    static NODE: NodeTag;
}

thread_local! {
    static HOOK: std::cell::RefCell<Option<Arc<Hook>>> = const { std::cell::RefCell::new(None) };
}

/// The simulator's state. Only the simulator's thread touches it; the mutex
/// is there because spawned futures must be `Send`.
struct Hook {
    seed: u64,
    /// The deliberate bug switched on in this world, if any.
    #[cfg_attr(not(feature = "sabotage"), allow(dead_code))]
    sabotage: Option<Sabotage>,
    state: Mutex<HookState>,
}

struct HookState {
    /// Draws made outside every node (the simulator's own tasks).
    world: SmallRng,
    nodes: BTreeMap<NodeTag, NodeState>,
}

struct NodeState {
    rng: SmallRng,
    /// Live tasks of the node; the handle is None until the spawn returned.
    tasks: BTreeMap<u64, Option<AbortHandle>>,
    next_task: u64,
    /// Set by [`stop_node`]: a task spawned later is aborted at once.
    stopped: bool,
    /// Woken when the last task of the group is gone.
    drained: Arc<Notify>,
}

impl Hook {
    fn lock(&self) -> MutexGuard<'_, HookState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl HookState {
    fn node(&mut self, seed: u64, tag: NodeTag) -> &mut NodeState {
        self.nodes.entry(tag).or_insert_with(|| NodeState {
            rng: SmallRng::seed_from_u64(stream_seed(seed, tag)),
            tasks: BTreeMap::new(),
            next_task: 0,
            stopped: false,
            drained: Arc::new(Notify::new()),
        })
    }

    /// The RNG stream of `tag`, or the world's outside every node.
    fn rng(&mut self, seed: u64, tag: Option<NodeTag>) -> &mut SmallRng {
        match tag {
            Some(tag) => &mut self.node(seed, tag).rng,
            None => &mut self.world,
        }
    }
}

/// The seed of a node's stream: the world seed mixed with the tag, so that
/// streams of neighbouring nodes or incarnations are unrelated.
fn stream_seed(seed: u64, tag: NodeTag) -> u64 {
    let mixed = splitmix(seed ^ splitmix(tag.node.wrapping_add(1)));
    splitmix(mixed ^ splitmix(tag.incarnation.wrapping_add(0x9e37)))
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Removes its task from the node's group when the task's future is
/// dropped: on completion, on abort, or with the runtime.
struct Member {
    hook: Arc<Hook>,
    tag: NodeTag,
    id: u64,
}

impl Drop for Member {
    fn drop(&mut self) {
        let mut state = self.hook.lock();
        let Some(node) = state.nodes.get_mut(&self.tag) else {
            return;
        };
        node.tasks.remove(&self.id);
        if node.tasks.is_empty() {
            node.drained.notify_waiters();
        }
    }
}

/// Installs the simulator's hook on this thread until the guard is
/// dropped. Panics if one is installed already: two worlds on one thread
/// would share streams and groups.
pub fn install_hook(seed: u64) -> HookGuard {
    install_hook_with(seed, None)
}

/// [`install_hook`], with a deliberate bug switched on for this world
/// (it takes effect only where the crate feature `sabotage` is enabled).
pub fn install_hook_with(seed: u64, sabotage: Option<Sabotage>) -> HookGuard {
    HOOK.with(|hook| {
        let mut hook = hook.borrow_mut();
        assert!(hook.is_none(), "a simulator hook is already installed");
        *hook = Some(Arc::new(Hook {
            seed,
            sabotage,
            state: Mutex::new(HookState {
                world: SmallRng::seed_from_u64(splitmix(seed)),
                nodes: BTreeMap::new(),
            }),
        }));
    });
    HookGuard { _private: () }
}

/// Keeps the simulator's hook installed; dropping it removes the hook.
#[must_use = "the hook is removed when the guard is dropped"]
pub struct HookGuard {
    _private: (),
}

impl Drop for HookGuard {
    fn drop(&mut self) {
        HOOK.with(|hook| hook.borrow_mut().take());
    }
}

fn hook() -> Option<Arc<Hook>> {
    HOOK.with(|hook| hook.borrow().clone())
}

/// Whether this thread runs a simulated world (the hook is installed):
/// code that would start a thread of its own must run as a task instead.
pub fn simulated() -> bool {
    hook().is_some()
}

/// The node the current task runs for, if any.
pub fn current_node() -> Option<NodeTag> {
    NODE.try_with(|tag| *tag).ok()
}

/// Runs `future` as part of node `tag`: the tasks it spawns join the
/// node's group, its random draws come from the node's stream.
pub async fn in_node<F: Future>(tag: NodeTag, future: F) -> F::Output {
    NODE.scope(tag, future).await
}

/// [`in_node`] for synchronous code.
pub fn in_node_sync<R>(tag: NodeTag, f: impl FnOnce() -> R) -> R {
    NODE.sync_scope(tag, f)
}

/// Spawns a task. Under the hook, a task spawned inside a node stays in the
/// node (and its group); otherwise this is `tokio::spawn`.
#[allow(clippy::disallowed_methods)] // The one place tasks are started.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (Some(hook), Some(tag)) = (hook(), current_node()) else {
        return tokio::spawn(future);
    };
    let (id, stopped) = {
        let mut state = hook.lock();
        let node = state.node(hook.seed, tag);
        let id = node.next_task;
        node.next_task += 1;
        node.tasks.insert(id, None);
        (id, node.stopped)
    };
    let member = Member {
        hook: Arc::clone(&hook),
        tag,
        id,
    };
    let handle = tokio::spawn(NODE.scope(tag, async move {
        let _member = member;
        future.await
    }));
    if stopped {
        handle.abort();
        return handle;
    }
    let mut state = hook.lock();
    if let Some(slot) = state.node(hook.seed, tag).tasks.get_mut(&id) {
        *slot = Some(handle.abort_handle());
    }
    handle
}

/// Spawns a task from code that may run off the runtime's threads (a
/// blocking read that starts a repair): inside a simulated node, as
/// [`spawn`] (the task stays in the node's group); otherwise on `handle`.
#[allow(clippy::disallowed_methods)] // Falls back to the caller's runtime.
pub fn spawn_on<F>(handle: &tokio::runtime::Handle, future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if hook().is_some() && current_node().is_some() {
        spawn(future)
    } else {
        handle.spawn(future)
    }
}

/// Aborts every task of node `tag` (and every task they spawned), and
/// returns once each of their futures has been dropped. Tasks spawned for
/// `tag` afterwards are aborted at once. Without the hook, does nothing.
pub async fn stop_node(tag: NodeTag) {
    let Some(hook) = hook() else {
        return;
    };
    let (handles, drained) = {
        let mut state = hook.lock();
        let node = state.node(hook.seed, tag);
        node.stopped = true;
        let handles: Vec<AbortHandle> = node.tasks.values().flatten().cloned().collect();
        (handles, Arc::clone(&node.drained))
    };
    for handle in &handles {
        handle.abort();
    }
    loop {
        let notified = drained.notified();
        if node_tasks(tag) == 0 {
            return;
        }
        notified.await;
    }
}

/// How many tasks of node `tag` are alive (0 without the hook).
pub fn node_tasks(tag: NodeTag) -> usize {
    hook().map_or(0, |hook| {
        hook.lock()
            .nodes
            .get(&tag)
            .map_or(0, |node| node.tasks.len())
    })
}

/// Runs blocking work (seam I/O, hashing) without stalling the async
/// threads: on tokio's blocking pool, or inline under the hook after 0–2
/// seeded yields, so inline I/O still meets varied interleavings. A panic
/// in `f` becomes an error in both cases.
#[allow(clippy::disallowed_methods)] // The one place blocking work is started.
pub async fn blocking<T, F>(f: F) -> Result<T, BlockingError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let Some(hook) = hook() else {
        return tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| BlockingError {
                reason: e.to_string(),
            });
    };
    let yields = {
        let mut state = hook.lock();
        let rng = state.rng(hook.seed, current_node());
        rng.random_range(0..=BLOCKING_YIELDS_MAX)
    };
    drop(hook);
    for _ in 0..yields {
        tokio::task::yield_now().await;
    }
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|panic| BlockingError {
        reason: panic_reason(panic.as_ref()),
    })
}

fn panic_reason(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(message), _) => format!("panicked: {message}"),
        (None, Some(message)) => format!("panicked: {message}"),
        (None, None) => "panicked".to_string(),
    }
}

/// Stands for the latency of one I/O of `kind`: under the hook, a seeded
/// sleep in virtual time (so other tasks run meanwhile, and a power cut can
/// land in the middle); without it, nothing.
pub async fn io_pause(kind: IoKind) {
    let Some(hook) = hook() else {
        return;
    };
    let pause = {
        let mut state = hook.lock();
        let rng = state.rng(hook.seed, current_node());
        let max_us = kind.latency_max().as_micros() as u64;
        Duration::from_micros(rng.random_range(0..=max_us))
    };
    drop(hook);
    tokio::time::sleep(pause).await;
}

/// A random number generator for the current task: seeded from the current
/// node's stream under the hook, else from the OS.
pub fn thread_rng() -> SmallRng {
    match hook() {
        Some(hook) => {
            let mut state = hook.lock();
            let seed = state.rng(hook.seed, current_node()).next_u64();
            SmallRng::seed_from_u64(seed)
        }
        None => SmallRng::from_rng(&mut rand_rt::rng()),
    }
}
