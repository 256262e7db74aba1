//! When and how the client library retries.
//!
//! A call is retried when the answer says the request did not take effect
//! or may be repeated safely: the node is not the leader (follow the
//! `finkfs-leader` address it names), no leader is known yet, the node is
//! unreachable or stopping, or the connection broke. Every write the
//! protocol offers is idempotent (a Put of the same bytes to the same path
//! stores the same object; a Delete of a missing object is a no-op), so a
//! retry after an unknown outcome cannot duplicate or corrupt anything.
//!
//! Retries are bounded by attempts and by elapsed time; the pause between
//! attempts doubles from a floor to a ceiling.

use std::time::Duration;

use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

use crate::api::{LEADER_METADATA_KEY, NOT_MEMBER_METADATA_KEY};

/// Default most attempts of one call.
pub const RETRY_ATTEMPTS_MAX_DEFAULT: u32 = 40;
/// Default longest time one call keeps retrying.
pub const RETRY_ELAPSED_MAX_DEFAULT: Duration = Duration::from_secs(30);
/// Default first pause between attempts.
pub const RETRY_BACKOFF_MIN_DEFAULT: Duration = Duration::from_millis(20);
/// Default longest pause between attempts.
pub const RETRY_BACKOFF_MAX_DEFAULT: Duration = Duration::from_secs(1);

/// The retry ceilings of a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryOptions {
    /// Most attempts of one call (at least 1).
    pub attempts_max: u32,
    /// No attempt starts after this much time since the first.
    pub elapsed_max: Duration,
    /// Pause before the first retry.
    pub backoff_min: Duration,
    /// Longest pause between attempts.
    pub backoff_max: Duration,
}

impl Default for RetryOptions {
    fn default() -> RetryOptions {
        RetryOptions {
            attempts_max: RETRY_ATTEMPTS_MAX_DEFAULT,
            elapsed_max: RETRY_ELAPSED_MAX_DEFAULT,
            backoff_min: RETRY_BACKOFF_MIN_DEFAULT,
            backoff_max: RETRY_BACKOFF_MAX_DEFAULT,
        }
    }
}

impl RetryOptions {
    /// The pause after failed attempt number `attempt` (1 for the first).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(16);
        self.backoff_min
            .saturating_mul(1u32 << doublings)
            .min(self.backoff_max)
    }
}

/// What to do after an error status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Send the call again to this address (the leader) at once.
    Redirect(String),
    /// Try another address after a pause.
    Retry,
    /// The node is not a member of any cluster: try another address, and
    /// give up once every known address said so.
    NotMember,
    /// Retrying will not help.
    Fail,
}

/// Classifies an error status.
pub(crate) fn verdict(status: &Status) -> Verdict {
    match status.code() {
        Code::FailedPrecondition => match leader_of(status.metadata()) {
            Some(leader) => Verdict::Redirect(leader),
            // Not the leader, and it knows no leader: an election is on.
            None if is_not_leader(status.metadata()) => Verdict::Retry,
            None => Verdict::Fail,
        },
        Code::Unavailable if status.metadata().contains_key(NOT_MEMBER_METADATA_KEY) => {
            Verdict::NotMember
        }
        // Unreachable, stopping, no quorum yet; a broken or reset
        // connection; a reply that never came.
        Code::Unavailable
        | Code::Cancelled
        | Code::Unknown
        | Code::Aborted
        | Code::DeadlineExceeded => Verdict::Retry,
        _ => Verdict::Fail,
    }
}

/// The leader's client address a follower named, if any.
pub(crate) fn leader_of(metadata: &MetadataMap) -> Option<String> {
    let value = metadata.get(LEADER_METADATA_KEY)?.to_str().ok()?;
    (!value.is_empty()).then(|| value.to_string())
}

/// Whether the status says "not the leader" (with or without a leader).
fn is_not_leader(metadata: &MetadataMap) -> bool {
    metadata.contains_key(LEADER_METADATA_KEY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_metadata(code: Code, key: &'static str, value: &str) -> Status {
        let mut status = Status::new(code, "x");
        status
            .metadata_mut()
            .insert(key, value.parse().expect("ascii metadata"));
        status
    }

    #[test]
    fn follower_answer_redirects_to_named_leader() {
        let status = with_metadata(Code::FailedPrecondition, LEADER_METADATA_KEY, "h:1");
        assert_eq!(verdict(&status), Verdict::Redirect("h:1".into()));
    }

    #[test]
    fn follower_without_known_leader_is_retried() {
        let status = with_metadata(Code::FailedPrecondition, LEADER_METADATA_KEY, "");
        assert_eq!(verdict(&status), Verdict::Retry);
    }

    #[test]
    fn bad_requests_are_not_retried() {
        for code in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::FailedPrecondition,
            Code::OutOfRange,
            Code::DataLoss,
            Code::ResourceExhausted,
            Code::Internal,
        ] {
            assert_eq!(verdict(&Status::new(code, "x")), Verdict::Fail, "{code:?}");
        }
    }

    #[test]
    fn non_member_is_its_own_verdict() {
        let status = with_metadata(Code::Unavailable, NOT_MEMBER_METADATA_KEY, "1");
        assert_eq!(verdict(&status), Verdict::NotMember);
        assert_eq!(verdict(&Status::unavailable("down")), Verdict::Retry);
    }

    #[test]
    fn backoff_doubles_up_to_its_ceiling() {
        let options = RetryOptions {
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(50),
            ..RetryOptions::default()
        };
        assert_eq!(options.backoff(1), Duration::from_millis(10));
        assert_eq!(options.backoff(2), Duration::from_millis(20));
        assert_eq!(options.backoff(3), Duration::from_millis(40));
        assert_eq!(options.backoff(4), Duration::from_millis(50));
        assert_eq!(options.backoff(1000), Duration::from_millis(50));
    }
}
