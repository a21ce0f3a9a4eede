//! A volume sink's staged files and their commit: files renamed (or uploaded) in, then the
//! manifest, then the previous manifest's files removed.

use std::sync::Arc;

use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::manifest::{Manifest, RunRecord, StagedFile, read_manifest};
use super::{SUCCESS_FILE, child, join};
use crate::databricks::DatabricksClient;
use crate::databricks::files::UploadBody;
use crate::error::{Error, Result};
use crate::pipeline::run::RunInfo;
use crate::sinks::{CommitPhase, StagedOutput};

/// How staged files get into the folder.
pub(super) enum Mover {
    /// One rename per file at commit, inside the destination's store.
    Rename,
    /// Files staged in a local folder are uploaded through the Databricks Files API while
    /// staging (under their final, run-unique names); the commit only writes the manifest.
    Upload {
        client: DatabricksClient,
        local: std::path::PathBuf,
    },
}

/// Files staged by a volume sink, waiting for the run to commit.
pub(super) struct StagedVolume {
    pub(super) step: String,
    /// The destination's store.
    pub(super) store: Arc<dyn ObjectStore>,
    /// Where the files were staged: in the destination's store (renamed in at commit) or in the
    /// local folder of [`Mover::Upload`].
    pub(super) staging: ObjPath,
    /// This run's staging folder in the destination (its run record).
    pub(super) group: ObjPath,
    pub(super) mover: Mover,
    pub(super) target: ObjPath,
    pub(super) destination: String,
    pub(super) path: String,
    pub(super) files: Vec<StagedFile>,
    /// Files already put in the folder (and to remove again if the run does not commit).
    pub(super) placed: Vec<ObjPath>,
    pub(super) record: RunRecord,
    /// Whether the manifest can be written aside and renamed over the old one (local folders);
    /// object stores and the Files API replace an object atomically by writing it.
    pub(super) local_manifest: bool,
    pub(super) run: RunInfo,
    /// The columns written, recorded in the manifest.
    pub(super) columns: Vec<super::drift::ManifestColumn>,
}

#[async_trait]
impl StagedOutput for StagedVolume {
    fn commit_phase(&self) -> CommitPhase {
        CommitPhase::Publishes
    }

    fn target(&self) -> String {
        format!("volume folder {}/{}", self.destination, self.path)
    }

