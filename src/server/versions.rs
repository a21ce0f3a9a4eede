//! Versions of the project's files for serve mode: `pipelines/`, `queries/` and `config/` are
//! copied, validated as a whole, and swapped in only when valid; running jobs keep their copy.
//! Each server keeps its copies under `.bridge/versions/{owner id}/` (the owner id of the job
//! store, unique per process start, so servers in containers, all pid 1, never share a folder);
//! folders of servers that are not alive any more are removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use sha2::{Digest, Sha256};

use crate::pipeline::Project;
use crate::pipeline::schedule::Schedule;
use crate::pipeline::spec::parse_pipeline;
use crate::pipeline::validate::validate;

/// The folders a version is made of.
pub const WATCHED_DIRS: [&str; 3] = ["pipelines", "queries", "config"];

/// One validated copy of the project's files.
#[derive(Debug)]
pub struct ProjectVersion {
    /// Hash of the files' names and contents (first 12 hex digits).
    pub id: String,
    /// The project reading from the copy (outputs still resolve against the real root).
    pub project: Project,
    /// Pipeline files of this version, by pipeline name.
    pub pipelines: BTreeMap<String, PipelineEntry>,
    /// When this version was loaded.
    pub loaded_at: chrono::DateTime<chrono::Utc>,
    dir: PathBuf,
}

/// A pipeline of a version.
#[derive(Debug, Clone)]
pub struct PipelineEntry {
    /// The file in the version's copy.
    pub file: PathBuf,
    /// The file as users know it, e.g. `pipelines/demo.yaml`.
    pub display: PathBuf,
    /// Its schedule, if it has one.
    pub schedule: Option<Schedule>,
    /// Countries its scheduled runs are for.
    pub countries: Vec<String>,
}

impl ProjectVersion {
    /// A pipeline by name or by file name (`demo`, `demo.yaml`, `pipelines/demo.yaml`).
    pub fn pipeline(&self, name: &str) -> Option<(&str, &PipelineEntry)> {
        if let Some((k, v)) = self.pipelines.get_key_value(name) {
            return Some((k.as_str(), v));
        }
        let wanted = name.trim_start_matches("pipelines/");
        self.pipelines.iter().find_map(|(k, v)| {
            let file = v.display.file_name()?.to_str()?;
            let stem = v.display.file_stem()?.to_str()?;
            (file == wanted || stem == wanted).then_some((k.as_str(), v))
        })
    }
}

impl Drop for ProjectVersion {
    fn drop(&mut self) {
        // The last job using this version has finished and a newer one is current.
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::debug!(dir = %self.dir.display(), error = %e, "could not remove old version");
        }
    }
}

