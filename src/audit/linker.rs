//! The audit linker task (Postgres; see ARCHITECTURE.md "Audit sequencer"): links committed
//! audit events into the chain. Woken by this instance's writers right after they commit, and
//! every second regardless, for events other instances committed (they wake their own linkers;
//! the sweep is the backstop, so no `LISTEN/NOTIFY`). Passes take turns across instances under
//! the store's linker lock, so any number of these tasks never fork the chain.

use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;

/// How often the linker looks without being woken.
pub const SWEEP: Duration = Duration::from_secs(1);

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
            let _ = tokio::time::timeout(SWEEP, wakeup.notified()).await;
            if let Err(e) = store.link_pending().await {
                tracing::error!(error = %e, "audit link pass failed; retrying");
                tokio::time::sleep(SWEEP).await;
            }
        }
    })))
}
