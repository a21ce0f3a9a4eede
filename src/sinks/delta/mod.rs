//! `delta` sink: appends to, overwrites or merges into a Delta table in one delta-rs commit.
//! The write streams the input plan; it runs in the commit phase, after every other sink staged,
//! and first among the commits ([`CommitPhase::WritesData`]). Columns are written as the output
//! type policy says ([`crate::output_types`]): `timestamp` for instants, `timestamp_ntz` (with
//! its table feature, on new tables) for wall-clock times, no unsigned or nanosecond types.
//!
//! `mode: merge` applies the input by `keys` ([`merge`]): change rows (with
//! [`crate::changes::OP_COLUMN`]) insert, update or delete their key, other rows upsert; several
//! rows of one key resolve to the last (highest [`crate::changes::VERSION_COLUMN`], then input
//! order); `deletes: soft` keeps a deleted key's row and sets its `_deleted_at`. The change
//! columns are not written. A missing table is created with the last change of each key
//! (deletes left out). Matching on keys makes a repeated merge of the same input change nothing
//! more. Rows reported are the input's rows left after last-wins; the commit's output line
//! gives delta-rs' inserted, updated and deleted counts.
//!
//! An existing table's columns are compared with the output's (every mode), when the sink
//! stages (the first async point after [`Sink::check`], before anything of the table is
//! written) and again when it commits ([`check_existing`]). A column the table holds as another
//! type is always refused naming both types and the cast to use, never converted silently
//! (delta-rs alone would cast `timestamp_ntz` into a `timestamp` column, or a number into a
//! string); only lossless widenings (smaller integers, `float` into `double`, decimals with room
//! for every digit) pass. Columns that differ by name are schema drift ([`drift`]): with
//! `schema_evolution: add_columns` (the default) new output columns are added as nullable
//! columns in the same commit and nullable table columns the output lacks are written as null,
//! each listed in the run summary ([`StepMetrics::note_schema_change`]); a NOT NULL column the
//! output lacks, and with `schema_evolution: fail` any drift, is refused naming every column.

mod checks;
pub mod config;
pub mod drift;
pub mod merge;

use std::sync::Arc;

use async_trait::async_trait;
use deltalake::DeltaTable;
use deltalake::arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef};
use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::prelude::{DataFrame, SessionContext};
use deltalake::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake::kernel::transaction::PROTOCOL;
use deltalake::kernel::{DataType, PrimitiveType, StructType};
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use deltalake::table::state::DeltaTableState;

use crate::changes::{DELETED_AT_COLUMN, OP_COLUMN, VERSION_COLUMN};
use crate::error::{Error, Result};
use crate::output_types::{OutputSchema, Target};
use crate::pipeline::metrics::{CountingTable, StepMetrics};
use crate::pipeline::project::Project;
use crate::pipeline::run::RunInfo;
use crate::sinks::lock::canonical_local;
use crate::sinks::typed::TypedTable;
use crate::sinks::{CommitPhase, Sink, StagedOutput, check_columns};
use config::{DeltaDeletes, DeltaSinkSpec, DeltaWriteMode, SchemaEvolution, is_change_column};
use drift::{Drift, DriftColumn};

/// Writes a Delta table.
#[derive(Debug)]
pub struct DeltaSink {
    step: String,
    spec: DeltaSinkSpec,
    location: String,
    run: RunInfo,
}

impl DeltaSink {
    /// A Delta sink for a step.
    pub fn new(project: &Project, step: &str, spec: &DeltaSinkSpec, run: &RunInfo) -> Self {
        DeltaSink {
            step: step.to_string(),
            spec: spec.clone(),
            location: project.location(&spec.path),
            run: run.clone(),
        }
    }

    /// Refuses change columns a merge cannot read: `_change_op` must be text,
    /// `_change_version` an integer, and a soft-deleting merge sets `_deleted_at` itself.
    fn check_change_columns(&self, schema: &Schema) -> Result<()> {
        let refuse = |column: &str, what: String| {
            Error::step(
                &self.step,
                format!(
                    "Delta table {}: {what}; `mode: merge` reads `{OP_COLUMN}` (text: insert, \
                     update or delete) and `{VERSION_COLUMN}` (an integer ordering the changes \
                     of a key); CAST or rename `{column}` in a transform",
                    self.location
                ),
            )
        };
        if let Ok(op) = schema.field_with_name(OP_COLUMN)
            && !matches!(
                op.data_type(),
                ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View
            )
        {
            return Err(refuse(
                OP_COLUMN,
                format!("column `{OP_COLUMN}` is {}, not text", op.data_type()),
            ));
        }
        if let Ok(version) = schema.field_with_name(VERSION_COLUMN)
            && !version.data_type().is_integer()
        {
            return Err(refuse(
                VERSION_COLUMN,
                format!(
                    "column `{VERSION_COLUMN}` is {}, not an integer",
                    version.data_type()
                ),
            ));
        }
        if self.spec.deletes == DeltaDeletes::Soft
            && schema.field_with_name(DELETED_AT_COLUMN).is_ok()
        {
            return Err(Error::step(
                &self.step,
                format!(
                    "Delta table {}: the input has a column `{DELETED_AT_COLUMN}`, which \
                     `deletes: soft` sets itself (the time a key was deleted); drop or rename \
                     it in a transform, or use `deletes: hard`",
                    self.location
                ),
            ));
        }
        Ok(())
    }
}

