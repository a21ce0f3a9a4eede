//! The extension's tokio runtime: created on first use, once per process. Spark's Python workers
//! are forked from a daemon, and a runtime does not survive a fork (its threads stay in the
//! parent), so a process whose pid differs from the creator's makes its own.

use std::sync::{Arc, Mutex};

use tokio::runtime::Runtime;

static RUNTIME: Mutex<Option<(u32, Arc<Runtime>)>> = Mutex::new(None);

/// This process's runtime.
pub fn runtime() -> Arc<Runtime> {
    let pid = std::process::id();
    let mut slot = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((owner, rt)) = slot.as_ref()
        && *owner == pid
    {
        return Arc::clone(rt);
    }
    // A runtime inherited through fork has no threads here: leak it rather than run its drop,
    // which would wait for workers that do not exist in this process.
    if let Some((_, inherited)) = slot.take() {
        std::mem::forget(inherited);
    }
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("bridge-operator")
            .enable_all()
            .build()
            .expect("a tokio runtime can be built"),
    );
    *slot = Some((pid, Arc::clone(&rt)));
    rt
}
