//! The GitOps watcher: edits under `pipelines/`, `queries/` and `config/` reload the project files
//! (valid -> swapped in, invalid -> kept out and reported) and the permissions file.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio_util::sync::CancellationToken;

use crate::server::AppState;
use crate::server::versions::{WATCHED_DIRS, is_editor_leftover};

/// Quiet time after the last change before reloading, so a `git pull` reloads once.
const SETTLE: Duration = Duration::from_millis(250);

/// What the watcher watches besides the project root itself.
#[derive(Debug, Clone)]
struct Targets {
    /// The project root (watched alone, not recursively: it sees folders created or removed).
    root: PathBuf,
    /// Folders watched recursively: the project folders, and the permissions file's folder when
    /// it is outside them (watched alone; only that file's events count).
    dirs: Vec<(PathBuf, RecursiveMode)>,
    /// The permissions file when it is outside the project folders.
    permissions: Option<PathBuf>,
}

impl Targets {
    fn new(root: &Path, permissions: &Path) -> Targets {
        let mut dirs: Vec<(PathBuf, RecursiveMode)> = WATCHED_DIRS
            .iter()
            .map(|d| (root.join(d), RecursiveMode::Recursive))
            .collect();
        let permissions = std::path::absolute(permissions).unwrap_or(permissions.to_path_buf());
        let covered = dirs.iter().any(|(d, _)| permissions.starts_with(d));
        let permissions = (!covered).then_some(permissions);
        if let Some(parent) = permissions.as_deref().and_then(Path::parent)
            && parent != root
        {
            dirs.push((parent.to_path_buf(), RecursiveMode::NonRecursive));
        }
        Targets {
            root: root.to_path_buf(),
            dirs,
            permissions,
        }
    }

    /// Whether a change at `path` may change the project files or the permissions.
    fn relevant(&self, path: &Path) -> bool {
        if self.permissions.as_deref() == Some(path) {
            return true;
        }
        if self.dirs.iter().any(|(d, _)| d == path) {
            return true;
        }
        let rel = path.strip_prefix(&self.root).unwrap_or(path);
        let watched = rel
            .components()
            .next()
            .is_some_and(|c| WATCHED_DIRS.iter().any(|d| c.as_os_str() == *d));
        watched && !is_editor_leftover(path)
    }

    /// The watched folder an event at `path` replaces or removes, if it is one of them.
    fn folder(&self, path: &Path) -> Option<PathBuf> {
        self.dirs
            .iter()
            .find(|(d, _)| d == path)
            .map(|(d, _)| d.clone())
    }
}

/// Whether an event of this kind may have changed a file (opening or reading one does not).
fn changes(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Watches the project until `stop` fires.
pub async fn watch_project(state: Arc<AppState>, stop: CancellationToken) {
    let targets = Targets::new(&state.root, state.permissions.path());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    // Folders created, removed or moved since they were last watched: a watch follows the
    // folder it was put on, so a folder deleted and recreated (`git checkout`, `rm -rf && cp`)
    // must be watched again.
    let replaced: Arc<Mutex<HashSet<PathBuf>>> = Arc::default();
    let mut watcher = {
        let targets = targets.clone();
        let replaced = Arc::clone(&replaced);
        match notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let relevant = match &event {
                // Reads (the reload's own among them) change nothing.
                Ok(e) if !changes(&e.kind) => false,
                Ok(e) => {
                    let mut replaced = replaced
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    replaced.extend(e.paths.iter().filter_map(|p| targets.folder(p)));
                    e.paths.iter().any(|p| targets.relevant(p))
                }
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
        }
    };
    // The root itself (not recursive) notices a watched folder being created or replaced.
    if let Err(e) = watcher.watch(&targets.root, RecursiveMode::NonRecursive) {
        tracing::error!(error = %e, "cannot watch the project root");
    }
    let mut watched = HashSet::new();
    loop {
        sync_watches(&mut watcher, &targets, &replaced, &mut watched);
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
        // Watch recreated folders before reading them, so no edit falls between the two.
        sync_watches(&mut watcher, &targets, &replaced, &mut watched);
        reload(&state).await;
    }
}

/// Puts a watch on every target folder that exists and has none (or was replaced), and forgets
/// the folders that are gone.
fn sync_watches(
    watcher: &mut impl Watcher,
    targets: &Targets,
    replaced: &Mutex<HashSet<PathBuf>>,
    watched: &mut HashSet<PathBuf>,
) {
    let replaced: HashSet<PathBuf> = std::mem::take(
        &mut *replaced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    for (path, mode) in &targets.dirs {
        let stale = replaced.contains(path) || !path.is_dir();
        if stale && watched.remove(path) {
            // The old watch may already be gone with its folder.
            let _ = watcher.unwatch(path);
        }
        if path.is_dir() && !watched.contains(path) {
            match watcher.watch(path, *mode) {
                Ok(()) => {
                    watched.insert(path.clone());
                }
                Err(e) => tracing::error!(dir = %path.display(), error = %e, "cannot watch"),
            }
        }
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
            tracing::error!(error = %e, "permissions file refused; the previous set stays in use");
        }
        Err(e) => tracing::error!(error = %e, "permissions reload failed"),
        Ok(Ok(())) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_permissions_file_outside_the_project_folders_is_watched_through_its_folder() {
        let root = Path::new("/srv/project");
        let targets = Targets::new(root, Path::new("/etc/bridge/permissions.yaml"));
        assert!(
            targets
                .dirs
                .contains(&(PathBuf::from("/etc/bridge"), RecursiveMode::NonRecursive))
        );
        assert!(targets.relevant(Path::new("/etc/bridge/permissions.yaml")));
        assert!(!targets.relevant(Path::new("/etc/bridge/other.yaml")));
        assert!(targets.relevant(Path::new("/srv/project/pipelines/demo.yaml")));
        assert!(!targets.relevant(Path::new("/srv/project/output/x.parquet")));
        assert!(!targets.relevant(Path::new("/srv/project/pipelines/.demo.yaml.swp")));

        let inside = Targets::new(root, Path::new("/srv/project/config/permissions.yaml"));
        assert_eq!(inside.dirs.len(), WATCHED_DIRS.len());
        assert!(inside.permissions.is_none());
        // In the root itself: the root's own watch sees it.
        let top = Targets::new(root, Path::new("/srv/project/permissions.yaml"));
        assert_eq!(top.dirs.len(), WATCHED_DIRS.len());
        assert!(top.relevant(Path::new("/srv/project/permissions.yaml")));
    }

    #[test]
    fn reading_a_file_is_not_a_change() {
        use notify::event::{AccessKind, AccessMode, CreateKind, EventKind};
        assert!(!changes(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!changes(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(changes(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(changes(&EventKind::Create(CreateKind::Folder)));
    }

    #[test]
    fn only_the_watched_folders_themselves_count_as_replaced() {
        let targets = Targets::new(Path::new("/p"), Path::new("/p/config/permissions.yaml"));
        assert_eq!(
            targets.folder(Path::new("/p/pipelines")),
            Some(PathBuf::from("/p/pipelines"))
        );
        assert_eq!(targets.folder(Path::new("/p/pipelines/demo.yaml")), None);
        assert_eq!(targets.folder(Path::new("/p/output")), None);
    }
}
