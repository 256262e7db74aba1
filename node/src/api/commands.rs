//! Proposing state machine commands and reading their outcomes.
//!
//! Several commands proposed together travel as one `Batch` entry; the
//! response then holds one outcome per command, in order. A rejection
//! becomes the status a client gets.

use finkfs_raft::types::{AppCommand, AppResponse};
use tonic::Status;

use crate::command::{Command, Outcome, RejectKind, Rejection, Response, ENTRY_BYTES_MAX};

/// The command carrying `commands`: the command itself, or a batch.
pub(crate) fn encode(mut commands: Vec<Command>) -> Result<AppCommand, Status> {
    let command = match commands.len() {
        0 => return Err(Status::internal("proposing no command")),
        1 => commands.pop().expect("one command"),
        _ => Command::Batch(commands),
    };
    let bytes = command.encoded_len();
    // The API builds every entry within the ceiling; a larger one is a bug.
    assert!(
        bytes <= ENTRY_BYTES_MAX || is_large_manifest(&command),
        "an API command of {bytes} bytes exceeds the entry ceiling of {ENTRY_BYTES_MAX}"
    );
    Ok(AppCommand(command.encode()))
}

/// A `PutObject` without inline blocks may exceed the ceiling only through
/// the manifest of a huge object.
fn is_large_manifest(command: &Command) -> bool {
    matches!(command, Command::PutObject { inline_blocks, .. } if inline_blocks.is_empty())
}

/// The outcomes of the `count` commands of one proposal.
pub(crate) fn decode(response: &AppResponse, count: usize) -> Result<Vec<Outcome>, Status> {
    let response = Response::decode(&response.0).map_err(|e| {
        Status::internal(format!("the state machine's response does not decode: {e}"))
    })?;
    let outcomes = match response {
        Response::Single(outcome) => vec![outcome],
        Response::Batch(outcomes) => outcomes,
    };
    if outcomes.len() != count {
        return Err(Status::internal(format!(
            "{count} commands proposed, {} outcomes returned",
            outcomes.len()
        )));
    }
    Ok(outcomes)
}

/// The status for a refused command.
pub(crate) fn rejected(rejection: &Rejection) -> Status {
    let message = format!("refused: {}; nothing stored", rejection.reason);
    match rejection.kind {
        RejectKind::BadPath | RejectKind::TooLarge => Status::invalid_argument(message),
        // Blocks a large object's PutObject needs were not stored: upload
        // again (its PutBlocks are sent again).
        RejectKind::MissingBlocks => Status::aborted(message),
        _ => Status::failed_precondition(message),
    }
}

/// Ok when `outcome` says an object was stored.
pub(crate) fn expect_put(outcome: &Outcome) -> Result<(), Status> {
    match outcome {
        Outcome::Put { .. } => Ok(()),
        Outcome::Rejected(rejection) => Err(rejected(rejection)),
        other => Err(Status::internal(format!(
            "a put was answered with {other:?}"
        ))),
    }
}

/// Ok when `outcome` says blocks were stored.
pub(crate) fn expect_blocks(outcome: &Outcome) -> Result<(), Status> {
    match outcome {
        Outcome::Blocks { .. } => Ok(()),
        Outcome::Rejected(rejection) => Err(rejected(rejection)),
        other => Err(Status::internal(format!(
            "a block upload was answered with {other:?}"
        ))),
    }
}

/// Whether a delete found an object.
pub(crate) fn deleted(outcome: &Outcome) -> Result<bool, Status> {
    match outcome {
        Outcome::Deleted { .. } => Ok(true),
        Outcome::NotFound => Ok(false),
        Outcome::Rejected(rejection) => Err(rejected(rejection)),
        other => Err(Status::internal(format!(
            "a delete was answered with {other:?}"
        ))),
    }
}
