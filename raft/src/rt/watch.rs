//! The watch channel of [`FinkRuntime`](super::FinkRuntime): tokio's
//! semantics, with waiters woken in a fixed order.
//!
//! tokio's `watch::Receiver::changed` parks each waiter on one of eight
//! `Notify`s chosen by tokio's thread-local RNG, and a send wakes the eight
//! in turn. That RNG is seeded by the OS unless the runtime is built with
//! `rng_seed` (only under `--cfg tokio_unstable`), so when several tasks
//! wait on one channel — a leader's replication streams all wait on the
//! same progress and heartbeat channels — the order in which they run after
//! a send, and so the order of their messages, changed from run to run of
//! the same seed. Here every waiter parks on one `Notify`, which wakes in
//! an order fixed by the order the waiters arrived.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use openraft::async_runtime::watch::{RecvError, SendError, Watch, WatchReceiver, WatchSender};
use openraft::{OptionalSend, OptionalSync};
use tokio::sync::Notify;

/// The watch channel family.
#[derive(Debug)]
pub struct FinkWatch;

/// State shared by every sender and receiver of one channel.
struct Shared<T> {
    value: RwLock<T>,
    /// Bumped on every change, while the value's write lock is held.
    version: AtomicU64,
    senders: AtomicUsize,
    receivers: AtomicUsize,
    /// Woken on every change and when the last sender goes.
    changed: Notify,
}

impl<T> Shared<T> {
    fn read(&self) -> RwLockReadGuard<'_, T> {
        self.value.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Changes the value if `modify` says it did, then wakes the waiters.
    fn modify(&self, modify: impl FnOnce(&mut T) -> bool) -> bool {
        {
            let mut value = self.value.write().unwrap_or_else(PoisonError::into_inner);
            if !modify(&mut value) {
                return false;
            }
            self.version.fetch_add(1, Ordering::AcqRel);
        }
        self.changed.notify_waiters();
        true
    }
}

/// The sending half; clones share the channel, which closes when the last
/// one is dropped.
pub struct FinkWatchSender<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving half; remembers the last version it has seen.
pub struct FinkWatchReceiver<T> {
    shared: Arc<Shared<T>>,
    seen: u64,
}

impl<T> FinkWatchReceiver<T> {
    fn new(shared: Arc<Shared<T>>) -> Self {
        shared.receivers.fetch_add(1, Ordering::AcqRel);
        let seen = shared.version();
        FinkWatchReceiver { shared, seen }
    }
}

impl<T> Clone for FinkWatchSender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::AcqRel);
        FinkWatchSender {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> Drop for FinkWatchSender<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.changed.notify_waiters();
        }
    }
}

impl<T> Clone for FinkWatchReceiver<T> {
    fn clone(&self) -> Self {
        self.shared.receivers.fetch_add(1, Ordering::AcqRel);
        FinkWatchReceiver {
            shared: Arc::clone(&self.shared),
            seen: self.seen,
        }
    }
}