/// The columns the table gets from an input of `schema`: a merge drops the change columns and,
/// with soft deletes, adds a nullable `_deleted_at`.
fn table_schema(spec: &DeltaSinkSpec, schema: &Schema) -> SchemaRef {
    if spec.mode != DeltaWriteMode::Merge {
        return Arc::new(schema.clone());
    }
    let mut fields: Vec<Field> = schema
        .fields()
        .iter()
        .filter(|f| !is_change_column(f.name()))
        .map(|f| f.as_ref().clone())
        .collect();
    if spec.deletes == DeltaDeletes::Soft {
        fields.push(Field::new(
            DELETED_AT_COLUMN,
            merge::deleted_at_type(),
            true,
        ));
    }
    Arc::new(Schema::new(fields))
}

#[async_trait]
impl Sink for DeltaSink {
    fn check(&self, schema: &Schema) -> Result<()> {
        OutputSchema::plan(&self.step, schema, Target::Delta, self.spec.sub_microsecond)?;
        check_columns(
            &self.step,
            schema,
            "partition_by",
            self.spec.partition_by.iter(),
        )?;
        if self.spec.mode == DeltaWriteMode::Merge {
            check_columns(&self.step, schema, "keys", self.spec.keys.iter())?;
            self.check_change_columns(schema)?;
        }
        Ok(())
    }

    fn output(&self) -> Result<String> {
        Ok(if self.location.contains("://") {
            format!("delta:{}", self.location.trim_end_matches('/'))
        } else {
            format!(
                "delta:file://{}",
                canonical_local(std::path::Path::new(&self.location)).display()
            )
        })
    }

    async fn stage(
        &self,
        ctx: &SessionContext,
        input: DataFrame,
        metrics: Arc<StepMetrics>,
    ) -> Result<Box<dyn StagedOutput>> {
        // The input as Databricks reads it.
        let typed = TypedTable::new(
            input.into_view(),
            &self.step,
            Target::Delta,
            self.spec.sub_microsecond,
            Arc::clone(&self.run.truncations),
        )?;
        // An existing table is checked before anything is written (the write itself happens at
        // commit): `check` is synchronous and cannot read the table's log.
        let output = table_schema(&self.spec, &typed.schema());
        if let Some(table) = open_existing(&self.step, &self.location).await? {
            check_existing(
                &self.step,
                &self.location,
                &output,
                &self.spec.partition_by,
                self.spec.schema_evolution,
                table
                    .snapshot()
                    .map_err(|e| delta_error(&self.step, &self.location, &e))?,
            )?;
        }
        let input = ctx
            .read_table(Arc::new(typed))
            .map_err(|e| Error::step(&self.step, e))?;
        Ok(Box::new(PendingDeltaWrite {
            step: self.step.clone(),
            location: self.location.clone(),
            spec: self.spec.clone(),
            ctx: ctx.clone(),
            input,
            output,
            metrics,
            snapshot: self.run.change_feeds.snapshot_reaches(&self.step),
            unique_keys: self
                .run
                .change_feeds
                .of(&self.spec.from)
                .is_some_and(|feed| {
                    let (mut a, mut b) = (feed.keys.clone(), self.spec.keys.clone());
                    a.sort();
                    b.sort();
                    a == b
                }),
        }))
    }
}

/// A Delta write that happens when the run commits.
struct PendingDeltaWrite {
    step: String,
    location: String,
    spec: DeltaSinkSpec,
    ctx: SessionContext,
    /// The typed input (change columns included).
    input: DataFrame,
    /// The columns the table gets (checked again against the table as it is at commit).
    output: SchemaRef,
    /// Counts the rows written (applied, for a merge) as the write streams them.
    metrics: Arc<StepMetrics>,
    /// The input is a whole table's snapshot (a change-tracking source's first run or full
    /// refresh): a merge also removes the keys it lacks.
    snapshot: bool,
    /// The input is a change source's rows, one per merge key.
    unique_keys: bool,
}

impl PendingDeltaWrite {
    /// `input` counted as it streams (rows written are known without reading the table back).
    fn counted(&self, input: DataFrame) -> Result<DataFrame> {
        self.ctx
            .read_table(Arc::new(CountingTable::new(
                input.into_view(),
                Arc::clone(&self.metrics),
            )))
            .map_err(|e| Error::step(&self.step, e))
    }
}

