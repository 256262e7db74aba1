//! The simulated clients: each operation runs as a task in the group of the
//! node it was sent to, so a power cut of that node ends it (the client
//! then never learns the outcome: the operation is in doubt). Results come
//! back on a oneshot channel the world polls after every step.

use std::sync::Arc;

use bytes::Bytes;
use finkfs_node::api::proto::client_server::Client;
use finkfs_node::api::proto::{get_reply, GetRequest};
use finkfs_node::api::ClientService;
use finkfs_node::state_machine::StateMachine;
use finkfs_raft::rt::{self, NodeTag};
use futures_util::StreamExt;
use tokio::sync::oneshot;
use tonic::{Code, Request};

use crate::model::{Observed, Outcome};
use crate::payload;

/// What a client asked.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Put {
        path: String,
        op_id: u64,
        len: usize,
    },
    Delete {
        path: String,
    },
    Get {
        path: String,
    },
}

/// How an operation ended, as its client saw it.
#[derive(Debug)]
pub(crate) enum Reply {
    Write(Outcome),
    Read(Observed),
}

/// Starts `op` against `service` inside node `tag`'s group.
pub(crate) fn start(
    tag: NodeTag,
    service: Arc<ClientService<StateMachine>>,
    raft: finkfs_raft::types::Raft<StateMachine>,
    op: Op,
) -> oneshot::Receiver<Reply> {
    let (tx, rx) = oneshot::channel();
    rt::in_node_sync(tag, || {
        rt::spawn(async move {
            let reply = run(&service, &raft, op).await;
            let _ = tx.send(reply);
        })
    });
    rx
}

async fn run(
    service: &ClientService<StateMachine>,
    raft: &finkfs_raft::types::Raft<StateMachine>,
    op: Op,
) -> Reply {
    match op {
        Op::Put { path, op_id, len } => {
            // Asked in the same poll as the call's own check, so a refusal
            // here is exactly the one the call would give: nothing proposed.
            if raft.as_leader().is_err() {
                return Reply::Write(Outcome::Rejected);
            }
            let data = Bytes::from(payload::object(op_id, len));
            Reply::Write(match service.put_bytes(path, data).await {
                Ok(reply) => Outcome::Acknowledged(reply.log_index),
                Err(status) if status.code() == Code::InvalidArgument => Outcome::Rejected,
                Err(_) => Outcome::InDoubt,
            })
        }
        Op::Delete { path } => {
            if raft.as_leader().is_err() {
                return Reply::Write(Outcome::Rejected);
            }
            let request = Request::new(finkfs_node::api::proto::DeleteRequest { path });
            Reply::Write(match service.delete(request).await {
                Ok(reply) => Outcome::Acknowledged(reply.into_inner().log_index),
                Err(status) if status.code() == Code::InvalidArgument => Outcome::Rejected,
                Err(_) => Outcome::InDoubt,
            })
        }
        Op::Get { path } => Reply::Read(get(service, path).await),
    }
}

/// Reads a whole object through the client service (read barrier and all)
/// and says what it holds.
async fn get(service: &ClientService<StateMachine>, path: String) -> Observed {
    let request = Request::new(GetRequest { path, range: None });
    let mut stream = match service.get(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => return refusal(&status),
    };
    let mut bytes = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(reply) => {
                if let Some(get_reply::Part::Data(chunk)) = reply.part {
                    bytes.extend_from_slice(&chunk);
                }
            }
            Err(status) => return refusal(&status),
        }
    }
    observe(&bytes)
}

/// What bytes read back are.
pub(crate) fn observe(bytes: &[u8]) -> Observed {
    match payload::parse(bytes) {
        Ok(op_id) => Observed::Object(op_id),
        Err(error) => Observed::Garbage(error.to_string()),
    }
}

fn refusal(status: &tonic::Status) -> Observed {
    match status.code() {
        Code::NotFound => Observed::NotFound,
        code => Observed::Refused(format!("{code:?}: {}", status.message())),
    }
}
