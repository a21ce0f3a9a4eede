//! What a volume sink records: the `_SUCCESS` manifest readers follow, the run record
//! (`_RUN`) in its staging folder, and the sweep that undoes what dead runs left.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::commit::remove_prefix;
use super::drift::ManifestColumn;
use super::{SUCCESS_FILE, child, join};
use crate::sinks::lock::normal_folder;

/// A file written in the staging folder.
#[derive(Debug, Clone, Serialize)]
pub(super) struct StagedFile {
    /// Path relative to the sink's folder.
    #[serde(rename = "path")]
    pub(super) relative: String,
    pub(super) rows: u64,
    pub(super) bytes: u64,
}

/// Contents of the `_SUCCESS` manifest.
#[derive(Debug, Serialize)]
pub(super) struct Manifest<'a> {
    pub(super) run_id: &'a str,
    pub(super) pipeline: &'a str,
    pub(super) step: &'a str,
    pub(super) country: Option<&'a str>,
    pub(super) committed_at: String,
    pub(super) rows: u64,
    pub(super) bytes: u64,
    pub(super) files: &'a [StagedFile],
    /// Values per `step.column` whose timestamp digits below the microsecond were dropped on
    /// the way to these files (by this sink or the sources it reads).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) truncated_sub_microsecond: BTreeMap<String, u64>,
    /// The files' columns (the next run compares its own with them).
    pub(super) columns: &'a [ManifestColumn],
}

/// What the bridge reads back from a previous `_SUCCESS`: whose it is and its files.
#[derive(Debug, Deserialize)]
pub(super) struct PreviousManifest {
    pub(super) run_id: String,
    #[serde(default)]
    files: Vec<ListedFile>,
    /// The files' columns (absent from manifests written before they were recorded).
    #[serde(default)]
    pub(super) columns: Option<Vec<ManifestColumn>>,
}

#[derive(Debug, Deserialize)]
struct ListedFile {
    path: String,
}

impl PreviousManifest {
    pub(super) fn paths(&self) -> Vec<String> {
        self.files.iter().map(|f| f.path.clone()).collect()
    }
}

/// The manifest of a folder, `None` when there is none (or it is not a bridge manifest, which
/// then protects nothing and is replaced).
pub(super) async fn read_manifest(
    store: &Arc<dyn ObjectStore>,
    folder: &ObjPath,
) -> std::result::Result<Option<PreviousManifest>, object_store::Error> {
    let path = join(folder, SUCCESS_FILE);
    let bytes = match store.get(&path).await {
        Ok(got) => got.bytes().await?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    match serde_json::from_slice(&bytes) {
        Ok(m) => Ok(Some(m)),
        Err(e) => {
            tracing::warn!(manifest = %path, error = %e, "not a bridge manifest; no earlier file will be removed");
            Ok(None)
        }
    }
}

/// A run's record in its staging folder (`.bridge-staging/{run}/{step}/_RUN`): which output it
/// writes, the files it puts (or is about to put) in the folder, and the files of the previous
/// manifest that go once its own manifest is in. A run that finds the record of a dead run for
/// its output uses it to undo (or finish) that run's commit.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct RunRecord {
    pub(super) run_id: String,
    pub(super) step: String,
    /// The sink's folder, relative to the destination.
    pub(super) path: String,
    pub(super) files: Vec<String>,
    pub(super) replaces: Vec<String>,
}

/// Name of the run record in a staging folder.
const RUN_RECORD: &str = "_RUN";

impl RunRecord {
    pub(super) async fn write(
        &self,
        store: &Arc<dyn ObjectStore>,
        group: &ObjPath,
    ) -> std::result::Result<(), object_store::Error> {
        let body = serde_json::to_vec_pretty(self).expect("run record serializes");
        store
            .put(&child(group, RUN_RECORD), PutPayload::from(body))
            .await
            .map(drop)
    }
}

/// The short run id in file names: the first 8 hex digits of a UUID run id (of its SHA-256
/// otherwise), changed if a file of the previous manifest already carries it (a reused run id),
/// so a commit never overwrites a file that the previous manifest lists.
pub(super) fn file_tag(run_id: &str, previous: &[String]) -> String {
    let hashed = |text: &str| hex::encode(&Sha256::digest(text.as_bytes())[..4]);
    let mut tag = match uuid::Uuid::parse_str(run_id) {
        Ok(id) => id.simple().to_string()[..8].to_string(),
        Err(_) => hashed(run_id),
    };
    let mut attempt = 0;
    while previous.iter().any(|p| p.contains(&format!("-{tag}-"))) {
        attempt += 1;
        tag = hashed(&format!("{run_id}#{attempt}"));
    }
    tag
}