#[async_trait]
impl StagedOutput for PendingDeltaWrite {
    fn commit_phase(&self) -> CommitPhase {
        CommitPhase::WritesData
    }

    fn target(&self) -> String {
        format!("Delta table {}", self.location)
    }

    async fn commit(self: Box<Self>) -> Result<Vec<String>> {
        let fail = |e: &dyn std::fmt::Display| delta_error(&self.step, &self.location, e);
        let now = chrono::Utc::now();
        let (table, drift) = match open_existing(&self.step, &self.location).await? {
            Some(table) => {
                // Another writer (not a bridge run: those wait for the lock) may have changed
                // the table since it was staged.
                let drift = check_existing(
                    &self.step,
                    &self.location,
                    &self.output,
                    &self.spec.partition_by,
                    self.spec.schema_evolution,
                    table.snapshot().map_err(|e| fail(&e))?,
                )?;
                (Some(table), drift)
            }
            None => (None, Drift::default()),
        };
        let spec = &self.spec;
        let add_columns = !drift.added.is_empty();
        let df = |r: deltalake::datafusion::error::Result<DataFrame>| r.map_err(|e| fail(&e));
        let written = match (spec.mode, table) {
            (DeltaWriteMode::Merge, Some(table)) => {
                let last = df(merge::last_changes(
                    self.input.clone(),
                    &spec.keys,
                    self.unique_keys,
                ))?;
                let source =
                    merge::table_rows(self.counted(last)?, spec.deletes, &drift.missing, true, now)
                        .map_err(|e| fail(&e))?;
                let plan = merge::MergePlan {
                    keys: &spec.keys,
                    deletes: spec.deletes,
                    add_columns,
                    has_deleted_at: !drift.added.iter().any(|c| c.name == DELETED_AT_COLUMN),
                    snapshot: self.snapshot.then_some(now),
                };
                let (table, m) = merge::merge(table, &self.ctx, source, &plan)
                    .await
                    .map_err(|e| fail(&e))?;
                tracing::info!(
                    step = %self.step,
                    table = %self.location,
                    inserted = m.num_target_rows_inserted,
                    updated = m.num_target_rows_updated,
                    deleted = m.num_target_rows_deleted,
                    source_rows = m.num_source_rows,
                    "merged"
                );
                format!(
                    "{} (version {}: {} inserted, {} updated, {} deleted)",
                    self.location,
                    table.version().unwrap_or_default(),
                    m.num_target_rows_inserted,
                    m.num_target_rows_updated,
                    m.num_target_rows_deleted
                )
            }
            (mode, table) => {
                let rows = if mode == DeltaWriteMode::Merge {
                    // A new table: the last change of each key, deletes left out.
                    let last = df(merge::last_changes(
                        self.input.clone(),
                        &spec.keys,
                        self.unique_keys,
                    ))?;
                    let last = df(merge::without_deletes(last))?;
                    merge::table_rows(self.counted(last)?, spec.deletes, &[], false, now)
                } else {
                    merge::table_rows(
                        self.counted(self.input.clone())?,
                        DeltaDeletes::Hard,
                        &drift.missing,
                        true,
                        now,
                    )
                }
                .map_err(|e| fail(&e))?;
                let new = table.is_none();
                let table = match table {
                    Some(table) => table,
                    None => self.new_table()?,
                };
                let mut write = table
                    .write(Vec::new())
                    .with_input_plan(rows.logical_plan().clone())
                    .with_session_state(Arc::new(self.ctx.state()))
                    .with_save_mode(match mode {
                        DeltaWriteMode::Overwrite => SaveMode::Overwrite,
                        _ => SaveMode::Append,
                    });
                if add_columns {
                    write = write.with_schema_mode(SchemaMode::Merge);
                }
                if !spec.partition_by.is_empty() {
                    write = write.with_partition_columns(spec.partition_by.clone());
                }
                if let Some(size) = spec.target_file_size {
                    write = write.with_target_file_size(Some(size));
                    if new {
                        write = write
                            .with_configuration([("delta.targetFileSize", Some(size.to_string()))]);
                    }
                }
                let table = write.await.map_err(|e| fail(&e))?;
                format!(
                    "{} (version {})",
                    self.location,
                    table.version().unwrap_or_default()
                )
            }
        };
        for note in drift.notes() {
            self.metrics.note_schema_change(note);
        }
        Ok(vec![written])
    }

    async fn abort(self: Box<Self>) {}
}

impl PendingDeltaWrite {
    /// A table object for a location that holds none yet (the write creates it).
    fn new_table(&self) -> Result<DeltaTable> {
        let fail = |e: &dyn std::fmt::Display| delta_error(&self.step, &self.location, e);
        if !self.location.contains("://") {
            std::fs::create_dir_all(&self.location).map_err(|e| Error::io(&self.location, e))?;
        }
        let url = deltalake::ensure_table_uri(&self.location).map_err(|e| fail(&e))?;
        deltalake::DeltaTableBuilder::from_url(url)
            .and_then(deltalake::DeltaTableBuilder::build)
            .map_err(|e| fail(&e))
    }
}

