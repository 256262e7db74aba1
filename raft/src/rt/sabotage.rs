//! Deliberate bugs a simulated world can switch on, so that a test can show
//! the simulator's checker catches them (a checker that passes a broken
//! build proves nothing).
//!
//! Only a world's hook turns one on, for the worlds on its thread; outside
//! the simulator [`sabotaged`] is always false. Without the crate feature
//! `sabotage` (which only the simulator enables) the check compiles to
//! `false`, so a node built on its own carries none of this.

/// A deliberate bug, placed where the code it breaks lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Sabotage {
    /// Reads of blocks and objects skip their BLAKE3 check and serve
    /// whatever bytes the disk returned.
    SkipReadChecksum,
    /// The journal's recovery cuts its last segment at the first record
    /// that fails its checksum, synced or not, as if every damaged record
    /// were a torn write.
    TruncateOnChecksumFailure,
}

/// Whether `which` is switched on for the world running on this thread.
pub fn sabotaged(which: Sabotage) -> bool {
    #[cfg(feature = "sabotage")]
    {
        super::hook().is_some_and(|hook| hook.sabotage == Some(which))
    }
    #[cfg(not(feature = "sabotage"))]
    {
        let _ = which;
        false
    }
}
