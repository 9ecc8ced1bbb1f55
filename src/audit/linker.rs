//! The audit linker task (Postgres; see ARCHITECTURE.md "Audit sequencer"): links committed
//! audit events into the chain. Woken by this instance's writers right after they commit, and
//! every second regardless, for events other instances committed (they wake their own linkers;
//! the sweep is the backstop, so no `LISTEN/NOTIFY`). Passes take turns across instances under
//! the store's linker lock, so any number of these tasks never fork the chain.
//!
//! A woken linker waits [`GATHER`] before its pass, so the commits of that moment share one pass.
//! A pass is a transaction of its own, and its commit an fsync: linked at once, a writer's every
//! commit was followed by a linker commit, and with one writer (a workflow commits five times in
//! about ten milliseconds) those commits queued with the writer's own for the disk — half the
//! fsyncs of a workflow were the linker's (docs/benchmarks.md). Reads of the chain still link
//! first, so nothing that reads it waits for the gathering.

use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;

/// How often the linker looks without being woken.
pub const SWEEP: Duration = Duration::from_secs(1);

/// How long a woken linker lets further commits gather before its pass.
pub const GATHER: Duration = Duration::from_millis(5);

/// Aborts the linker task when dropped (the service stopping).
pub struct LinkerTask(tokio::task::JoinHandle<()>);

impl Drop for LinkerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the linker for `store`; None when the store links events as it inserts them.
pub fn spawn(store: Arc<dyn Store>) -> Option<LinkerTask> {
    let wakeup = store.link_wakeup()?;
    Some(LinkerTask(tokio::spawn(async move {
        loop {
            // A wake-up during a pass is kept (one permit), so a commit racing the pass's read
            // is linked by the next pass.
            if tokio::time::timeout(SWEEP, wakeup.notified()).await.is_ok() {
                tokio::time::sleep(GATHER).await;
                // The wake-ups of the commits gathered meanwhile are answered by this pass (they
                // committed before its read): dropped, so they do not start an empty one after it.
                take_wakeup(&wakeup);
            }
            if let Err(e) = store.link_pending().await {
                tracing::error!(error = %e, "audit link pass failed; retrying");
                tokio::time::sleep(SWEEP).await;
            }
        }
    })))
}

/// Takes the wake-up stored while nobody waited, if there is one, without waiting.
fn take_wakeup(wakeup: &tokio::sync::Notify) -> bool {
    let notified = std::pin::pin!(wakeup.notified());
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    notified.poll(&mut cx).is_ready()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_wake_up_is_taken_once_and_none_is_made_up() {
        let wakeup = tokio::sync::Notify::new();
        assert!(!take_wakeup(&wakeup), "nothing was stored");
        wakeup.notify_one();
        wakeup.notify_one();
        assert!(take_wakeup(&wakeup), "the stored wake-up");
        assert!(
            !take_wakeup(&wakeup),
            "wake-ups are not counted: one permit"
        );
    }
}