/// A Delta failure as one line: the kernel's errors can carry a backtrace after their first
/// line, and people see the first line only.
fn delta_error(step: &str, location: &str, e: &dyn std::fmt::Display) -> Error {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default().trim_end();
    Error::step(step, format!("Delta table {location}: {first}"))
}

/// The table at `location`, loaded, if one exists there; creates nothing.
async fn open_existing(step: &str, location: &str) -> Result<Option<DeltaTable>> {
    let fail = |e: &dyn std::fmt::Display| delta_error(step, location, e);
    // `ensure_table_uri` creates a missing local folder: a missing one holds no table.
    if !location.contains("://") && !std::path::Path::new(location).exists() {
        return Ok(None);
    }
    let url = deltalake::ensure_table_uri(location).map_err(|e| fail(&e))?;
    let mut table = deltalake::DeltaTableBuilder::from_url(url)
        .and_then(deltalake::DeltaTableBuilder::build)
        .map_err(|e| fail(&e))?;
    // Load only a table that exists: loading a new location logs the kernel's "No files in log
    // segment" as an error before delta-rs treats it as "create".
    if !table
        .verify_deltatable_existence()
        .await
        .map_err(|e| fail(&e))?
    {
        return Ok(None);
    }
    table.load().await.map_err(|e| fail(&e))?;
    Ok(Some(table))
}

/// Why an existing Delta table cannot take a step's output as it is; found before anything is
/// written, so the table is left as it was.
#[derive(Debug, thiserror::Error)]
pub enum ExistingTableError {
    /// A column holds another type in the table than in the step's output.
    #[error(
        "step `{step}`: Delta table {table}: column `{column}` is {table_type} in the table but \
         {incoming_type} in the step's output, and the sink does not convert it silently \
         (nothing was written); {hint}"
    )]
    ColumnType {
        step: String,
        table: String,
        column: String,
        table_type: String,
        incoming_type: String,
        hint: String,
    },
    /// The step's output has a column whose name differs from a table column's only in case
    /// (Delta column names are case-insensitive: it cannot be added).
    #[error(
        "step `{step}`: Delta table {table}: the step's output has column `{column}`, which the \
         table has as `{existing}` (Delta column names ignore case, so it cannot be added as a new \
         column; nothing was written); rename it in a transform (`\"{column}\" AS \"{existing}\"`), \
         or write to a new table (another `path`)"
    )]
    CaseOnly {
        step: String,
        table: String,
        column: String,
        existing: String,
    },
    /// The output's columns differ from the table's by name in a way `schema_evolution` (or a
    /// NOT NULL column) does not allow.
    #[error("step `{step}`: Delta table {table}: {refusal}")]
    Drift {
        step: String,
        table: String,
        refusal: drift::DriftRefusal,
    },
    /// A column needs a table feature the table's protocol does not have.
    #[error(
        "step `{step}`: Delta table {table}: column `{column}` is {data_type}, which needs the \
         table feature `{feature}`, and the table's protocol (writer version {writer_version}, \
         writer features: {features}) does not have it (nothing was written); a table created \
         by another writer may lack it: enable the feature there (Databricks: `ALTER TABLE … SET \
         TBLPROPERTIES ('delta.feature.{feature}' = 'supported')`), or write to a new table \
         (another `path`), which the bridge creates with it"
    )]
    MissingFeature {
        step: String,
        table: String,
        column: String,
        data_type: String,
        feature: String,
        writer_version: i32,
        features: String,
    },
    /// An output type has no Delta type (the output type policy refuses these first).
    #[error("step `{step}`: column `{column}` ({data_type}) has no Delta type: {source}")]
    NoDeltaType {
        step: String,
        column: String,
        data_type: String,
        #[source]
        source: deltalake::arrow::error::ArrowError,
    },
    /// The table's protocol needs features this build cannot write.
    #[error(
        "step `{step}`: Delta table {table}: the table's protocol needs features this bridge \
         cannot write (nothing was written): {source}; write to a new table (another `path`)"
    )]
    Protocol {
        step: String,
        table: String,
        #[source]
        source: deltalake::kernel::transaction::TransactionError,
    },
    /// `partition_by` differs from the table's partition columns.
    #[error(
        "step `{step}`: Delta table {table}: `partition_by` is [{requested}] but the table is \
         partitioned by [{existing}] (nothing was written); `partition_by` applies to new tables: \
         remove it or set it to the table's columns"
    )]
    Partitions {
        step: String,
        table: String,
        requested: String,
        existing: String,
    },
}