impl<T> Drop for FinkWatchReceiver<T> {
    fn drop(&mut self) {
        self.shared.receivers.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Watch for FinkWatch {
    type Sender<T: OptionalSend + OptionalSync> = FinkWatchSender<T>;
    type Receiver<T: OptionalSend + OptionalSync> = FinkWatchReceiver<T>;
    type Ref<'a, T: OptionalSend + 'a> = RwLockReadGuard<'a, T>;

    fn channel<T: OptionalSend + OptionalSync>(init: T) -> (Self::Sender<T>, Self::Receiver<T>) {
        let shared = Arc::new(Shared {
            value: RwLock::new(init),
            version: AtomicU64::new(0),
            senders: AtomicUsize::new(1),
            receivers: AtomicUsize::new(0),
            changed: Notify::new(),
        });
        let receiver = FinkWatchReceiver::new(Arc::clone(&shared));
        (FinkWatchSender { shared }, receiver)
    }
}

impl<T: OptionalSend + OptionalSync> WatchSender<FinkWatch, T> for FinkWatchSender<T> {
    /// Fails, leaving the value as it was, when no receiver is left (as
    /// tokio's does).
    fn send(&self, value: T) -> Result<(), SendError<T>> {
        if self.shared.receivers.load(Ordering::Acquire) == 0 {
            return Err(SendError(value));
        }
        self.shared.modify(|current| {
            *current = value;
            true
        });
        Ok(())
    }

    fn send_if_modified<F>(&self, modify: F) -> bool
    where
        F: FnOnce(&mut T) -> bool,
    {
        self.shared.modify(modify)
    }

    fn borrow_watched(&self) -> RwLockReadGuard<'_, T> {
        self.shared.read()
    }

    fn subscribe(&self) -> FinkWatchReceiver<T> {
        FinkWatchReceiver::new(Arc::clone(&self.shared))
    }
}

impl<T: OptionalSend + OptionalSync> WatchReceiver<FinkWatch, T> for FinkWatchReceiver<T> {
    /// Returns once a version this receiver has not seen exists (even if
    /// the senders are gone since), or with an error once the senders are
    /// gone without one.
    async fn changed(&mut self) -> Result<(), RecvError> {
        loop {
            // Registered before the check, so a send between the check and
            // the wait still wakes this waiter.
            let notified = self.shared.changed.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            let version = self.shared.version();
            if version != self.seen {
                self.seen = version;
                return Ok(());
            }
            if self.shared.senders.load(Ordering::Acquire) == 0 {
                return Err(RecvError(()));
            }
            notified.await;
        }
    }

    fn borrow_watched(&self) -> RwLockReadGuard<'_, T> {
        self.shared.read()
    }

    fn borrow_and_update(&mut self) -> RwLockReadGuard<'_, T> {
        let value = self.shared.read();
        // Read under the value's lock: a writer bumps the version while it
        // holds the write lock, so this is the version of `value`.
        self.seen = self.shared.version();
        value
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// The order in which `waiters` tasks, all waiting on one channel, run
    /// after one send, in a fresh runtime (so a fresh tokio RNG seed).
    fn wake_order(waiters: usize) -> Vec<usize> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
        runtime.block_on(async {
            let (tx, rx) = FinkWatch::channel(0u64);
            let woken = Arc::new(Mutex::new(Vec::new()));
            let mut tasks = Vec::new();
            for i in 0..waiters {
                let (mut rx, woken) = (rx.clone(), Arc::clone(&woken));
                tasks.push(crate::rt::spawn(async move {
                    rx.changed().await.expect("the sender is alive");
                    woken.lock().expect("not poisoned").push(i);
                }));
            }
            // Every waiter parks before the send.
            tokio::task::yield_now().await;
            tx.send(1).expect("receivers are alive");
            for task in tasks {
                task.await.expect("the waiter finishes");
            }
            let order = woken.lock().expect("not poisoned").clone();
            order
        })
    }

    #[test]
    fn waiters_wake_in_the_same_order_in_every_runtime() {
        let first = wake_order(24);
        assert_eq!(first.len(), 24);
        for _ in 0..20 {
            assert_eq!(wake_order(24), first);
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn changed_sees_each_new_version_once_then_the_close() {
        let (tx, mut rx) = FinkWatch::channel(1u64);
        let mut late = tx.subscribe();
        tx.send(2).expect("receivers are alive");
        rx.changed().await.expect("a new version");
        assert_eq!(*rx.borrow_and_update(), 2);
        assert!(!tx.send_if_modified(|_| false), "nothing modified");
        let tx2 = tx.clone();
        drop(tx);
        assert!(tx2.send_if_greater(3));
        drop(tx2);
        // The version sent before the close is still seen, then the close.
        rx.changed().await.expect("version 3 is unseen");
        assert_eq!(*rx.borrow_watched(), 3);
        assert!(rx.changed().await.is_err(), "every sender is gone");
        late.changed()
            .await
            .expect("the subscriber has not seen 2 or 3");
        assert!(late.changed().await.is_err());
    }

    #[test]
    fn send_without_receivers_fails_and_keeps_the_value() {
        let (tx, rx) = FinkWatch::channel(1u64);
        drop(rx);
        assert_eq!(tx.send(5), Err(SendError(5)));
        assert_eq!(*tx.borrow_watched(), 1);
        let rx = tx.subscribe();
        tx.send(6).expect("a receiver again");
        assert_eq!(*rx.borrow_watched(), 6);
    }
}
