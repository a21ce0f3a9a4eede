//! `volume` sink: Parquet files under `destination/path/`, written through object_store.
//!
//! Layout: `path/[column=value/]{file_name}-{tag}-{n:05}.parquet` and `path/_SUCCESS` (JSON: run
//! id, pipeline, step, files with rows and bytes). `{tag}` is a short run id ([`file_tag`]), so
//! two runs never write the same file name. The run holds the folder's lock
//! ([`crate::sinks::lock`]) from before the run's sources open until its commit is done.
//!
//! Staging: files are written under `destination/.bridge-staging/{run}/{step}/`, next to a run
//! record (`_RUN`: the folder, the files the run puts there, the previous files it replaces).
//! Commit, in this order: the new files are renamed in; the new `_SUCCESS` is written aside and
//! renamed over the old one (on object stores and the Files API, written in one request, which
//! replaces the object whole); then the files listed by the *previous* `_SUCCESS` are deleted,
//! and only those: other files in the folder are never touched. At every instant a reader of
//! `_SUCCESS` finds all its files. A commit that fails before the new manifest is in removes the
//! new files and leaves the previous set and manifest as they were. A plain folder scan (e.g.
//! Spark reading `*.parquet`) sees both sets between the renames and the deletes.
//!
//! A run that takes the lock first removes what dead runs left for this folder: their staging
//! folders and, from their run records, files they put in the folder but never committed.
//!
//! A `/Volumes/catalog/schema/volume/...` destination goes through the Databricks Files API, with
//! the same layout and order. The Files API cannot rename, so such runs write their files on local
//! disk and upload each one (streamed from disk, retried) under its final name while staging;
//! the commit only writes `_SUCCESS` and deletes the previous files. A plain scan of such a
//! folder sees the new files from their upload on; readers that follow `_SUCCESS` do not.

mod commit;
pub mod config;
mod dictionary;
mod drift;
mod manifest;
mod partition;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::{Schema, SchemaRef};
use deltalake::datafusion::prelude::{DataFrame, SessionContext};
use futures::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::basic::{Compression as ParquetCompression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::databricks::probe::{OpenError, open_client};
use crate::databricks::{DatabricksClient, VolumeStore};
use crate::error::{Error, Result};
use crate::output_types::{OutputSchema, Target};
use crate::pipeline::metrics::StepMetrics;
use crate::pipeline::project::Project;
use crate::pipeline::run::RunInfo;
use crate::sinks::lock::{canonical_local, normal_folder};
use crate::sinks::{Sink, StagedOutput, check_columns};
use commit::{Mover, StagedVolume};
use config::{Compression, VolumeSinkSpec};
use manifest::{LocalFolders, RunRecord, StagedFile, file_tag, read_manifest, sweep_stale_staging};
use partition::{PartitionWriter, split_by_partition};

/// Default rows per row group: 262,144, Polars' default too (about 9 MB of zstd Parquet for the
/// benchmark's 10 mixed columns). Spark and Photon split and read Parquet by row group, of any
/// size. Each group is encoded in memory before it is written, so 1,048,576-row groups held
/// 1.3x more memory at 10M rows than at 1M (benches/RESULTS.md, 2026-12-07).
pub const DEFAULT_ROW_GROUP_SIZE: usize = 262_144;
/// Name of the manifest written last.
pub const SUCCESS_FILE: &str = "_SUCCESS";
/// Folder (under the destination) where runs stage their files.
pub const STAGING_DIR: &str = ".bridge-staging";

/// Writes Parquet files into a volume folder.
#[derive(Debug)]
pub struct VolumeSink {
    step: String,
    spec: VolumeSinkSpec,
    run: RunInfo,
    /// Where the destination is, for messages.
    destination: String,
    /// Local root to create before writing, for local destinations.
    local_root: Option<std::path::PathBuf>,
    /// The workspace, for `/Volumes/...` destinations (written through the Files API).
    databricks: Option<crate::databricks::DatabricksSettings>,
}

impl VolumeSink {
    /// A volume sink for a step.
    pub fn new(
        project: &Project,
        step: &str,
        spec: &VolumeSinkSpec,
        run: &RunInfo,
    ) -> Result<Self> {
        // Planning refuses it with the file and line; a sink built another way is refused too,
        // since its commit deletes every other file under `destination/path`.
        crate::pipeline::project::check_owned_folder(&spec.path)
            .map_err(|m| Error::step(step, format!("sink.path: {m}")))?;
        let volume = is_volume_path(&spec.destination);
        let databricks = volume.then(|| project.databricks_settings()).transpose()?;
        let local_root = (!spec.destination.contains("://") && !volume)
            .then(|| project.resolve(&spec.destination));
        let destination = local_root
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| spec.destination.clone());
        Ok(VolumeSink {
            step: step.to_string(),
            spec: spec.clone(),
            run: run.clone(),
            destination,
            local_root,
            databricks,
        })
    }

    async fn open_store(
        &self,
    ) -> Result<(Arc<dyn ObjectStore>, ObjPath, Option<DatabricksClient>)> {
        if let Some(root) = &self.local_root {
            std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
            let store = LocalFileSystem::new_with_prefix(root)
                .map_err(|e| Error::step(&self.step, e))?
                .with_automatic_cleanup(true);
            return Ok((Arc::new(store), ObjPath::default(), None));
        }
        if let Some(settings) = &self.databricks {
            // At once: why the workspace cannot be reached, before any upload is retried.
            let client = open_client(settings)
                .await
                .map_err(|e| e.into_error(&self.step))?;
            let (store, prefix) =
                VolumeStore::for_destination(client.clone(), &self.spec.destination)
                    .map_err(|e| Error::step(&self.step, format!("destination {e}")))?;
            return Ok((Arc::new(store), prefix, Some(client)));
        }
        let url = url::Url::parse(&self.spec.destination).map_err(|e| {
            Error::step(
                &self.step,
                format!("destination `{}`: {e}", self.spec.destination),
            )
        })?;
        let (store, prefix) =
            object_store::parse_url_opts(&url, std::env::vars()).map_err(|e| {
                Error::Invalid(format!(
                    "step `{}`: cannot open destination `{}`: {e}",
                    self.step, self.spec.destination
                ))
            })?;
        Ok((Arc::from(store), prefix, None))
    }

    fn writer_properties(&self) -> WriterProperties {
        let compression = match self.spec.compression {
            Compression::Zstd => ParquetCompression::ZSTD(ZstdLevel::default()),
            Compression::Snappy => ParquetCompression::SNAPPY,
            Compression::Gzip => ParquetCompression::GZIP(Default::default()),
            Compression::Lz4 => ParquetCompression::LZ4_RAW,
            Compression::None => ParquetCompression::UNCOMPRESSED,
        };
        WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_row_count(Some(
                self.spec
                    .row_group_size
                    .unwrap_or(DEFAULT_ROW_GROUP_SIZE)
                    .max(1),
            ))
            .build()
    }
}