/// Compares the planned output (`output`: the columns the table gets) with an existing table:
/// columns by name (in any order), each of the table's type or one that widens into it without
/// loss, the partition columns `partition_by` asks for, and a protocol this bridge can write
/// whose features cover the output's types. Returns the columns that differ by name
/// ([`Drift`]) when `evolution` allows them.
pub fn check_existing(
    step: &str,
    location: &str,
    output: &Schema,
    partition_by: &[String],
    evolution: SchemaEvolution,
    table: &DeltaTableState,
) -> Result<Drift, Box<ExistingTableError>> {
    let table_schema = table.schema();
    let existing = table.metadata().partition_columns();
    if !partition_by.is_empty() && partition_by != existing {
        return Err(Box::new(ExistingTableError::Partitions {
            step: step.into(),
            table: location.into(),
            requested: partition_by.join(", "),
            existing: existing.join(", "),
        }));
    }
    let writer_features: Option<Vec<String>> = table
        .protocol()
        .writer_features()
        .map(|f| f.iter().map(ToString::to_string).collect());
    let drift = compare_schemas(
        step,
        location,
        output,
        &table_schema,
        &TableProtocol {
            writer_version: table.protocol().min_writer_version(),
            writer_features,
        },
    )?;
    if let Some(refusal) = drift.refusal(evolution) {
        return Err(Box::new(ExistingTableError::Drift {
            step: step.into(),
            table: location.into(),
            refusal,
        }));
    }
    PROTOCOL.can_write_to(table).map_err(|source| {
        Box::new(ExistingTableError::Protocol {
            step: step.into(),
            table: location.into(),
            source,
        })
    })?;
    Ok(drift)
}

/// What a table's protocol allows writers, as far as the check needs it.
struct TableProtocol {
    writer_version: i32,
    /// Writer features (protocol writer version 7 and later).
    writer_features: Option<Vec<String>>,
}

impl TableProtocol {
    /// Whether the protocol has a writer feature (only table-features protocols name them).
    fn has(&self, feature: &str) -> bool {
        self.writer_version >= 7
            && self
                .writer_features
                .as_ref()
                .is_some_and(|f| f.iter().any(|x| x == feature))
    }
}

/// The schema comparison of [`check_existing`]: refuses a retyped column (or one whose name
/// differs only in case, or that needs a feature the protocol lacks) and returns how the output's
/// columns differ from the table's by name.
fn compare_schemas(
    step: &str,
    location: &str,
    output: &Schema,
    table: &StructType,
    protocol: &TableProtocol,
) -> Result<Drift, Box<ExistingTableError>> {
    let mut drift = Drift::default();
    let mut incoming_types = Vec::with_capacity(output.fields().len());
    for field in output.fields() {
        let column = field.name();
        // The policy's output types all have a Delta type (anything else is refused by then).
        let incoming = DataType::try_from_arrow(field.data_type()).map_err(|source| {
            Box::new(ExistingTableError::NoDeltaType {
                step: step.into(),
                column: column.clone(),
                data_type: field.data_type().to_string(),
                source,
            })
        })?;
        match table.field(column) {
            Some(target) => {
                if !widens_into(&incoming, target.data_type()) {
                    return Err(Box::new(ExistingTableError::ColumnType {
                        step: step.into(),
                        table: location.into(),
                        column: column.clone(),
                        table_type: spark_name(target.data_type()),
                        incoming_type: spark_name(&incoming),
                        hint: cast_hint(column, &incoming, target.data_type()),
                    }));
                }
            }
            None => {
                if let Some(existing) = table
                    .fields()
                    .find(|f| f.name().eq_ignore_ascii_case(column))
                {
                    return Err(Box::new(ExistingTableError::CaseOnly {
                        step: step.into(),
                        table: location.into(),
                        column: column.clone(),
                        existing: existing.name().clone(),
                    }));
                }
                drift.added.push(DriftColumn {
                    name: column.clone(),
                    data_type: incoming.clone(),
                    nullable: true,
                });
            }
        }
        incoming_types.push((column, incoming));
    }
    drift.missing = table
        .fields()
        .filter(|f| output.field_with_name(f.name()).is_err())
        .map(|f| DriftColumn {
            name: f.name().clone(),
            data_type: f.data_type().clone(),
            nullable: f.is_nullable(),
        })
        .collect();
    for (column, incoming) in incoming_types {
        if contains(&incoming, &PrimitiveType::TimestampNtz) && !protocol.has(TIMESTAMP_NTZ_FEATURE)
        {
            return Err(Box::new(ExistingTableError::MissingFeature {
                step: step.into(),
                table: location.into(),
                column: column.clone(),
                data_type: spark_name(&incoming),
                feature: TIMESTAMP_NTZ_FEATURE.into(),
                writer_version: protocol.writer_version,
                features: protocol
                    .writer_features
                    .as_ref()
                    .filter(|f| !f.is_empty())
                    .map(|f| f.join(", "))
                    .unwrap_or_else(|| "none".into()),
            }));
        }
    }
    Ok(drift)
}

