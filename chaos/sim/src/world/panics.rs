//! Panics inside a world: a task of a node that panics (openraft's core on
//! an impossible state, say) dies alone and the node goes quiet, which
//! would look like mere slowness. The hook records each panic with the node
//! it happened in, so the world reports it as a violation.

use std::cell::{Cell, RefCell};
use std::sync::Once;

thread_local! {
    /// Set while a world runs on this thread.
    static RECORDING: Cell<bool> = const { Cell::new(false) };
    static PANICS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Installs the process's hook once: inside a world it records the panic
/// (quietly); elsewhere it defers to the hook that was there before.
pub(crate) fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if RECORDING.with(Cell::get) {
                let node = finkfs_raft::rt::current_node()
                    .map_or_else(|| "the world".to_string(), |tag| tag.to_string());
                let text = format!("panic in {node}: {info}");
                PANICS.with(|p| p.borrow_mut().push(text));
            } else {
                previous(info);
            }
        }));
    });
}

/// Records panics on this thread until the guard is dropped.
pub(crate) struct Recording;

impl Recording {
    pub(crate) fn start() -> Recording {
        install();
        RECORDING.with(|r| r.set(true));
        PANICS.with(|p| p.borrow_mut().clear());
        Recording
    }

    /// The panics recorded since the last call.
    pub(crate) fn take(&self) -> Vec<String> {
        PANICS.with(|p| std::mem::take(&mut *p.borrow_mut()))
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        RECORDING.with(|r| r.set(false));
    }
}
