//! Packs small commands from concurrent calls into shared log entries, so
//! a stream of alerts does not pay one Raft round trip (and one fsync on
//! every replica) per alert.
//!
//! Calls queue their command; one task takes the first waiting command,
//! waits for a free proposal slot (at most [`BATCHES_IN_FLIGHT_MAX`] in
//! flight), then takes every command queued meanwhile, up to
//! [`BATCH_COMMANDS_MAX`] and [`BATCH_BYTES_MAX`], and proposes them as one
//! entry. While proposals are in flight the queue fills, so the batches grow
//! with the load; an idle leader proposes a lone command at once.

use std::sync::Arc;

use finkfs_raft::types::TypeConfig;
use openraft::storage::RaftStateMachine;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tonic::Status;

use super::server::Proposer;
use crate::command::{Command, Outcome, ENTRY_BYTES_MAX};

/// Most commands in one batch entry.
pub const BATCH_COMMANDS_MAX: usize = 1024;
/// Most bytes of the commands of one batch entry (each counted whole; the
/// batch's own framing fits in the margin to the entry ceiling). A single
/// larger command is proposed alone.
pub const BATCH_BYTES_MAX: usize = ENTRY_BYTES_MAX - 64;
/// Batch proposals in flight at once.
pub const BATCHES_IN_FLIGHT_MAX: usize = 8;
/// Commands waiting for a batch; callers wait (asynchronously) beyond it.
pub const BATCH_QUEUE_DEPTH_MAX: usize = 4 * BATCH_COMMANDS_MAX;

/// What a batched command did.
#[derive(Debug)]
pub(crate) struct Applied {
    /// Its outcome.
    pub outcome: Outcome,
    /// Index of the entry that carried it.
    pub log_index: u64,
}

struct Queued {
    command: Command,
    bytes: usize,
    reply: oneshot::Sender<Result<Applied, Status>>,
}

/// The queue of the batching task. Dropping every handle ends the task.
#[derive(Clone)]
pub(crate) struct Batcher {
    tx: mpsc::Sender<Queued>,
}

impl Batcher {
    /// Starts the batching task, proposing through `proposer`.
    pub(crate) fn start<SM>(
        proposer: Proposer<SM>,
        counters: Arc<super::server::ApiCounters>,
    ) -> Batcher
    where
        SM: RaftStateMachine<TypeConfig>,
    {
        let (tx, rx) = mpsc::channel(BATCH_QUEUE_DEPTH_MAX);
        finkfs_raft::rt::spawn(run(proposer, rx, counters));
        Batcher { tx }
    }

    /// Proposes `op` in the next batch and waits for its outcome.
    pub(crate) async fn submit(&self, command: Command) -> Result<Applied, Status> {
        let bytes = command.encoded_len();
        let (reply, outcome) = oneshot::channel();
        self.tx
            .send(Queued {
                command,
                bytes,
                reply,
            })
            .await
            .map_err(|_| Status::unavailable("the node is shutting down"))?;
        outcome
            .await
            .map_err(|_| Status::unavailable("the node is shutting down"))?
    }
}

async fn run<SM>(
    proposer: Proposer<SM>,
    mut rx: mpsc::Receiver<Queued>,
    counters: Arc<super::server::ApiCounters>,
) where
    SM: RaftStateMachine<TypeConfig>,
{
    let slots = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT_MAX));
    let mut carry: Option<Queued> = None;
    loop {
        let first = match carry.take() {
            Some(first) => first,
            None => match rx.recv().await {
                Some(first) => first,
                None => return,
            },
        };
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while batch.len() < BATCH_COMMANDS_MAX {
            let Ok(next) = rx.try_recv() else { break };
            if bytes + next.bytes > BATCH_BYTES_MAX {
                carry = Some(next);
                break;
            }
            bytes += next.bytes;
            batch.push(next);
        }
        assert!(batch.len() <= BATCH_COMMANDS_MAX);
        counters.batch(batch.len() as u64);
        finkfs_raft::rt::spawn(propose(proposer.clone(), batch, permit));
    }
}

/// Proposes one batch and hands every command its outcome.
async fn propose<SM>(proposer: Proposer<SM>, batch: Vec<Queued>, _slot: OwnedSemaphorePermit)
where
    SM: RaftStateMachine<TypeConfig>,
{
    let (commands, replies): (Vec<Command>, Vec<_>) =
        batch.into_iter().map(|q| (q.command, q.reply)).unzip();
    match proposer.propose(commands).await {
        Ok((outcomes, log_index)) => {
            for (outcome, reply) in outcomes.into_iter().zip(replies) {
                // A caller that went away no longer needs its outcome.
                let _ = reply.send(Ok(Applied { outcome, log_index }));
            }
        }
        Err(status) => {
            for reply in replies {
                let _ = reply.send(Err(status.clone()));
            }
        }
    }
}