#[async_trait]
impl Sink for VolumeSink {
    fn output(&self) -> Result<String> {
        let folder = normal_folder(&self.spec.path);
        Ok(if let Some(root) = &self.local_root {
            format!("file://{}/{folder}", canonical_local(root).display())
        } else if let Some(settings) = &self.databricks {
            format!(
                "databricks:{}{}/{folder}",
                settings
                    .resolve()
                    .map_err(|e| OpenError::Config(e).into_error(&self.step))?
                    .host,
                self.spec.destination.trim_end_matches('/')
            )
        } else {
            format!("{}/{folder}", self.spec.destination.trim_end_matches('/'))
        })
    }

    fn check(&self, schema: &Schema) -> Result<()> {
        OutputSchema::plan(
            &self.step,
            schema,
            Target::Parquet,
            self.spec.sub_microsecond,
        )?;
        check_columns(
            &self.step,
            schema,
            "partition_by",
            self.spec.partition_by.iter(),
        )?;
        if let Some(col) = &self.spec.partition_by
            && schema.fields().len() == 1
        {
            return Err(Error::step(
                &self.step,
                format!("partition_by: `{col}` is the only column; nothing would be left to write"),
            ));
        }
        Ok(())
    }

    async fn stage(
        &self,
        _ctx: &SessionContext,
        input: DataFrame,
        metrics: Arc<StepMetrics>,
    ) -> Result<Box<dyn StagedOutput>> {
        let (store, prefix, databricks) = self.open_store().await?;
        let target = join(&prefix, &self.spec.path);
        if let Some(client) = &databricks {
            // Check now that the folder can be written (the volume exists and the caller may
            // write it), so a bad destination fails before anything is uploaded.
            let folder = format!("/{target}");
            client
                .create_directory(&folder)
                .await
                .map_err(|e| Error::step(&self.step, format!("destination {folder}: {e}")))?;
        }
        // This run holds the output's lock: the manifest cannot change until it is done, and no
        // live run stages for this output.
        let previous = read_manifest(&store, &target).await.map_err(|e| {
            Error::step(
                &self.step,
                format!("reading the previous {SUCCESS_FILE}: {e}"),
            )
        })?;
        // The columns written, against those of the folder's previous run, before anything is.
        let columns = drift::columns_of(
            &OutputSchema::plan(
                &self.step,
                input.schema().as_arrow(),
                Target::Parquet,
                self.spec.sub_microsecond,
            )?
            .schema(),
        );
        if let Some(before) = previous.as_ref().and_then(|m| m.columns.as_ref()) {
            drift::Drift::between(before, &columns).apply(
                &self.step,
                &format!(
                    "{}/{}",
                    self.spec.destination.trim_end_matches('/'),
                    self.spec.path
                ),
                self.spec.schema_evolution,
                &metrics,
            )?;
        }
        let staging_root = child(&prefix, STAGING_DIR);
        let spool_root = databricks.is_some().then(spool_root);
        sweep_stale_staging(
            &store,
            &staging_root,
            &normal_folder(&self.spec.path),
            &self.run.run_id,
            &target,
            previous.as_ref(),
            LocalFolders {
                spool_root: spool_root.as_deref(),
                local_root: self.local_root.as_deref(),
            },
        )
        .await;
        let group = child(&child(&staging_root, &self.run.run_id), &self.step);
        let previous_files: Vec<String> = previous.map(|m| m.paths()).unwrap_or_default();
        let mut record = RunRecord {
            run_id: self.run.run_id.clone(),
            step: self.step.clone(),
            path: normal_folder(&self.spec.path),
            files: Vec::new(),
            replaces: Vec::new(),
        };
        // Claims the staging folder for this output before anything is written in it.
        record
            .write(&store, &group)
            .await
            .map_err(|e| Error::step(&self.step, format!("staging: {e}")))?;
        // Where files are written before the commit, and how they get to the folder.
        let (staging_store, staging, mover) = match databricks {
            None => (Arc::clone(&store), group.clone(), Mover::Rename),
            Some(client) => {
                // The Files API cannot rename: files are written on local disk, then uploaded
                // under their final (run-unique) names while staging.
                let local = spool_root
                    .expect("set for volumes")
                    .join(&self.run.run_id)
                    .join(&self.step);
                std::fs::create_dir_all(&local).map_err(|e| Error::io(&local, e))?;
                let local_store = LocalFileSystem::new_with_prefix(&local)
                    .map_err(|e| Error::step(&self.step, e))?;
                let local_store: Arc<dyn ObjectStore> = Arc::new(local_store);
                (
                    local_store,
                    ObjPath::default(),
                    Mover::Upload { client, local },
                )
            }
        };
        let mut staged = StagedVolume {
            step: self.step.clone(),
            store,
            staging: staging.clone(),
            group,
            mover,
            target,
            destination: self.destination.clone(),
            files: Vec::new(),
            placed: Vec::new(),
            record: RunRecord::default(),
            local_manifest: self.local_root.is_some(),
            run: self.run.clone(),
            path: self.spec.path.clone(),
            columns,
        };
        let tag = file_tag(&self.run.run_id, &previous_files);
        let written = self
            .write_files(&staging_store, &staging, input, &metrics, &tag)
            .await;
        let files = match written {
            Ok(files) => files,
            Err(e) => {
                Box::new(staged).abort().await;
                return Err(e);
            }
        };
        let new: BTreeSet<&str> = files.iter().map(|f| f.relative.as_str()).collect();
        record.files = files.iter().map(|f| f.relative.clone()).collect();
        record.replaces = previous_files
            .into_iter()
            .filter(|p| !new.contains(p.as_str()))
            .collect();
        staged.files = files;
        staged.record = record;
        if let Err(e) = staged.upload_staged().await {
            Box::new(staged).abort().await;
            return Err(e);
        }
        Ok(Box::new(staged))
    }
}

