//! Waiting for a condition: poll it until it holds or a deadline passes.
//! Tests never sleep in place of a condition they can observe.

use std::future::Future;
use std::time::{Duration, Instant};

/// Pause between two polls.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Polls `probe` until it yields `Some`, for at most `timeout`. On timeout
/// the error says what was awaited and what the last probe saw.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => "not yet".to_string(),
            Err(seen) => seen,
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "{what}: not within {timeout:?} (last seen: {last})"
            ));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
