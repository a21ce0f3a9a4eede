//! One lock per output (volume folder, object-store prefix, Files API folder, Delta table, SQL
//! Server table), held by a run from before its sources open until its commit or abort is done,
//! so two runs never write the same output at once.
//!
//! A lock is an OS advisory file lock (`flock` on Unix, through [`std::fs::File::try_lock`]) on
//! `<project root>/.bridge/locks/<hash>.lock`, `<hash>` being the SHA-256 of the output's
//! canonical id, plus an in-process set of held ids (so two runs of one `bridge serve` exclude
//! each other whatever the platform's lock semantics). It works across processes of one machine
//! that share the project root (two `bridge run`, or `bridge run` next to `bridge serve`); it does
//! **not** span machines: runs on two hosts writing the same output are not kept apart.
//!
//! A run takes the locks of all its outputs in one sorted order (so two runs cannot deadlock)
//! and waits for a busy one up to a bound ([`lock_wait`]), then fails naming the output.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

/// Folder under the project root holding the lock files.
pub const LOCK_DIR: &str = ".bridge/locks";
/// Environment variable: seconds a run waits for an output another run holds.
pub const LOCK_WAIT_ENV: &str = "BRIDGE_LOCK_WAIT_SECS";
/// How long a run waits for a busy output by default.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(600);
/// How often a waiting run tries again.
const POLL: Duration = Duration::from_millis(100);

/// Why an output's lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another run held the output for the whole wait.
    #[error(
        "output {output} is being written by another run ({holder}), which holds its lock \
         {path}; this run waited {waited_secs} s for it and wrote nothing. Run again when that \
         run has finished, or wait longer with {LOCK_WAIT_ENV}"
    )]
    Busy {
        output: String,
        path: PathBuf,
        holder: String,
        waited_secs: u64,
    },
    /// The lock file could not be created or opened.
    #[error(
        "cannot open the lock file {path} of output {output}: {source}; the project root must \
         be writable (the bridge keeps its output locks in {LOCK_DIR})"
    )]
    Io {
        output: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The run was cancelled while waiting.
    #[error("run cancelled while waiting for output {output}; nothing was committed")]
    Cancelled { output: String },
}

/// How long a run waits for an output that another run holds: `BRIDGE_LOCK_WAIT_SECS`, or
/// [`DEFAULT_LOCK_WAIT`].
pub fn lock_wait() -> Duration {
    std::env::var(LOCK_WAIT_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_LOCK_WAIT)
}

/// Output ids held by runs of this process.
static HELD: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// The locks of a run's outputs; dropping it releases them.
#[derive(Debug, Default)]
pub struct OutputLocks {
    held: Vec<HeldLock>,
}

#[derive(Debug)]
struct HeldLock {
    output: String,
    /// Holds the OS lock while open.
    _file: File,
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        HELD.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.output);
    }
}

/// Takes the lock of every output (duplicates once), in sorted order, waiting up to `wait` for
/// each busy one; `run_id` is written into the lock file so a waiting run can name the holder.
pub async fn lock_outputs(
    root: &Path,
    outputs: impl IntoIterator<Item = String>,
    run_id: &str,
    wait: Duration,
    cancel: &CancellationToken,
) -> Result<OutputLocks, LockError> {
    let outputs: BTreeSet<String> = outputs.into_iter().collect();
    let dir = root.join(LOCK_DIR);
    let mut locks = OutputLocks::default();
    for output in outputs {
        let path = dir.join(format!(
            "{}.lock",
            hex::encode(&Sha256::digest(&output)[..16])
        ));
        let file = open(&dir, &path, &output)?;
        let started = Instant::now();
        loop {
            if let Some(held) = try_take(&output, &file, run_id) {
                held.map_err(|source| LockError::Io {
                    output: output.clone(),
                    path: path.clone(),
                    source,
                })?;
                break;
            }
            if started.elapsed() >= wait {
                return Err(LockError::Busy {
                    holder: holder(&path),
                    output,
                    path,
                    waited_secs: started.elapsed().as_secs(),
                });
            }
            tracing::info!(%output, "output is being written by another run; waiting");
            tokio::select! {
                _ = cancel.cancelled() => return Err(LockError::Cancelled { output }),
                _ = tokio::time::sleep(POLL.min(wait.saturating_sub(started.elapsed()))) => {}
            }
        }
        tracing::debug!(%output, lock = %path.display(), "output locked");
        locks.held.push(HeldLock {
            output,
            _file: file,
        });
    }
    Ok(locks)
}

fn open(dir: &Path, path: &Path, output: &str) -> Result<File, LockError> {
    let io = |source| LockError::Io {
        output: output.to_string(),
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io)
}

/// `None` when another run holds the output; `Some(Err)` when locking failed for another reason.
fn try_take(output: &str, file: &File, run_id: &str) -> Option<std::io::Result<()>> {
    let mut held = HELD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if held.contains(output) {
        return None;
    }
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return None,
        Err(TryLockError::Error(e)) => return Some(Err(e)),
    }
    held.insert(output.to_string());
    // Who holds it, for the message of a run that waits in vain; best effort.
    let note = format!(
        "run {run_id}, process {}, since {}\n{output}\n",
        std::process::id(),
        chrono::Utc::now().to_rfc3339()
    );
    let mut f = file;
    let _ = f.set_len(0).and_then(|()| f.write_all(note.as_bytes()));
    Some(Ok(()))
}

/// The holder's note in a lock file, or a generic description.
fn holder(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.lines().next().map(str::to_string))
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "another run".to_string())
}

/// A local path made canonical for an output id: its deepest existing ancestor resolved (links,
/// `..`), the rest appended as written.
pub fn canonical_local(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut current = path.to_path_buf();
    loop {
        if let Ok(real) = current.canonicalize() {
            return rest.iter().rev().fold(real, |acc, part| acc.join(part));
        }
        match (
            current.file_name().map(std::borrow::ToOwned::to_owned),
            current.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                current = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// A relative folder in normal form: no empty or `.` segments, no trailing slash.
pub fn normal_folder(path: &str) -> String {
    path.split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_held_output_is_refused_after_the_wait_and_free_once_released() {
        let root = tempfile::tempdir().unwrap();
        let cancel = CancellationToken::new();
        let id = || "file:///data/out/sales".to_string();
        let first = lock_outputs(root.path(), [id()], "run-a", Duration::ZERO, &cancel)
            .await
            .unwrap();
        let started = Instant::now();
        let err = lock_outputs(
            root.path(),
            [id()],
            "run-b",
            Duration::from_millis(300),
            &cancel,
        )
        .await
        .unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(300));
        let text = err.to_string();
        assert!(text.contains("file:///data/out/sales"), "{text}");
        assert!(text.contains("run run-a"), "{text}");
        assert!(text.contains(LOCK_WAIT_ENV), "{text}");
        drop(first);
        lock_outputs(root.path(), [id()], "run-b", Duration::ZERO, &cancel)
            .await
            .unwrap();
    }

    #[test]
    fn canonical_local_resolves_the_existing_part() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("a")).unwrap();
        let real = root.path().canonicalize().unwrap();
        assert_eq!(
            canonical_local(&root.path().join("a/../a/new/x")),
            real.join("a/new/x")
        );
        assert_eq!(normal_folder("./sales//2024/"), "sales/2024");
    }
}