/// The writer feature `timestamp_ntz` columns need.
const TIMESTAMP_NTZ_FEATURE: &str = "timestampNtz";

/// Whether a value of `from` is written into a column of `to` unchanged: the same type, or a
/// widening that keeps every value (a smaller integer, `float` into `double`, a decimal with
/// room for every digit). Nullability is not compared: delta-rs refuses a NULL for a NOT NULL
/// column when it meets one.
fn widens_into(from: &DataType, to: &DataType) -> bool {
    use PrimitiveType as P;
    match (from, to) {
        (DataType::Primitive(a), DataType::Primitive(b)) => {
            a == b
                || match (a, b) {
                    (P::Float, P::Double) => true,
                    (P::Decimal(a), P::Decimal(b)) => {
                        b.scale() >= a.scale()
                            && b.precision() - b.scale() >= a.precision() - a.scale()
                    }
                    (a, P::Decimal(b)) => {
                        integer_digits(a).is_some_and(|digits| b.precision() - b.scale() >= digits)
                    }
                    (a, b) => match (integer_digits(a), integer_digits(b)) {
                        (Some(a), Some(b)) => a <= b,
                        _ => false,
                    },
                }
        }
        (DataType::Array(a), DataType::Array(b)) => widens_into(a.element_type(), b.element_type()),
        (DataType::Map(a), DataType::Map(b)) => {
            widens_into(a.key_type(), b.key_type()) && widens_into(a.value_type(), b.value_type())
        }
        (DataType::Struct(a), DataType::Struct(b)) => {
            a.fields().len() == b.fields().len()
                && a.fields().all(|f| {
                    b.field(f.name())
                        .is_some_and(|g| widens_into(f.data_type(), g.data_type()))
                })
        }
        _ => false,
    }
}

/// Decimal digits of an integer type (`None`: not an integer).
fn integer_digits(t: &PrimitiveType) -> Option<u8> {
    match t {
        PrimitiveType::Byte => Some(3),
        PrimitiveType::Short => Some(5),
        PrimitiveType::Integer => Some(10),
        PrimitiveType::Long => Some(19),
        _ => None,
    }
}

/// Whether a type is or holds (in an array, map or struct) a primitive type.
fn contains(t: &DataType, p: &PrimitiveType) -> bool {
    match t {
        DataType::Primitive(q) => q == p,
        DataType::Array(a) => contains(a.element_type(), p),
        DataType::Map(m) => contains(m.key_type(), p) || contains(m.value_type(), p),
        DataType::Struct(s) | DataType::Variant(s) => {
            s.fields().any(|f| contains(f.data_type(), p))
        }
    }
}

