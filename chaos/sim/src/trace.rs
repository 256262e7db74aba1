//! The network's record of what happened to every message, in a fixed text
//! form so that two runs of one seed can be compared line by line.

use std::fmt;
use std::time::Duration;

/// One thing that happened to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetEvent {
    /// Virtual time since the network was created.
    pub at: Duration,
    /// The message's number, in sending order.
    pub seq: u64,
    /// Sender's address.
    pub from: String,
    /// Receiver's address.
    pub to: String,
    /// The message (`Vote`, `AppendEntries`, `SnapshotChunk`, ...).
    pub kind: &'static str,
    /// What happened.
    pub what: String,
}

impl fmt::Display for NetEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>12}us #{} {}->{} {} {}",
            self.at.as_micros(),
            self.seq,
            self.from,
            self.to,
            self.kind,
            self.what
        )
    }
}
