//! Containment of panics raised inside redb.
//!
//! redb trusts the bytes of its own file: given a file damaged outside redb
//! (flipped bits, zeroed sectors, random bytes) some paths assert or index
//! out of bounds and panic instead of returning an error — its docs say as
//! much for a plain open, and its debug builds turn "impossible" states into
//! panics on purpose. A damaged index must never take the node down, so every
//! call into redb runs under `catch_unwind`, and a panic becomes
//! [`IndexError::FileCorrupt`] naming the file. The index is then poisoned:
//! redb's in-memory state may be half-updated, so nothing more is done with
//! it until it is reopened.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use super::IndexError;

/// The reason an index refuses further work, once something went wrong.
#[derive(Debug, Default)]
pub struct Poison {
    reason: Mutex<Option<String>>,
}

impl Poison {
    pub fn set(&self, reason: String) {
        let mut slot = self.reason.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(reason);
        }
    }

    /// Fails with [`IndexError::Poisoned`] once a reason was set.
    pub fn check(&self, file: &Path) -> Result<(), IndexError> {
        let slot = self.reason.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.as_ref() {
            Some(reason) => Err(IndexError::Poisoned {
                file: file.to_path_buf(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }
}

/// Runs `f`, which calls into redb, turning a panic into an error that
/// names `file` and poisoning the index.
pub fn shielded<T>(
    file: &Path,
    poison: &Poison,
    what: &str,
    f: impl FnOnce() -> Result<T, IndexError>,
) -> Result<T, IndexError> {
    // AssertUnwindSafe: after a panic nothing touched by `f` is used again
    // except through a poisoned index, which refuses all work.
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => Err(panicked(file.to_path_buf(), poison, what, payload)),
    }
}

/// Drops `value` (a redb handle whose drop writes to the file) without
/// letting a panic escape.
pub fn drop_shielded<T>(file: &Path, value: T) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(value))) {
        tracing::error!(file = %file.display(), panic = panic_text(payload.as_ref()), "redb panicked while closing the index");
    }
}

fn panicked(
    file: PathBuf,
    poison: &Poison,
    what: &str,
    payload: Box<dyn Any + Send>,
) -> IndexError {
    let reason = format!(
        "redb failed during {what}: {}",
        panic_text(payload.as_ref())
    );
    tracing::error!(file = %file.display(), %reason, "index poisoned");
    poison.set(reason.clone());
    IndexError::FileCorrupt { file, reason }
}

fn panic_text(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "panic"
    }
}