/// The current version and the last reload error.
pub struct Versions {
    root: PathBuf,
    /// The live project every version copies (with its Databricks profile).
    base: Project,
    store: PathBuf,
    current: ArcSwapOption<ProjectVersion>,
    error: Mutex<Option<String>>,
    /// Serialises reloads (the watcher and startup).
    reloading: tokio::sync::Mutex<()>,
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reload {
    /// The files changed and are valid: this version is now current.
    Swapped(String),
    /// Nothing changed.
    Unchanged,
}

impl Versions {
    /// Versions of `base` (the live project), copied under `root/.bridge/versions/{owner}/`.
    pub fn new(base: Project, owner: &str) -> crate::Result<Versions> {
        let root = base.root().to_path_buf();
        let root = root.as_path();
        let store = versions_dir(root).join(owner);
        if store.exists() {
            std::fs::remove_dir_all(&store).map_err(|e| crate::Error::io(&store, e))?;
        }
        std::fs::create_dir_all(&store).map_err(|e| crate::Error::io(&store, e))?;
        Ok(Versions {
            root: root.to_path_buf(),
            base,
            store,
            current: ArcSwapOption::empty(),
            error: Mutex::new(None),
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    /// Removes the copies of servers not in `live_owners` (asked after the folders are listed,
    /// so a server that registered before creating its folder is always among them). Folders
    /// named by a process id were left by servers older than owner ids: removed when that
    /// process no longer exists (Linux `/proc`; elsewhere they are left alone).
    pub fn remove_stale_copies(
        &self,
        live_owners: impl FnOnce() -> crate::Result<Vec<String>>,
    ) -> crate::Result<usize> {
        let all = versions_dir(&self.root);
        let Ok(entries) = std::fs::read_dir(&all) else {
            return Ok(0);
        };
        let names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let live = live_owners()?;
        let own = self.store.file_name().map(|n| n.to_string_lossy());
        let mut removed = 0;
        for name in names {
            let keep = match name.parse::<u32>() {
                Ok(pid) => {
                    !Path::new("/proc/self").exists() || Path::new(&format!("/proc/{pid}")).exists()
                }
                Err(_) => live.contains(&name) || own.as_deref() == Some(name.as_str()),
            };
            if !keep && std::fs::remove_dir_all(all.join(&name)).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes the copies of these dead servers.
    pub fn remove_copies_of(&self, dead_owners: &[String]) {
        let all = versions_dir(&self.root);
        for owner in dead_owners {
            let dir = all.join(owner);
            if dir.exists()
                && let Err(e) = std::fs::remove_dir_all(&dir)
            {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove a dead server's copies");
            }
        }
    }

    /// Removes this server's own copies, on a clean shutdown once no job runs.
    pub fn remove_own_copies(&self) {
        if let Err(e) = std::fs::remove_dir_all(&self.store) {
            tracing::debug!(dir = %self.store.display(), error = %e, "could not remove the server's copies");
        }
    }

    /// The version new jobs use, if a valid one was ever loaded.
    pub fn current(&self) -> Option<Arc<ProjectVersion>> {
        self.current.load_full()
    }

    /// The live project (read when no version is loaded yet).
    pub fn base(&self) -> &Project {
        &self.base
    }

    /// Why the files on disk are not the current version, if they are invalid.
    pub fn error(&self) -> Option<String> {
        self.error.lock().expect("versions lock").clone()
    }

    /// Copies and validates the files; swaps them in if valid, keeps the current version (and
    /// records the error) if not.
    pub async fn reload(&self) -> Result<Reload, VersionError> {
        let _guard = self.reloading.lock().await;
        let base = self.base.clone();
        let store = self.store.clone();
        let current_id = self.current().map(|v| v.id.clone());
        let loaded =
            tokio::task::spawn_blocking(move || load(&base, &store, current_id.as_deref()))
                .await
                .map_err(VersionError::Task)?;
        let mut error = self.error.lock().expect("versions lock");
        match loaded {
            Ok(Some(version)) => {
                let id = version.id.clone();
                tracing::info!(version = %id, pipelines = version.pipelines.len(), "project files loaded");
                self.current.store(Some(Arc::new(version)));
                *error = None;
                Ok(Reload::Swapped(id))
            }
            Ok(None) => {
                *error = None;
                Ok(Reload::Unchanged)
            }
            Err(e) => {
                tracing::error!(error = %e, "project files are invalid; keeping the previous version");
                *error = Some(e.to_string());
                Err(e)
            }
        }
    }
}

/// Why the project files on disk could not become a version (the current one stays in use).
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    /// Some pipelines or queries are invalid: every error `bridge validate` reports.
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    /// A pipeline file does not parse, or the project cannot be read.
    #[error(transparent)]
    Project(#[from] crate::Error),
    /// A pipeline's `schedule:` is not a cron expression.
    #[error("{}: schedule: {source}", file.display())]
    Schedule {
        file: PathBuf,
        #[source]
        source: crate::pipeline::schedule::ScheduleError,
    },
    /// Two pipeline files use one name.
    #[error("{}: pipeline name `{name}` is also used by {}", file.display(), other.display())]
    DuplicateName {
        file: PathBuf,
        name: String,
        other: PathBuf,
    },
    /// A file could not be read or copied.
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The watched folders could not be listed.
    #[error(transparent)]
    Walk(walkdir::Error),
    /// The reload task itself failed.
    #[error("reload task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

impl VersionError {
    fn file(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        VersionError::File {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}

fn versions_dir(root: &Path) -> PathBuf {
    root.join(".bridge").join("versions")
}

/// Hashes the files; if they differ from `current`, copies and validates them.
fn load(
    base: &Project,
    store: &Path,
    current: Option<&str>,
) -> Result<Option<ProjectVersion>, VersionError> {
    let root = base.root();
    let files = project_files(root)?;
    let mut hash = Sha256::new();
    let mut contents = Vec::with_capacity(files.len());
    for rel in &files {
        let bytes = std::fs::read(root.join(rel)).map_err(|e| VersionError::file(rel, e))?;
        hash.update(rel.to_string_lossy().as_bytes());
        hash.update([0]);
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(&bytes);
        contents.push(bytes);
    }
    let id = hex::encode(&hash.finalize()[..6]);
    if current == Some(id.as_str()) {
        return Ok(None);
    }
    let dir = store.join(format!(
        "{id}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    for (rel, bytes) in files.iter().zip(&contents) {
        let target = dir.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| VersionError::file(parent, e))?;
        }
        std::fs::write(&target, bytes).map_err(|e| VersionError::file(&target, e))?;
    }
    for sub in WATCHED_DIRS {
        // A missing folder stays missing in the copy, but `pipelines/` must exist to be listed.
        if sub == "pipelines" {
            std::fs::create_dir_all(dir.join(sub))
                .map_err(|e| VersionError::file(dir.join(sub), e))?;
        }
    }
    let version = ProjectVersion {
        id,
        project: base.clone().with_snapshot(&dir),
        pipelines: BTreeMap::new(),
        loaded_at: chrono::Utc::now(),
        dir,
    };
    // Dropping `version` on error removes the copy.
    check(version).map(Some)
}

/// Validates every pipeline for every country and every query, and indexes pipelines by name.
fn check(mut version: ProjectVersion) -> Result<ProjectVersion, VersionError> {
    let report = validate(&version.project, &[])?;
    if !report.errors.is_empty() {
        return Err(VersionError::Invalid(report.errors));
    }
    let mut by_name: BTreeMap<String, PipelineEntry> = BTreeMap::new();
    for file in version.project.pipeline_files()? {
        let display = version.project.display_path(&file);
        let text = std::fs::read_to_string(&file).map_err(|e| VersionError::file(&display, e))?;
        let spec = parse_pipeline(&display, &text)?;
        let schedule = spec
            .schedule
            .as_deref()
            .map(Schedule::parse)
            .transpose()
            .map_err(|source| VersionError::Schedule {
                file: display.clone(),
                source,
            })?;
        if let Some(other) = by_name.get(&spec.name) {
            return Err(VersionError::DuplicateName {
                file: display.clone(),
                name: spec.name,
                other: other.display.clone(),
            });
        }
        by_name.insert(
            spec.name,
            PipelineEntry {
                file,
                display,
                schedule,
                countries: spec.countries,
            },
        );
    }
    version.pipelines = by_name;
    Ok(version)
}

/// Files under the watched folders, relative to the root, sorted; editor leftovers skipped.
fn project_files(root: &Path) -> Result<Vec<PathBuf>, VersionError> {
    let mut files = Vec::new();
    for sub in WATCHED_DIRS {
        let dir = root.join(sub);
        if !dir.is_dir() {
            continue;
        }
        for entry in walkdir::WalkDir::new(&dir).follow_links(true) {
            let entry = entry.map_err(VersionError::Walk)?;
            if !entry.file_type().is_file() || is_editor_leftover(entry.path()) {
                continue;
            }
            // WalkDir yields paths under `dir`, itself under `root`.
            let rel = entry
                .path()
                .strip_prefix(root)
                .unwrap_or(entry.path())
                .to_path_buf();
            files.push(rel);
        }
    }
    files.sort();
    Ok(files)
}

/// Swap files, backups and hidden files that editors write next to the real ones.
pub fn is_editor_leftover(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    name.starts_with('.') || name.ends_with('~') || name.ends_with(".swp") || name.ends_with(".tmp")
}
