//! Verify: this node's own copy of its objects, block by block, for
//! `finkfs fsck --cluster`. Served from the local store by any member (no
//! read barrier, no forwarding: the point is what *this* disk holds), and
//! read-only: a damaged block is reported, not repaired, so the report says
//! what the cluster held when it was asked.

use bytes::Bytes;
use openraft::storage::RaftStateMachine;
use tonic::Status;

use super::errors::{store_error, task_failed};
use super::proto::{CopyState, VerifiedObject, VerifyReply, VerifyRequest};
use super::reads::check_prefix;
use super::server::Shared;
use crate::hex::hex;
use crate::manifest::Manifest;
use crate::reader::ObjectReader;
use crate::store::StoreError;
use finkfs_raft::types::TypeConfig;

/// Objects in a Verify reply when the request does not say.
pub const VERIFY_LIMIT_DEFAULT: usize = 200;
/// Most objects in one Verify reply: each costs a read of all its blocks.
pub const VERIFY_LIMIT_MAX: usize = 1000;

pub(crate) async fn verify<SM>(
    shared: &Shared<SM>,
    request: VerifyRequest,
) -> Result<VerifyReply, Status>
where
    SM: RaftStateMachine<TypeConfig>,
{
    let limit = match request.limit as usize {
        0 => VERIFY_LIMIT_DEFAULT,
        limit if limit > VERIFY_LIMIT_MAX => {
            return Err(Status::invalid_argument(format!(
                "verify limit {limit} exceeds the maximum of {VERIFY_LIMIT_MAX}"
            )))
        }
        limit => limit,
    };
    if let Some(after) = &request.start_after {
        check_prefix(after)?;
    }
    let reader = shared.reader.clone();
    let node_id = shared.id;
    let start_after = request.start_after;
    let page =
        finkfs_raft::rt::blocking(move || verify_page(&reader, start_after.as_deref(), limit))
            .await
            .map_err(|e| task_failed(&e))?
            .map_err(|e| store_error(&e))?;
    Ok(VerifyReply { node_id, ..page })
}

/// Reads and verifies every block of up to `limit` objects after
/// `start_after`.
fn verify_page(
    reader: &ObjectReader,
    start_after: Option<&str>,
    limit: usize,
) -> Result<VerifyReply, StoreError> {
    let last_applied = reader.applied()?.map(|applied| applied.index);
    let listed = reader.list("", start_after, limit)?;
    let next_start_after = (listed.len() == limit)
        .then(|| listed.last().map(|(path, _)| path.clone()))
        .flatten();
    let mut bytes_verified = 0;
    let mut objects = Vec::with_capacity(listed.len());
    for (path, manifest) in listed {
        let (state, detail, bytes) = verify_object(reader, &manifest)?;
        bytes_verified += bytes;
        objects.push(VerifiedObject {
            path,
            size: manifest.object_len,
            blake3: Bytes::copy_from_slice(&manifest.object_hash),
            state: state.into(),
            detail,
        });
    }
    Ok(VerifyReply {
        node_id: 0,
        last_applied,
        objects,
        next_start_after,
        bytes_verified,
    })
}

/// The state of this node's copy of one object: its blocks read one by one
/// (the first bad block decides), with the bytes read.
fn verify_object(
    reader: &ObjectReader,
    manifest: &Manifest,
) -> Result<(CopyState, String, u64), StoreError> {
    let mut bytes = 0;
    for block in &manifest.blocks {
        match reader.block(&block.hash) {
            Ok(Some(data)) => bytes += data.len() as u64,
            Ok(None) => {
                let detail = format!("block {} is not on this node", hex(&block.hash));
                return Ok((CopyState::MissingBlock, detail, bytes));
            }
            Err(error) if error.is_corruption() || is_unreadable(&error) => {
                let detail = format!("block {}: {error}", hex(&block.hash));
                return Ok((CopyState::Damaged, detail, bytes));
            }
            Err(error) => return Err(error),
        }
    }
    Ok((CopyState::Intact, String::new(), bytes))
}

/// A block the disk could not read (EIO, a pack cut short or gone): damage
/// of this copy, not a failure of the whole verification.
fn is_unreadable(error: &StoreError) -> bool {
    matches!(error, StoreError::Block(_))
}