impl VolumeSink {
    async fn write_files(
        &self,
        store: &Arc<dyn ObjectStore>,
        staging: &ObjPath,
        input: DataFrame,
        metrics: &StepMetrics,
        tag: &str,
    ) -> Result<Vec<StagedFile>> {
        let fail = |e: &dyn std::fmt::Display| Error::step(&self.step, e);
        let task_ctx = Arc::new(input.task_ctx());
        let plan = input
            .create_physical_plan()
            .await
            .map_err(|e| Error::step_from(&self.step, e))?;
        tracing::debug!(step = %self.step, plan = %deltalake::datafusion::physical_plan::displayable(plan.as_ref()).indent(true), "physical plan");
        let mut stream = deltalake::datafusion::physical_plan::execute_stream(plan, task_ctx)
            .map_err(|e| fail(&e))?;
        // Every batch becomes what Databricks reads (checked before staging, in `check`).
        let mut types = OutputSchema::plan(
            &self.step,
            &stream.schema(),
            Target::Parquet,
            self.spec.sub_microsecond,
        )?;
        let schema = types.schema();
        let partition_index = self
            .spec
            .partition_by
            .as_ref()
            .map(|c| schema.index_of(c).expect("checked before staging"));
        let file_schema: SchemaRef = match partition_index {
            Some(i) => {
                let mut fields = schema.fields().to_vec();
                fields.remove(i);
                Arc::new(Schema::new(fields))
            }
            None => schema.clone(),
        };
        let base_name = format!(
            "{}-{tag}",
            self.spec.file_name.as_deref().unwrap_or(&self.step)
        );
        let mut writers: BTreeMap<String, PartitionWriter> = BTreeMap::new();
        let mut done: Vec<StagedFile> = Vec::new();
        let props = self.writer_properties();
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| Error::step_from(&self.step, e))?;
            let batch = types.convert(&batch)?;
            metrics.touch();
            let parts = match partition_index {
                Some(i) => split_by_partition(
                    &batch,
                    i,
                    self.spec.partition_by.as_deref().unwrap_or_default(),
                )
                .map_err(|e| fail(&e))?,
                None => vec![(String::new(), batch)],
            };
            for (dir, part) in parts {
                let writer = writers
                    .entry(dir.clone())
                    .or_insert_with(|| PartitionWriter {
                        dir: dir.clone(),
                        current: None,
                        next_index: 0,
                    });
                let mut offset = 0;
                while offset < part.num_rows() {
                    let room = self
                        .spec
                        .max_rows_per_file
                        .map(|max| max.max(1) - writer.current.as_ref().map_or(0, |c| c.rows))
                        .unwrap_or(usize::MAX);
                    let len = room.min(part.num_rows() - offset);
                    let slice = part.slice(offset, len);
                    let open = writer
                        .open(store, staging, &base_name, &file_schema, &props, &slice)
                        .map_err(|e| fail(&e))?;
                    open.writer.write(&slice).await.map_err(|e| fail(&e))?;
                    open.rows += len;
                    metrics.record(len, 0);
                    offset += len;
                    if self
                        .spec
                        .max_rows_per_file
                        .is_some_and(|max| open.rows >= max.max(1))
                    {
                        done.push(writer.close_current().await.map_err(|e| fail(&e))?);
                    }
                }
            }
        }
        for writer in writers.values_mut() {
            if writer.current.is_some() {
                done.push(writer.close_current().await.map_err(|e| fail(&e))?);
            }
        }
        if done.is_empty() {
            // An empty result still produces one file, so readers see the schema.
            let mut writer = PartitionWriter {
                dir: String::new(),
                current: None,
                next_index: 0,
            };
            writer
                .open(
                    store,
                    staging,
                    &base_name,
                    &file_schema,
                    &props,
                    &RecordBatch::new_empty(file_schema.clone()),
                )
                .map_err(|e| fail(&e))?;
            done.push(writer.close_current().await.map_err(|e| fail(&e))?);
        }
        for file in &mut done {
            let meta = store
                .head(&join(staging, &file.relative))
                .await
                .map_err(|e| fail(&e))?;
            file.bytes = meta.size;
        }
        let bytes: u64 = done.iter().map(|f| f.bytes).sum();
        metrics.record(0, bytes as usize);
        self.run.truncations.set(&self.step, 0, types.truncated());
        Ok(done)
    }
}

/// Whether a destination is a Unity Catalog volume path (`/Volumes/...`), written through the
/// Databricks Files API.
pub fn is_volume_path(destination: &str) -> bool {
    destination.starts_with("/Volumes/")
}

fn child(base: &ObjPath, part: &str) -> ObjPath {
    base.clone().join(part)
}

fn join(base: &ObjPath, relative: &str) -> ObjPath {
    relative
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .fold(base.clone(), deltalake::Path::join)
}

/// Local folder where `/Volumes/...` sinks write their files before uploading them.
fn spool_root() -> std::path::PathBuf {
    std::env::temp_dir().join("bridge-staging")
}
