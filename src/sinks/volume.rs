//! `volume` sink: Parquet files under `destination/path/`, written through object_store.
//! Files are staged under `destination/.bridge-staging/{run}/`, then moved in place and a `_SUCCESS`
//! manifest is written last; files of earlier runs that this run did not produce are removed.
//!
//! Layout: `path/[column=value/]{file_name}-{n:05}.parquet` and `path/_SUCCESS` (JSON: run id,
//! pipeline, step, files with rows and bytes). Readers should wait for `_SUCCESS`.
//!
//! A `/Volumes/catalog/schema/volume/...` destination goes through the Databricks Files API, with
//! the same layout and order. The Files API cannot rename, so such runs stage their files on local
//! disk and the commit uploads each one (streamed from disk, retried) to its place.

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
use serde::Serialize;

use crate::databricks::files::UploadBody;
use crate::databricks::{DatabricksClient, VolumeStore};
use crate::error::{Error, Result};
use crate::pipeline::metrics::StepMetrics;
use crate::pipeline::project::Project;
use crate::pipeline::spec::{Compression, VolumeSinkSpec};
use crate::sinks::{RunInfo, Sink, StagedOutput, check_columns};

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
                Error::Unsupported(format!(
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
    fn check(&self, schema: &Schema) -> Result<()> {
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
        let run_staging = |root: &ObjPath| {
            child(
                &child(&child(root, STAGING_DIR), &self.run.run_id),
                &self.step,
            )
        };
        // Where files are written before the commit, and how the commit moves them.
        let (staging_store, staging, mover) = match databricks {
            None => (Arc::clone(&store), run_staging(&prefix), Mover::Rename),
            Some(client) => {
                // The upload happens at commit: check now that the folder can be written (the
                // volume exists and the caller may write it), so a bad destination fails the
                // run before any sink commits.
                let target = format!("/{}", join(&prefix, &self.spec.path));
                client
                    .create_directory(&target)
                    .await
                    .map_err(|e| Error::step(&self.step, format!("destination {target}: {e}")))?;
                let local = std::env::temp_dir()
                    .join("bridge-staging")
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
            staging_store: Arc::clone(&staging_store),
            staging: staging.clone(),
            mover,
            target: join(&prefix, &self.spec.path),
            destination: self.destination.clone(),
            files: Vec::new(),
            run: self.run.clone(),
            path: self.spec.path.clone(),
        };
        match self
            .write_files(&staging_store, &staging, input, &metrics)
            .await
        {
            Ok(files) => {
                staged.files = files;
                Ok(Box::new(staged))
            }
            Err(e) => {
                Box::new(staged).abort().await;
                Err(e)
            }
        }
    }
}

impl VolumeSink {
    async fn write_files(
        &self,
        store: &Arc<dyn ObjectStore>,
        staging: &ObjPath,
        input: DataFrame,
        metrics: &StepMetrics,
    ) -> Result<Vec<StagedFile>> {
        let fail = |e: &dyn std::fmt::Display| Error::step(&self.step, e);
        let task_ctx = Arc::new(input.task_ctx());
        let plan = input
            .create_physical_plan()
            .await
            .map_err(|e| Error::from_chain(&self.step, &e))?;
        tracing::debug!(step = %self.step, plan = %deltalake::datafusion::physical_plan::displayable(plan.as_ref()).indent(true), "physical plan");
        let mut stream = deltalake::datafusion::physical_plan::execute_stream(plan, task_ctx)
            .map_err(|e| fail(&e))?;
        let schema = stream.schema();
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
        let base_name = self
            .spec
            .file_name
            .clone()
            .unwrap_or_else(|| self.step.clone());
        let mut writers: BTreeMap<String, PartitionWriter> = BTreeMap::new();
        let mut done: Vec<StagedFile> = Vec::new();
        let props = self.writer_properties();
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| Error::from_chain(&self.step, &e))?;
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
}

/// How a commit puts staged files in place.
enum Mover {
    /// One rename per file, inside the destination's store.
    Rename,
    /// Files staged in a local folder are uploaded through the Databricks Files API.
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
    /// Where the files were staged (the destination's store, or a local folder).
    staging_store: Arc<dyn ObjectStore>,
    staging: ObjPath,
    mover: Mover,
    target: ObjPath,
    destination: String,
    path: String,
    files: Vec<StagedFile>,
    run: RunInfo,
}

#[async_trait]
impl StagedOutput for StagedVolume {
    async fn commit(self: Box<Self>) -> Result<Vec<String>> {
        let fail = |e: object_store::Error| Error::step(&self.step, format!("commit: {e}"));
        let success = join(&self.target, SUCCESS_FILE);
        // 1. Withdraw the previous run's manifest: from now on readers know the folder is changing.
        match self.store.delete(&success).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(fail(e)),
        }
        // 2. Move the new files in place (one atomic rename, or one upload, each).
        let mut new_files = BTreeSet::new();
        for file in &self.files {
            let to = join(&self.target, &file.relative);
            match &self.mover {
                Mover::Rename => self
                    .store
                    .rename(&join(&self.staging, &file.relative), &to)
                    .await
                    .map_err(fail)?,
                Mover::Upload { client, local } => client
                    .upload_file(
                        &format!("/{to}"),
                        &UploadBody::File(local.join(&file.relative)),
                        true,
                    )
                    .await
                    .map_err(|e| Error::step(&self.step, format!("commit: {e}")))?,
            }
            new_files.insert(to);
        }
        // 3. Remove files of earlier runs that this run did not write.
        let existing: Vec<ObjPath> = self
            .store
            .list(Some(&self.target))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(fail)?;
        for stale in existing.into_iter().filter(|p| !new_files.contains(p)) {
            match self.store.delete(&stale).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(fail(e)),
            }
        }
        // 4. The manifest goes last.
        let manifest = Manifest {
            run_id: &self.run.run_id,
            pipeline: &self.run.pipeline,
            step: &self.step,
            country: self.run.country.as_deref(),
            committed_at: chrono::Utc::now().to_rfc3339(),
            rows: self.files.iter().map(|f| f.rows).sum(),
            bytes: self.files.iter().map(|f| f.bytes).sum(),
            files: &self.files,
        };
        let body = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
        self.store
            .put(&success, PutPayload::from(body))
            .await
            .map_err(fail)?;
        self.remove_staging().await;
        Ok(self
            .files
            .iter()
            .map(|f| format!("{}/{}/{}", self.destination, self.path, f.relative))
            .collect())
    }

    async fn abort(self: Box<Self>) {
        self.remove_staging().await;
    }
}

impl StagedVolume {
    async fn remove_staging(&self) {
        match &self.mover {
            Mover::Rename => remove_prefix(&self.staging_store, &self.staging).await,
            Mover::Upload { local, .. } => {
                if let Err(e) = std::fs::remove_dir_all(local) {
                    tracing::warn!(folder = %local.display(), error = %e, "could not remove the local staging folder");
                }
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
