//! The GitOps watcher: edits under `pipelines/`, `queries/` and `config/` reload the project files
//! (valid -> swapped in, invalid -> kept out and reported) and the permissions file.

use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio_util::sync::CancellationToken;

use crate::server::AppState;
use crate::server::versions::{WATCHED_DIRS, is_editor_leftover};

/// Quiet time after the last change before reloading, so a `git pull` reloads once.
const SETTLE: Duration = Duration::from_millis(250);

/// Watches the project until `stop` fires.
pub async fn watch_project(state: Arc<AppState>, stop: CancellationToken) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let root = state.root.clone();
    let mut watcher =
        match notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let relevant = match &event {
                Ok(e) => e.paths.iter().any(|p| {
                    let rel = p.strip_prefix(&root).unwrap_or(p);
                    let watched = rel
                        .components()
                        .next()
                        .is_some_and(|c| WATCHED_DIRS.iter().any(|d| c.as_os_str() == *d));
                    watched && !is_editor_leftover(p)
                }),
                Err(_) => true,
            };
            if relevant {
                let _ = tx.send(());
            }
        }) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch the project files; edits need a restart");
                return;
            }
        };
    // The root itself (not recursive) notices a watched folder being created or replaced.
    if let Err(e) = watcher.watch(&state.root, RecursiveMode::NonRecursive) {
        tracing::error!(error = %e, "cannot watch the project root");
    }
    let mut watched = Vec::new();
    loop {
        for dir in WATCHED_DIRS {
            let path = state.root.join(dir);
            if path.is_dir() && !watched.contains(&path) {
                match watcher.watch(&path, RecursiveMode::Recursive) {
                    Ok(()) => watched.push(path),
                    Err(e) => tracing::error!(dir = %path.display(), error = %e, "cannot watch"),
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            got = rx.recv() => if got.is_none() { return },
        }
        // Let a burst of writes settle.
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(SETTLE) => break,
                got = rx.recv() => if got.is_none() { return },
            }
        }
        reload(&state).await;
    }
}

/// Reloads the project files and the permissions file.
pub async fn reload(state: &AppState) {
    if let Err(e) = state.versions.reload().await {
        tracing::error!(error = %e, "edit refused; the previous version stays in use");
    }
    let permissions = Arc::clone(&state.permissions);
    match tokio::task::spawn_blocking(move || permissions.reload()).await {
        Ok(Err(e)) => {
            tracing::error!(error = %e, "permissions file refused; the previous set stays in use")
        }
        Err(e) => tracing::error!(error = %e, "permissions reload failed"),
        Ok(Ok(())) => {}
    }
}
