//! The current permissions of a running server, swapped atomically on reload.
//! An invalid or missing file on reload keeps the last good set and records the error.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;

use super::grants::Caller;
use super::permissions::Permissions;
use crate::error::Result;

/// Holds the permissions loaded from a file; the server calls [`PermissionsStore::reload`] when
/// the file changes. Readers get a consistent set with [`PermissionsStore::current`].
#[derive(Debug)]
pub struct PermissionsStore {
    path: PathBuf,
    current: ArcSwap<Permissions>,
    /// The error of the last load, if it failed; also serialises reloads.
    error: Mutex<Option<String>>,
}

impl PermissionsStore {
    /// Loads the file. A missing file gives a store with no users (every request is refused) and
    /// [`PermissionsStore::error`] saying so; an invalid file is an error, so a server does not
    /// start with a broken file.
    pub fn open(path: impl Into<PathBuf>) -> Result<PermissionsStore> {
        let path = path.into();
        let (permissions, error) = if path.exists() {
            (Permissions::load(&path)?, None)
        } else {
            (Permissions::empty(), Some(missing(&path)))
        };
        Ok(PermissionsStore {
            path,
            current: ArcSwap::from_pointee(permissions),
            error: Mutex::new(error),
        })
    }

    /// Reloads the file. On success the new set replaces the current one and the recorded error
    /// is cleared. On failure (invalid or missing file) the last good set stays in place and the
    /// error is recorded and returned.
    pub fn reload(&self) -> std::result::Result<(), ReloadError> {
        let mut error = self.lock();
        let loaded = if self.path.exists() {
            Permissions::load(&self.path).map_err(LoadError::Invalid)
        } else {
            Err(LoadError::Missing(self.path.clone()))
        };
        match loaded {
            Ok(permissions) => {
                self.current.store(Arc::new(permissions));
                *error = None;
                Ok(())
            }
            Err(cause) => {
                let e = ReloadError {
                    cause,
                    kept_users: self.current.load().len(),
                };
                *error = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// The permissions in force.
    pub fn current(&self) -> Arc<Permissions> {
        self.current.load_full()
    }

    /// Authenticates a bearer token against the permissions in force.
    pub fn authenticate(&self, bearer_token: &str) -> Option<Caller> {
        self.current.load().authenticate(bearer_token)
    }

    /// Why the last load failed, if it did (cleared by the next good load).
    pub fn error(&self) -> Option<String> {
        self.lock().clone()
    }

    /// The permissions file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Option<String>> {
        self.error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn missing(path: &Path) -> String {
    LoadError::Missing(path.to_path_buf()).to_string()
}

/// Why a reload of the permissions file was refused; the users loaded before stay in force.
#[derive(Debug, thiserror::Error)]
#[error("{cause} (keeping the {kept_users} user(s) loaded before)")]
pub struct ReloadError {
    #[source]
    pub cause: LoadError,
    /// Users of the set still in force.
    pub kept_users: usize,
}

/// Why the permissions file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file is not there.
    #[error(
        "{}: the permissions file is missing; no token is accepted (every request gets 401)",
        .0.display()
    )]
    Missing(PathBuf),
    /// The file is invalid (the error names the line).
    #[error(transparent)]
    Invalid(crate::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD_A: &str = "users:\n  - name: a\n    token: token-a\n";
    const GOOD_B: &str = "users:\n  - name: b\n    token: token-b\n";

    #[test]
    fn missing_file_refuses_everyone() {
        let dir = tempfile::tempdir().unwrap();
        let store = PermissionsStore::open(dir.path().join("permissions.yaml")).unwrap();
        assert!(store.current().is_empty());
        assert!(store.authenticate("anything").is_none());
        let e = store.error().unwrap();
        assert!(
            e.contains("permissions.yaml: the permissions file is missing"),
            "{e}"
        );
    }

    #[test]
    fn invalid_file_on_open_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("permissions.yaml");
        std::fs::write(&path, "users:\n  - name: a\n").unwrap();
        let e = PermissionsStore::open(&path).unwrap_err().to_string();
        assert!(
            e.contains("permissions.yaml:2: user `a` has neither"),
            "{e}"
        );
    }

    #[test]
    fn reload_keeps_last_good_set_then_clears_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("permissions.yaml");
        std::fs::write(&path, GOOD_A).unwrap();
        let store = PermissionsStore::open(&path).unwrap();
        assert_eq!(store.path(), path);
        assert!(store.error().is_none());
        assert_eq!(store.authenticate("token-a").unwrap().name, "a");

        std::fs::write(
            &path,
            "users:\n  - name: a\n    token: token-a\n    tokn: x\n",
        )
        .unwrap();
        let e = store.reload().unwrap_err();
        assert!(matches!(e.cause, LoadError::Invalid(_)), "{e}");
        assert_eq!(e.kept_users, 1);
        let e = e.to_string();
        assert!(e.contains("permissions.yaml:4"), "{e}");
        assert!(e.contains("unknown field `tokn`"), "{e}");
        assert!(e.contains("keeping the 1 user(s)"), "{e}");
        assert_eq!(store.error().as_deref(), Some(e.as_str()));
        assert_eq!(store.authenticate("token-a").unwrap().name, "a");

        std::fs::remove_file(&path).unwrap();
        let e = store.reload().unwrap_err();
        assert!(matches!(e.cause, LoadError::Missing(_)), "{e}");
        let e = e.to_string();
        assert!(e.contains("missing"), "{e}");
        assert_eq!(store.authenticate("token-a").unwrap().name, "a");

        std::fs::write(&path, GOOD_B).unwrap();
        store.reload().unwrap();
        assert!(store.error().is_none());
        assert!(store.authenticate("token-a").is_none());
        assert_eq!(store.authenticate("token-b").unwrap().name, "b");
    }

    #[test]
    fn readers_keep_their_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("permissions.yaml");
        std::fs::write(&path, GOOD_A).unwrap();
        let store = PermissionsStore::open(&path).unwrap();
        let before = store.current();
        std::fs::write(&path, GOOD_B).unwrap();
        store.reload().unwrap();
        assert!(before.authenticate("token-a").is_some());
        assert!(store.current().authenticate("token-a").is_none());
    }
}