/// The local folders a dead run may have left files in, besides the store.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct LocalFolders<'a> {
    /// Where a volume's files are spooled before their upload.
    pub spool_root: Option<&'a std::path::Path>,
    /// The folder of a local destination (the store's root).
    pub local_root: Option<&'a std::path::Path>,
}

/// Removes what runs that died left for this output: their staging folders and, from their run
/// records, the files they put in the folder without committing them (or, when their manifest is
/// the current one, the previous files they did not get to remove). Staging folders of other
/// outputs, of this run, and without a record are left alone; a live run's staging is never seen
/// here, since it holds this output's lock. Best effort: failures are logged.
pub(super) async fn sweep_stale_staging(
    store: &Arc<dyn ObjectStore>,
    staging_root: &ObjPath,
    folder: &str,
    run_id: &str,
    target: &ObjPath,
    current: Option<&PreviousManifest>,
    disk: LocalFolders<'_>,
) {
    let LocalFolders {
        spool_root,
        local_root,
    } = disk;
    let objects: Vec<ObjPath> = match store
        .list(Some(staging_root))
        .map_ok(|m| m.location)
        .try_collect()
        .await
    {
        Ok(objects) => objects,
        Err(e) => {
            tracing::warn!(prefix = %staging_root, error = %e, "could not list staging folders");
            return;
        }
    };
    let groups: BTreeSet<(String, String)> = objects
        .iter()
        .filter_map(|o| {
            let mut parts = o.prefix_match(staging_root)?;
            let run = parts.next()?.as_ref().to_string();
            let step = parts.next()?.as_ref().to_string();
            parts.next().map(|_| (run, step))
        })
        .collect();
    let current_files: BTreeSet<String> = current
        .map(PreviousManifest::paths)
        .unwrap_or_default()
        .into_iter()
        .collect();
    for (run, step) in groups.into_iter().filter(|(run, _)| run != run_id) {
        let group = child(&child(staging_root, &run), &step);
        let record: RunRecord = match store.get(&child(&group, RUN_RECORD)).await {
            Ok(got) => match got.bytes().await.map(|b| serde_json::from_slice(&b)) {
                Ok(Ok(record)) => record,
                _ => continue,
            },
            Err(_) => continue,
        };
        if normal_folder(&record.path) != folder {
            continue;
        }
        let committed = current.is_some_and(|m| m.run_id == record.run_id);
        let leftovers = if committed {
            &record.replaces
        } else {
            &record.files
        };
        tracing::info!(run = %record.run_id, step = %record.step, committed, files = leftovers.len(), "removing what a run that did not finish left");
        let mut clean = true;
        for file in leftovers.iter().filter(|f| !current_files.contains(*f)) {
            match store.delete(&join(target, file)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    tracing::warn!(file = %file, error = %e, "could not remove a file of a run that did not finish");
                    clean = false;
                }
            }
        }
        if clean {
            remove_prefix(store, &group).await;
            if let Some(root) = local_root {
                // A local store keeps an upload cut short as `{file}#{n}`, which it does not
                // list (so `remove_prefix` cannot see it): the group's folder goes as a whole.
                let _ = std::fs::remove_dir_all(root.join(group.as_ref()));
            }
            if let Some(spool) = spool_root {
                let _ = std::fs::remove_dir_all(spool.join(&run).join(&step));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::local::LocalFileSystem;

    #[tokio::test]
    async fn a_dead_runs_unlisted_partial_uploads_are_swept_with_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let staging_root = ObjPath::from(".bridge-staging");
        let group = child(&child(&staging_root, "dead-run"), "out");
        RunRecord {
            run_id: "dead-run".into(),
            step: "out".into(),
            path: "numbers".into(),
            files: Vec::new(),
            replaces: Vec::new(),
        }
        .write(&store, &group)
        .await
        .unwrap();
        // What object_store leaves of a multipart upload cut short by a kill.
        let partial = dir
            .path()
            .join(".bridge-staging/dead-run/out/out-00000.parquet#1");
        std::fs::write(&partial, b"half a file").unwrap();
        let target = ObjPath::from("numbers");
        sweep_stale_staging(
            &store,
            &staging_root,
            "numbers",
            "this-run",
            &target,
            None,
            LocalFolders {
                spool_root: None,
                local_root: Some(dir.path()),
            },
        )
        .await;
        assert!(!partial.exists());
        assert!(!dir.path().join(".bridge-staging/dead-run/out").exists());
    }
}
