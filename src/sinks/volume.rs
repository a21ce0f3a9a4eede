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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use deltalake::arrow::array::{Array, RecordBatch, UInt32Array};
use deltalake::arrow::compute::{cast, take};
use deltalake::arrow::datatypes::{DataType, Schema, SchemaRef};
use deltalake::datafusion::prelude::{DataFrame, SessionContext};
use futures::{StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::async_writer::AsyncArrowWriter;
use parquet::basic::{Compression as ParquetCompression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::databricks::files::UploadBody;
use crate::databricks::{DatabricksClient, VolumeStore};
use crate::error::{Error, Result};
use crate::output_types::{OutputSchema, Target};
use crate::pipeline::metrics::StepMetrics;
use crate::pipeline::project::Project;
use crate::pipeline::run::RunInfo;
use crate::pipeline::spec::{Compression, VolumeSinkSpec};
use crate::sinks::lock::{canonical_local, normal_folder};
use crate::sinks::{CommitPhase, Sink, StagedOutput, check_columns};

/// Default rows per row group.
pub const DEFAULT_ROW_GROUP_SIZE: usize = 1_048_576;
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

    fn open_store(&self) -> Result<(Arc<dyn ObjectStore>, ObjPath, Option<DatabricksClient>)> {
        if let Some(root) = &self.local_root {
            std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
            let store = LocalFileSystem::new_with_prefix(root)
                .map_err(|e| Error::step(&self.step, e))?
                .with_automatic_cleanup(true);
            return Ok((Arc::new(store), ObjPath::default(), None));
        }
        if let Some(settings) = &self.databricks {
            let client = DatabricksClient::new(&settings.resolve()?)?;
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
                settings.resolve()?.host,
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
        let (store, prefix, databricks) = self.open_store()?;
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
        let staging_root = child(&prefix, STAGING_DIR);
        let spool_root = databricks.is_some().then(spool_root);
        sweep_stale_staging(
            &store,
            &staging_root,
            &normal_folder(&self.spec.path),
            &self.run.run_id,
            &target,
            previous.as_ref(),
            spool_root.as_deref(),
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
                        .open(store, staging, &base_name, &file_schema, &props)
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
                .open(store, staging, &base_name, &file_schema, &props)
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

/// Files being written for one partition folder.
struct PartitionWriter {
    dir: String,
    current: Option<OpenFile>,
    next_index: usize,
}

struct OpenFile {
    relative: String,
    writer: AsyncArrowWriter<BufWriter>,
    rows: usize,
}

impl PartitionWriter {
    fn open(
        &mut self,
        store: &Arc<dyn ObjectStore>,
        staging: &ObjPath,
        base_name: &str,
        schema: &SchemaRef,
        props: &WriterProperties,
    ) -> parquet::errors::Result<&mut OpenFile> {
        if self.current.is_none() {
            let name = format!("{base_name}-{:05}.parquet", self.next_index);
            self.next_index += 1;
            let relative = if self.dir.is_empty() {
                name
            } else {
                format!("{}/{name}", self.dir)
            };
            let object = BufWriter::new(Arc::clone(store), join(staging, &relative));
            let writer = AsyncArrowWriter::try_new(object, schema.clone(), Some(props.clone()))?;
            self.current = Some(OpenFile {
                relative,
                writer,
                rows: 0,
            });
        }
        Ok(self.current.as_mut().expect("opened above"))
    }

    async fn close_current(&mut self) -> parquet::errors::Result<StagedFile> {
        let open = self.current.take().expect("a file is open");
        open.writer.close().await?;
        Ok(StagedFile {
            relative: open.relative,
            rows: open.rows as u64,
            bytes: 0,
        })
    }
}

/// Whether a destination is a Unity Catalog volume path (`/Volumes/...`), written through the
/// Databricks Files API.
pub fn is_volume_path(destination: &str) -> bool {
    destination.starts_with("/Volumes/")
}

/// Splits a batch by the values of one column; the column is dropped (it is in the folder name).
fn split_by_partition(
    batch: &RecordBatch,
    index: usize,
    column: &str,
) -> deltalake::arrow::error::Result<Vec<(String, RecordBatch)>> {
    let values = cast(batch.column(index), &DataType::Utf8)?;
    let values = values
        .as_any()
        .downcast_ref::<deltalake::arrow::array::StringArray>()
        .expect("cast to Utf8 gives a StringArray");
    let mut groups: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for row in 0..batch.num_rows() {
        let dir = if values.is_null(row) {
            format!("{column}=__HIVE_DEFAULT_PARTITION__")
        } else {
            format!("{column}={}", escape_partition_value(values.value(row)))
        };
        groups.entry(dir).or_default().push(row as u32);
    }
    let mut schema_fields = batch.schema().fields().to_vec();
    schema_fields.remove(index);
    let schema = Arc::new(Schema::new(schema_fields));
    groups
        .into_iter()
        .map(|(dir, rows)| {
            let indices = UInt32Array::from(rows);
            let columns = batch
                .columns()
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != index)
                .map(|(_, c)| take(c.as_ref(), &indices, None))
                .collect::<deltalake::arrow::error::Result<Vec<_>>>()?;
            Ok((dir, RecordBatch::try_new(schema.clone(), columns)?))
        })
        .collect()
}

/// Percent-encodes what is not safe in a folder name, like Hive does.
fn escape_partition_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' ') {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    if out.is_empty() || out == "." || out == ".." {
        out = out.replace('.', "%2E");
    }
    out
}

fn child(base: &ObjPath, part: &str) -> ObjPath {
    base.clone().join(part)
}

fn join(base: &ObjPath, relative: &str) -> ObjPath {
    relative
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .fold(base.clone(), |acc, p| acc.join(p))
}

/// A file written in the staging folder.
#[derive(Debug, Clone, Serialize)]
struct StagedFile {
    /// Path relative to the sink's folder.
    #[serde(rename = "path")]
    relative: String,
    rows: u64,
    bytes: u64,
}

/// Contents of the `_SUCCESS` manifest.
#[derive(Debug, Serialize)]
struct Manifest<'a> {
    run_id: &'a str,
    pipeline: &'a str,
    step: &'a str,
    country: Option<&'a str>,
    committed_at: String,
    rows: u64,
    bytes: u64,
    files: &'a [StagedFile],
    /// Values per `step.column` whose timestamp digits below the microsecond were dropped on
    /// the way to these files (by this sink or the sources it reads).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    truncated_sub_microsecond: BTreeMap<String, u64>,
}

/// What the bridge reads back from a previous `_SUCCESS`: whose it is and its files.
#[derive(Debug, Deserialize)]
struct PreviousManifest {
    run_id: String,
    #[serde(default)]
    files: Vec<ListedFile>,
}

#[derive(Debug, Deserialize)]
struct ListedFile {
    path: String,
}

impl PreviousManifest {
    fn paths(&self) -> Vec<String> {
        self.files.iter().map(|f| f.path.clone()).collect()
    }
}

/// The manifest of a folder, `None` when there is none (or it is not a bridge manifest, which
/// then protects nothing and is replaced).
async fn read_manifest(
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
struct RunRecord {
    run_id: String,
    step: String,
    /// The sink's folder, relative to the destination.
    path: String,
    files: Vec<String>,
    replaces: Vec<String>,
}

/// Name of the run record in a staging folder.
const RUN_RECORD: &str = "_RUN";

impl RunRecord {
    async fn write(
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

/// Local folder where `/Volumes/...` sinks write their files before uploading them.
fn spool_root() -> std::path::PathBuf {
    std::env::temp_dir().join("bridge-staging")
}

/// The short run id in file names: the first 8 hex digits of a UUID run id (of its SHA-256
/// otherwise), changed if a file of the previous manifest already carries it (a reused run id),
/// so a commit never overwrites a file that the previous manifest lists.
fn file_tag(run_id: &str, previous: &[String]) -> String {
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

/// Removes what runs that died left for this output: their staging folders and, from their run
/// records, the files they put in the folder without committing them (or, when their manifest is
/// the current one, the previous files they did not get to remove). Staging folders of other
/// outputs, of this run, and without a record are left alone; a live run's staging is never seen
/// here, since it holds this output's lock. Best effort: failures are logged.
async fn sweep_stale_staging(
    store: &Arc<dyn ObjectStore>,
    staging_root: &ObjPath,
    folder: &str,
    run_id: &str,
    target: &ObjPath,
    current: Option<&PreviousManifest>,
    spool_root: Option<&std::path::Path>,
) {
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
        .map(|m| m.paths())
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
            if let Some(spool) = spool_root {
                let _ = std::fs::remove_dir_all(spool.join(&run).join(&step));
            }
        }
    }
}

/// How staged files get into the folder.
enum Mover {
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
struct StagedVolume {
    step: String,
    /// The destination's store.
    store: Arc<dyn ObjectStore>,
    /// Where the files were staged: in the destination's store (renamed in at commit) or in the
    /// local folder of [`Mover::Upload`].
    staging: ObjPath,
    /// This run's staging folder in the destination (its run record).
    group: ObjPath,
    mover: Mover,
    target: ObjPath,
    destination: String,
    path: String,
    files: Vec<StagedFile>,
    /// Files already put in the folder (and to remove again if the run does not commit).
    placed: Vec<ObjPath>,
    record: RunRecord,
    /// Whether the manifest can be written aside and renamed over the old one (local folders);
    /// object stores and the Files API replace an object atomically by writing it.
    local_manifest: bool,
    run: RunInfo,
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
    async fn upload_staged(&mut self) -> Result<()> {
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
async fn remove_prefix(store: &Arc<dyn ObjectStore>, prefix: &ObjPath) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_values_are_escaped() {
        assert_eq!(escape_partition_value("Bogotá D.C."), "Bogot%C3%A1 D.C.");
        assert_eq!(escape_partition_value("a/b"), "a%2Fb");
        assert_eq!(escape_partition_value(".."), "%2E%2E");
    }
}