    /// New files in (each under a new name), then the new manifest replaces the old one in one
    /// step, then the old manifest's files go: at every instant a reader finds a manifest whose
    /// files are all there. A failure before the manifest is replaced removes the new files
    /// again and leaves the previous set as it was.
    async fn commit(mut self: Box<Self>) -> Result<Vec<String>> {
        let fail = |e: object_store::Error| Error::step(&self.step, format!("commit: {e}"));
        if matches!(self.mover, Mover::Rename) {
            let published = async {
                // The record lists the files first, so a run that dies while renaming is undone.
                self.record.write(&self.store, &self.group).await?;
                for file in &self.files {
                    let to = join(&self.target, &file.relative);
                    self.store
                        .rename(&join(&self.staging, &file.relative), &to)
                        .await?;
                    self.placed.push(to);
                }
                Ok::<_, object_store::Error>(())
            }
            .await;
            if let Err(e) = published {
                let e = fail(e);
                self.abort().await;
                return Err(e);
            }
        }
        let manifest = Manifest {
            run_id: &self.run.run_id,
            pipeline: &self.run.pipeline,
            step: &self.step,
            country: self.run.country.as_deref(),
            committed_at: chrono::Utc::now().to_rfc3339(),
            rows: self.files.iter().map(|f| f.rows).sum(),
            bytes: self.files.iter().map(|f| f.bytes).sum(),
            files: &self.files,
            truncated_sub_microsecond: self.run.truncations.for_output(&self.step),
            columns: &self.columns,
        };
        let body =
            PutPayload::from(serde_json::to_vec_pretty(&manifest).expect("manifest serializes"));
        let success = join(&self.target, SUCCESS_FILE);
        let written = if self.local_manifest {
            let aside = child(&self.group, SUCCESS_FILE);
            match self.store.put(&aside, body).await {
                Ok(_) => self.store.rename(&aside, &success).await,
                Err(e) => Err(e),
            }
        } else {
            self.store.put(&success, body).await.map(drop)
        };
        if let Err(e) = written {
            // The write may have happened anyway (a gateway that timed out after the work): look.
            match read_manifest(&self.store, &self.target).await {
                Ok(Some(m)) if m.run_id == self.run.run_id => {
                    tracing::warn!(step = %self.step, error = %e, "the manifest write reported an error, but the new manifest is in");
                }
                Ok(_) => {
                    let e = fail(e);
                    self.abort().await;
                    return Err(e);
                }
                Err(read) => {
                    return Err(Error::CommitUnknown {
                        step: self.step.clone(),
                        message: format!(
                            "{e}; whether the new {SUCCESS_FILE} is in could not be checked \
                             ({read}), so both sets of files are left in place; the next run of \
                             this output removes the set its {SUCCESS_FILE} does not list"
                        ),
                    });
                }
            }
        }
        // Committed. The previous set goes; what cannot be removed now stays listed in the run
        // record, for the next run of this output to remove.
        let mut clean = true;
        for old in &self.record.replaces {
            match self.store.delete(&join(&self.target, old)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    tracing::warn!(file = %old, error = %e, "could not remove a file of the previous run; the next run will");
                    clean = false;
                }
            }
        }
        if clean {
            self.remove_staging().await;
        }
        Ok(self
            .files
            .iter()
            .map(|f| format!("{}/{}/{}", self.destination, self.path, f.relative))
            .collect())
    }

    async fn abort(self: Box<Self>) {
        let mut clean = true;
        for placed in &self.placed {
            match self.store.delete(placed).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    tracing::warn!(file = %placed, error = %e, "could not remove a file of this run; the next run will");
                    clean = false;
                }
            }
        }
        if clean {
            self.remove_staging().await;
        } else if let Mover::Upload { local, .. } = &self.mover {
            let _ = std::fs::remove_dir_all(local);
        }
    }
}

impl StagedVolume {
    /// For the Files API: records the files, then uploads each to its final name (streamed from
    /// disk, retried as a whole) and drops the local copy.
    pub(super) async fn upload_staged(&mut self) -> Result<()> {
        let Mover::Upload { client, local } = &self.mover else {
            return Ok(());
        };
        self.record
            .write(&self.store, &self.group)
            .await
            .map_err(|e| Error::step(&self.step, format!("staging: {e}")))?;
        for file in &self.files {
            let to = join(&self.target, &file.relative);
            let from = local.join(&file.relative);
            // Listed before the upload: a failure part way may still have left the file.
            self.placed.push(to.clone());
            client
                .upload_file(&format!("/{to}"), &UploadBody::File(from.clone()), true)
                .await
                .map_err(|e| Error::step(&self.step, format!("upload of /{to}: {e}")))?;
            let _ = std::fs::remove_file(&from);
        }
        Ok(())
    }

    async fn remove_staging(&self) {
        remove_prefix(&self.store, &self.group).await;
        if let Mover::Upload { client, local } = &self.mover {
            if let Err(e) = std::fs::remove_dir_all(local)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(folder = %local.display(), error = %e, "could not remove the local staging folder");
            }
            // The Files API keeps empty folders: remove this run's (best effort).
            let step = format!("/{}", self.group);
            let _ = client.delete_directory(&step).await;
            if let Some((run, _)) = step.rsplit_once('/') {
                let _ = client.delete_directory(run).await;
            }
        }
    }
}

/// Deletes every object under a prefix (and, for local stores, the emptied run folder).
pub(super) async fn remove_prefix(store: &Arc<dyn ObjectStore>, prefix: &ObjPath) {
    let objects: Vec<ObjPath> = match store
        .list(Some(prefix))
        .map_ok(|m| m.location)
        .try_collect()
        .await
    {
        Ok(objects) => objects,
        Err(e) => {
            tracing::warn!(prefix = %prefix, error = %e, "could not list staged files to remove");
            return;
        }
    };
    for object in objects {
        if let Err(e) = store.delete(&object).await {
            tracing::warn!(object = %object, error = %e, "could not remove a staged file");
        }
    }
}
