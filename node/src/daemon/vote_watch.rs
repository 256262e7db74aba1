//! Follows the log store's vote gate while the node runs: when its
//! blockers change (a vouch floor reached, a wiped node caught up), the
//! node starts or stops standing for election and Status shows the new
//! list. The peer server asks the gate itself at every Vote and PreVote,
//! so a refusal never waits for this watch.

use std::sync::Arc;
use std::time::Duration;

use finkfs_raft::log_store::VoteGate;
use finkfs_raft::types::Raft;
use openraft::storage::RaftStateMachine;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use finkfs_raft::types::TypeConfig;

/// How often the gate is asked again.
const WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// The gate's blockers as Status shows them.
pub fn shown(gate: &VoteGate) -> Vec<String> {
    gate.blockers().iter().map(|b| format!("{b:?}")).collect()
}

/// Re-asks `gate` until `stopped`; publishes changes on `shown_to` and
/// turns elections on or off on `raft`.
pub fn spawn<SM>(
    id: u64,
    gate: Arc<VoteGate>,
    raft: Raft<SM>,
    shown_to: watch::Sender<Vec<String>>,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()>
where
    SM: RaftStateMachine<TypeConfig>,
{
    finkfs_raft::rt::spawn(async move {
        loop {
            let now = shown(&gate);
            if *shown_to.borrow() != now {
                if now.is_empty() {
                    tracing::info!(
                        id,
                        "every vote blocker lifted: the node votes and stands for election again"
                    );
                } else {
                    tracing::warn!(id, blockers = ?now, "this node must not vote");
                }
                raft.runtime_config().elect(now.is_empty());
                shown_to.send_replace(now);
            }
            // Biased: tokio's unbiased order is drawn from an OS-seeded
            // RNG, and a simulated run must replay.
            tokio::select! {
                biased;
                _ = tokio::time::sleep(WATCH_INTERVAL) => {}
                _ = stopped.changed() => return,
            }
        }
    })
}
