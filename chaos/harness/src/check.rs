//! Reading every acknowledged object back through the API: each must be
//! present and byte-identical.

use finkfs_node::client::{Client, ClientError};
use finkfs_tests::load::LoadReport;
use futures_util::{stream, StreamExt};
use tonic::Code;

/// Reads in flight during a check.
const READS_IN_FLIGHT_MAX: usize = 8;

/// What one check of the acknowledged objects found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Objects read back byte-identical.
    pub intact: u64,
    /// Acknowledged objects the cluster says do not exist.
    pub lost: Vec<String>,
    /// Objects whose bytes arrived different from what was written (the
    /// client's own BLAKE3 check caught them, or they verify against a
    /// wrong hash): damaged bytes served.
    pub damaged_served: Vec<String>,
    /// Objects refused with DATA_LOSS: a replica's damage was detected and
    /// not served, but the object could not be read either.
    pub refused_damaged: Vec<String>,
    /// Objects whose read failed otherwise (retries ran out).
    pub unreadable: Vec<String>,
}

impl Checked {
    /// Objects checked.
    pub fn reads(&self) -> u64 {
        self.intact
            + [
                &self.lost,
                &self.damaged_served,
                &self.refused_damaged,
                &self.unreadable,
            ]
            .iter()
            .map(|v| v.len() as u64)
            .sum::<u64>()
    }
}

enum Outcome {
    Intact,
    Lost(String),
    DamagedServed(String),
    RefusedDamaged(String),
    Unreadable(String),
}

/// Reads back every acknowledged put of `reports`.
pub async fn acknowledged(client: &Client, reports: &[LoadReport]) -> Checked {
    let acked = reports
        .iter()
        .flat_map(|r| r.attempts.iter().filter(|a| a.acked()).map(move |a| (r, a)));
    let outcomes: Vec<Outcome> = stream::iter(acked)
        .map(|(report, attempt)| async move {
            let alert = report.alert(attempt);
            match client.get(&alert.path).await {
                Ok(data) if data == alert.data => Outcome::Intact,
                Ok(data) => Outcome::DamagedServed(format!(
                    "{}: {} bytes read, {} written, contents differ",
                    alert.path,
                    data.len(),
                    alert.data.len()
                )),
                Err(error) => classify(&alert.path, &error),
            }
        })
        .buffer_unordered(READS_IN_FLIGHT_MAX)
        .collect()
        .await;
    let mut checked = Checked::default();
    for outcome in outcomes {
        match outcome {
            Outcome::Intact => checked.intact += 1,
            Outcome::Lost(what) => checked.lost.push(what),
            Outcome::DamagedServed(what) => checked.damaged_served.push(what),
            Outcome::RefusedDamaged(what) => checked.refused_damaged.push(what),
            Outcome::Unreadable(what) => checked.unreadable.push(what),
        }
    }
    checked
}

fn classify(path: &str, error: &ClientError) -> Outcome {
    let what = format!("{path}: {error}");
    match (error, error.code()) {
        (ClientError::Corrupt { .. }, _) => Outcome::DamagedServed(what),
        (_, Some(Code::NotFound)) => Outcome::Lost(what),
        (_, Some(Code::DataLoss)) => Outcome::RefusedDamaged(what),
        _ => Outcome::Unreadable(what),
    }
}