/// A Delta type as Databricks SQL names it (`bigint`, `timestamp_ntz`, `array<string>`).
fn spark_name(t: &DataType) -> String {
    match t {
        DataType::Primitive(p) => match p {
            PrimitiveType::Byte => "tinyint".into(),
            PrimitiveType::Short => "smallint".into(),
            PrimitiveType::Integer => "int".into(),
            PrimitiveType::Long => "bigint".into(),
            other => other.to_string(),
        },
        DataType::Array(a) => format!("array<{}>", spark_name(a.element_type())),
        DataType::Map(m) => format!(
            "map<{}, {}>",
            spark_name(m.key_type()),
            spark_name(m.value_type())
        ),
        DataType::Struct(s) => format!(
            "struct<{}>",
            s.fields()
                .map(|f| format!("{}: {}", f.name(), spark_name(f.data_type())))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        DataType::Variant(_) => "variant".into(),
    }
}

/// What to do about a column the table holds as another type: the transform expression (in
/// DataFusion SQL) that gives it the table's type, or how to give the table the incoming type.
fn cast_hint(column: &str, incoming: &DataType, table: &DataType) -> String {
    use PrimitiveType as P;
    let q = format!("\"{}\"", column.replace('"', "\"\""));
    let replace = "; to give the table the step's type instead, write a new table (another \
                   `path`, or delete this one first): the delta sink does not replace an existing \
                   table's schema, with `mode: overwrite` either";
    let (DataType::Primitive(from), DataType::Primitive(to)) = (incoming, table) else {
        return format!("CAST it to the table's type in a transform{replace}");
    };
    let cast = match (from, to) {
        (P::TimestampNtz, P::Timestamp) => {
            return format!(
                "if its wall-clock times are UTC, convert it in a transform: \
                 `arrow_cast({q}, 'Timestamp(Microsecond, \"UTC\")') AS {q}` (times of another \
                 zone must be converted to UTC first){replace}"
            );
        }
        (P::Timestamp, P::TimestampNtz) => {
            return format!(
                "to store its UTC wall-clock time, convert it in a transform: \
                 `arrow_cast({q}, 'Timestamp(Microsecond)') AS {q}`{replace}"
            );
        }
        (_, P::Byte) => "TINYINT".to_string(),
        (_, P::Short) => "SMALLINT".to_string(),
        (_, P::Integer) => "INT".to_string(),
        (_, P::Long) => "BIGINT".to_string(),
        (_, P::Float) => "REAL".to_string(),
        (_, P::Double) => "DOUBLE".to_string(),
        (_, P::Boolean) => "BOOLEAN".to_string(),
        (_, P::String) => "VARCHAR".to_string(),
        (_, P::Binary) => "BYTEA".to_string(),
        (_, P::Date) => "DATE".to_string(),
        (_, P::Decimal(d)) => format!("DECIMAL({}, {})", d.precision(), d.scale()),
        _ => return format!("CAST it to the table's type in a transform{replace}"),
    };
    format!(
        "if its values fit, CAST it in a transform: `CAST({q} AS {cast}) AS {q}` (a value that \
         does not fit fails the run){replace}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::datatypes::{DataType as Arrow, Field, TimeUnit};
    use deltalake::kernel::StructField;

    fn output(columns: &[(&str, Arrow)]) -> Schema {
        Schema::new(
            columns
                .iter()
                .map(|(n, t)| Field::new(*n, t.clone(), true))
                .collect::<Vec<_>>(),
        )
    }

    fn table(columns: &[(&str, DataType)]) -> StructType {
        StructType::try_new(
            columns
                .iter()
                .map(|(n, t)| StructField::nullable(*n, t.clone())),
        )
        .unwrap()
    }

    /// Protocol (1, 2): no table features.
    const PLAIN: TableProtocol = TableProtocol {
        writer_version: 2,
        writer_features: None,
    };

    fn compare(out: &Schema, t: &StructType, p: &TableProtocol) -> Result<Drift, String> {
        compare_schemas("load", "/lake/t", out, t, p).map_err(|e| e.to_string())
    }

    const NTZ: Arrow = Arrow::Timestamp(TimeUnit::Microsecond, None);

    fn utc() -> Arrow {
        Arrow::Timestamp(TimeUnit::Microsecond, Some(crate::output_types::UTC.into()))
    }

    #[test]
    fn a_wall_clock_time_is_refused_for_an_instant_column_and_back() {
        let e = compare(
            &output(&[("id", Arrow::Int64), ("at", NTZ)]),
            &table(&[("id", DataType::LONG), ("at", DataType::TIMESTAMP)]),
            &PLAIN,
        )
        .unwrap_err();
        assert!(
            e.starts_with("step `load`: Delta table /lake/t: column `at` is timestamp in the table but timestamp_ntz in the step's output")
                && e.contains("`arrow_cast(\"at\", 'Timestamp(Microsecond, \"UTC\")') AS \"at\"`")
                && e.contains("does not replace an existing table's schema")
                && !e.contains('\n'),
            "{e}"
        );
        let e = compare(
            &output(&[("at", utc())]),
            &table(&[("at", DataType::TIMESTAMP_NTZ)]),
            &TableProtocol {
                writer_version: 7,
                writer_features: Some(vec!["timestampNtz".into()]),
            },
        )
        .unwrap_err();
        assert!(
            e.contains(
                "column `at` is timestamp_ntz in the table but timestamp in the step's output"
            ) && e.contains("'Timestamp(Microsecond)'"),
            "{e}"
        );
    }

    #[test]
    fn only_lossless_widenings_pass() {
        let dec = |p, s| DataType::decimal(p, s).unwrap();
        for (from, to, fits) in [
            (Arrow::Int16, DataType::LONG, true),
            (Arrow::Int32, DataType::INTEGER, true),
            (Arrow::Int64, DataType::INTEGER, false),
            (Arrow::Float32, DataType::DOUBLE, true),
            (Arrow::Float64, DataType::FLOAT, false),
            (Arrow::Decimal128(10, 2), dec(12, 4), true),
            (Arrow::Decimal128(10, 2), dec(10, 4), false),
            (Arrow::Decimal128(10, 2), dec(10, 1), false),
            (Arrow::Int32, dec(12, 2), true),
            (Arrow::Int64, dec(20, 2), false),
            (Arrow::Int64, DataType::STRING, false),
            (Arrow::Utf8, DataType::LONG, false),
            (Arrow::Int32, DataType::DOUBLE, false),
            (Arrow::Date32, DataType::TIMESTAMP_NTZ, false),
        ] {
            let got = compare(
                &output(&[("c", from.clone())]),
                &table(&[("c", to.clone())]),
                &PLAIN,
            );
            assert_eq!(got.is_ok(), fits, "{from} into {to}: {got:?}");
        }
        let e = compare(
            &output(&[("c", Arrow::Utf8)]),
            &table(&[("c", DataType::LONG)]),
            &PLAIN,
        )
        .unwrap_err();
        assert!(
            e.contains("is bigint in the table but string")
                && e.contains("`CAST(\"c\" AS BIGINT) AS \"c\"`"),
            "{e}"
        );
        let list = |t: Arrow| Arrow::List(Arc::new(Field::new("item", t, true)));
        let array = |t: DataType| DataType::from(deltalake::kernel::ArrayType::new(t, true));
        assert!(
            compare(
                &output(&[("c", list(Arrow::Int32))]),
                &table(&[("c", array(DataType::LONG))]),
                &PLAIN
            )
            .is_ok()
        );
        let e = compare(
            &output(&[("c", list(NTZ))]),
            &table(&[("c", array(DataType::TIMESTAMP))]),
            &PLAIN,
        )
        .unwrap_err();
        assert!(
            e.contains("array<timestamp> in the table but array<timestamp_ntz>"),
            "{e}"
        );
    }

    #[test]
    fn columns_are_matched_by_name_and_the_rest_is_drift() {
        let e = compare(
            &output(&[("id", Arrow::Int64), ("Amount", Arrow::Float64)]),
            &table(&[("id", DataType::LONG), ("amount", DataType::DOUBLE)]),
            &PLAIN,
        )
        .unwrap_err();
        assert!(
            e.contains("has column `Amount`, which the table has as `amount`")
                && e.contains("`\"Amount\" AS \"amount\"`"),
            "{e}"
        );
        let drift = compare(
            &output(&[("email", Arrow::Utf8), ("id", Arrow::Int64)]),
            &StructType::try_new([
                StructField::nullable("id", DataType::LONG),
                StructField::nullable("note", DataType::STRING),
                StructField::not_null("code", DataType::INTEGER),
            ])
            .unwrap(),
            &PLAIN,
        )
        .unwrap();
        let names = |c: &[DriftColumn]| c.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&drift.added), ["email"]);
        assert_eq!(drift.added[0].data_type, DataType::STRING);
        assert_eq!(names(&drift.missing), ["note", "code"]);
        assert_eq!(
            drift.missing.iter().map(|c| c.nullable).collect::<Vec<_>>(),
            [true, false]
        );
        // Order does not matter.
        let drift = compare(
            &output(&[("note", Arrow::Utf8), ("id", Arrow::Int64)]),
            &table(&[("id", DataType::LONG), ("note", DataType::STRING)]),
            &PLAIN,
        )
        .unwrap();
        assert!(drift.is_empty(), "{drift:?}");
        // A new column needs the table features its type needs.
        let e = compare(
            &output(&[("id", Arrow::Int64), ("at", NTZ)]),
            &table(&[("id", DataType::LONG)]),
            &PLAIN,
        )
        .unwrap_err();
        assert!(e.contains("needs the table feature `timestampNtz`"), "{e}");
    }

    #[test]
    fn a_merge_table_has_no_change_columns_and_soft_deletes_add_deleted_at() {
        let input = output(&[
            ("id", Arrow::Int64),
            (OP_COLUMN, Arrow::Utf8),
            (VERSION_COLUMN, Arrow::Int64),
        ]);
        let spec = |yaml: &str| -> DeltaSinkSpec {
            serde_yaml::from_str(&format!("{{from: s, path: t, {yaml}}}")).unwrap()
        };
        let names = |s: SchemaRef| {
            s.fields()
                .iter()
                .map(|f| format!("{} {}", f.name(), f.data_type()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(table_schema(&spec("mode: append"), &input)),
            ["id Int64", "_change_op Utf8", "_change_version Int64"]
        );
        assert_eq!(
            names(table_schema(&spec("mode: merge, keys: [id]"), &input)),
            ["id Int64"]
        );
        assert_eq!(
            names(table_schema(
                &spec("mode: merge, keys: [id], deletes: soft"),
                &input
            )),
            ["id Int64", "_deleted_at Timestamp(µs, \"UTC\")"]
        );
    }

    #[test]
    fn timestamp_ntz_needs_the_table_feature() {
        let out = output(&[("at", NTZ)]);
        let t = table(&[("at", DataType::TIMESTAMP_NTZ)]);
        let e = compare(&out, &t, &PLAIN).unwrap_err();
        assert!(
            e.contains(
                "column `at` is timestamp_ntz, which needs the table feature `timestampNtz`"
            ) && e.contains("writer version 2, writer features: none"),
            "{e}"
        );
        let other = TableProtocol {
            writer_version: 7,
            writer_features: Some(vec!["appendOnly".into()]),
        };
        let e = compare(&out, &t, &other).unwrap_err();
        assert!(
            e.contains("writer version 7, writer features: appendOnly"),
            "{e}"
        );
        let with = TableProtocol {
            writer_version: 7,
            writer_features: Some(vec!["appendOnly".into(), "timestampNtz".into()]),
        };
        compare(&out, &t, &with).unwrap();
    }
}
