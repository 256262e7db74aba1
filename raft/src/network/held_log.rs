//! HeldLog: how far a peer's log reaches. A node that cut a torn tail at
//! start asks every other voter before it votes again (the tail floor of
//! `log_store::VoteGate`).

use std::time::Duration;

use super::blocks::PeerClient;
use super::convert;
use super::error::PeerClientError;
use super::proto;
use super::transport::{wrong_reply, PeerReply, PeerRequest};
use crate::types::{GroupId, LogId};

impl PeerClient {
    /// The last log id (held or purged) of the peer at `addr` in `group`;
    /// `None` when its log is empty. Waits up to `timeout`.
    pub async fn held_log(
        &self,
        addr: &str,
        group: GroupId,
        timeout: Duration,
    ) -> Result<Option<LogId>, PeerClientError> {
        let request = PeerRequest::HeldLog(proto::HeldLogRequest { group_id: group.0 });
        match self.call(addr, group, request, timeout).await? {
            PeerReply::HeldLog(reply) => {
                convert::log_id_from_proto(reply.last_log_id, "last_log_id").map_err(|source| {
                    PeerClientError::Wire {
                        addr: addr.to_string(),
                        source,
                    }
                })
            }
            other => Err(PeerClientError::Status {
                addr: addr.to_string(),
                status: Box::new(wrong_reply("HeldLog", &other)),
            }),
        }
    }
}
