//! The columns of the events table (those of `schemas/bridge_events.sql`), its Arrow schema, and
//! events to and from its rows.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, ListBuilder, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray,
};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::kernel::{ArrayType, DataType as DeltaType};

use crate::sync::event::{Event, EventRowError, EventStatus, Operation};

/// Type of a column of the events table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// `STRING` (Arrow Utf8).
    String,
    /// `ARRAY<STRING>` (Arrow List<Utf8>).
    StringArray,
    /// `BIGINT` (Arrow Int64).
    BigInt,
    /// `TIMESTAMP` (Arrow Timestamp(Microsecond, "UTC")).
    Timestamp,
}

impl ColumnType {
    /// The Databricks SQL type name, as in `schemas/bridge_events.sql`.
    pub fn sql(self) -> &'static str {
        match self {
            ColumnType::String => "STRING",
            ColumnType::StringArray => "ARRAY<STRING>",
            ColumnType::BigInt => "BIGINT",
            ColumnType::Timestamp => "TIMESTAMP",
        }
    }

    /// The Arrow type of the column.
    pub fn arrow(self) -> ArrowType {
        match self {
            ColumnType::String => ArrowType::Utf8,
            ColumnType::StringArray => {
                ArrowType::List(Arc::new(Field::new("element", ArrowType::Utf8, true)))
            }
            ColumnType::BigInt => ArrowType::Int64,
            ColumnType::Timestamp => {
                ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            }
        }
    }

    /// The Delta type of the column.
    pub fn delta(self) -> DeltaType {
        match self {
            ColumnType::String => DeltaType::STRING,
            ColumnType::StringArray => {
                DeltaType::Array(Box::new(ArrayType::new(DeltaType::STRING, true)))
            }
            ColumnType::BigInt => DeltaType::LONG,
            ColumnType::Timestamp => DeltaType::TIMESTAMP,
        }
    }
}

/// A column of the events table.
#[derive(Debug, Clone, Copy)]
pub struct EventColumn {
    pub name: &'static str,
    pub ty: ColumnType,
    pub nullable: bool,
    pub comment: &'static str,
}

const fn column(
    name: &'static str,
    ty: ColumnType,
    nullable: bool,
    comment: &'static str,
) -> EventColumn {
    EventColumn {
        name,
        ty,
        nullable,
        comment,
    }
}

/// The columns of `bridge_events`, in table order (the same as `schemas/bridge_events.sql`).
pub const EVENT_COLUMNS: [EventColumn; 18] = [
    column(
        "event_id",
        ColumnType::String,
        false,
        "Unique id of the event (a UUID); also the idempotency key of the SQL Server write",
    ),
    column(
        "operation",
        ColumnType::String,
        false,
        "INSERT, UPSERT, UPDATE, DELETE or RUN",
    ),
    column(
        "source_table",
        ColumnType::String,
        false,
        "Table the rows come from: catalog.schema.table ('' for RUN)",
    ),
    column(
        "target_table",
        ColumnType::String,
        false,
        "SQL Server table written: schema.table ('' for RUN)",
    ),
    column(
        "primary_keys",
        ColumnType::StringArray,
        true,
        "Key columns; UPSERT, UPDATE and DELETE need at least one",
    ),
    column(
        "filter",
        ColumnType::String,
        true,
        "One SQL boolean expression over the source's columns; NULL syncs every row",
    ),
    column(
        "status",
        ColumnType::String,
        false,
        "pending, running, completed or failed",
    ),
    column(
        "rows_affected",
        ColumnType::BigInt,
        true,
        "Rows inserted, updated or deleted (completed events)",
    ),
    column(
        "error_message",
        ColumnType::String,
        true,
        "Why the event failed (failed events)",
    ),
    column(
        "created_at",
        ColumnType::Timestamp,
        false,
        "When the event was submitted (UTC)",
    ),
    column(
        "started_at",
        ColumnType::Timestamp,
        true,
        "When the current claim started (UTC); a running event older than the lease is reclaimed",
    ),
    column(
        "completed_at",
        ColumnType::Timestamp,
        true,
        "When the event completed or failed (UTC)",
    ),
    column(
        "created_by",
        ColumnType::String,
        true,
        "Who submitted the event (checked against the server's permissions)",
    ),
    column(
        "claimed_by",
        ColumnType::String,
        true,
        "Worker id of the server that claimed the event",
    ),
    column(
        "pipeline",
        ColumnType::String,
        true,
        "RUN: the pipeline to run (its name under pipelines/)",
    ),
    column(
        "country",
        ColumnType::String,
        true,
        "RUN: the country whose parameters the run uses",
    ),
    column(
        "params",
        ColumnType::String,
        true,
        "RUN: parameter overrides, the text of a JSON object",
    ),
    column(
        "job_id",
        ColumnType::String,
        true,
        "RUN: the server job that ran the pipeline",
    ),
];

/// The columns a RUN event added; a table made by an older bridge lacks them (read as NULL).
pub const RUN_COLUMNS: [&str; 4] = ["pipeline", "country", "params", "job_id"];

/// The Arrow schema of the events table.
pub fn event_schema() -> SchemaRef {
    Arc::new(Schema::new(
        EVENT_COLUMNS
            .iter()
            .map(|c| Field::new(c.name, c.ty.arrow(), c.nullable))
            .collect::<Vec<_>>(),
    ))
}

/// Arrow types that read back the same (view and large strings, list item names).
pub(super) fn same_type(found: &ArrowType, expected: &ArrowType) -> bool {
    match (found, expected) {
        (
            ArrowType::List(f) | ArrowType::LargeList(f) | ArrowType::ListView(f),
            ArrowType::List(e),
        ) => same_type(f.data_type(), e.data_type()),
        (ArrowType::Utf8View | ArrowType::LargeUtf8, ArrowType::Utf8) => true,
        _ => found == expected,
    }
}

/// One event as a one-row batch of the table's schema.
pub(super) fn batch_of(e: &Event) -> std::result::Result<RecordBatch, EventRowError> {
    let text = |v: Option<&str>| Arc::new(StringArray::from(vec![v])) as ArrayRef;
    let time = |v: Option<DateTime<Utc>>| {
        Arc::new(
            TimestampMicrosecondArray::from(vec![v.map(|t| t.timestamp_micros())])
                .with_timezone("UTC"),
        ) as ArrayRef
    };
    let mut keys = ListBuilder::new(StringBuilder::new()).with_field(Arc::new(Field::new(
        "element",
        ArrowType::Utf8,
        true,
    )));
    for k in &e.primary_keys {
        keys.values().append_value(k);
    }
    keys.append(true);
    let columns: Vec<ArrayRef> = vec![
        text(Some(&e.event_id)),
        text(Some(e.operation.as_str())),
        text(Some(&e.source_table)),
        text(Some(&e.target_table)),
        Arc::new(keys.finish()),
        text(e.filter.as_deref()),
        text(Some(e.status.as_str())),
        Arc::new(Int64Array::from(vec![e.rows_affected])),
        text(e.error_message.as_deref()),
        time(Some(e.created_at)),
        time(e.started_at),
        time(e.completed_at),
        text(e.created_by.as_deref()),
        text(e.claimed_by.as_deref()),
        text(e.pipeline.as_deref()),
        text(e.country.as_deref()),
        text(e.params.as_deref()),
        text(e.job_id.as_deref()),
    ];
    RecordBatch::try_new(event_schema(), columns).map_err(EventRowError::Batch)
}

/// The events in a batch read from the table (columns found by name, cast to the table's types).
pub(super) fn events_of(batch: &RecordBatch) -> std::result::Result<Vec<Event>, EventRowError> {
    let column = |c: &EventColumn| -> std::result::Result<ArrayRef, EventRowError> {
        let array = match batch.column_by_name(c.name) {
            Some(array) => array,
            None if RUN_COLUMNS.contains(&c.name) => {
                return Ok(deltalake::arrow::array::new_null_array(
                    &c.ty.arrow(),
                    batch.num_rows(),
                ));
            }
            None => return Err(EventRowError::MissingColumn(c.name)),
        };
        cast(array, &c.ty.arrow()).map_err(|source| EventRowError::Column {
            column: c.name,
            source,
        })
    };
    let columns: Vec<ArrayRef> = EVENT_COLUMNS
        .iter()
        .map(column)
        .collect::<std::result::Result<_, _>>()?;
    let text = |i: usize, row: usize| -> Option<String> {
        let a = columns[i].as_string::<i32>();
        (!a.is_null(row)).then(|| a.value(row).to_string())
    };
    let time = |i: usize, row: usize| -> Option<DateTime<Utc>> {
        let a = columns[i].as_primitive::<deltalake::arrow::datatypes::TimestampMicrosecondType>();
        (!a.is_null(row))
            .then(|| DateTime::from_timestamp_micros(a.value(row)))
            .flatten()
    };
    let required = |v: Option<String>, name: &'static str| v.ok_or(EventRowError::Null(name));
    let mut events = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let keys = columns[4].as_list::<i32>();
        let primary_keys = if keys.is_null(row) {
            Vec::new()
        } else {
            let values = keys.value(row);
            let values = values.as_string::<i32>();
            (0..values.len())
                .filter(|i| !values.is_null(*i))
                .map(|i| values.value(i).to_string())
                .collect()
        };
        let event_id = required(text(0, row), "event_id")?;
        let bad = |source: EventRowError| EventRowError::Event {
            event_id: event_id.clone(),
            source: Box::new(source),
        };
        let rows = columns[7].as_primitive::<deltalake::arrow::datatypes::Int64Type>();
        events.push(Event {
            operation: required(text(1, row), "operation")?
                .parse::<Operation>()
                .map_err(|e| bad(e.into()))?,
            source_table: required(text(2, row), "source_table")?,
            target_table: required(text(3, row), "target_table")?,
            primary_keys,
            filter: text(5, row),
            status: required(text(6, row), "status")?
                .parse::<EventStatus>()
                .map_err(|e| bad(e.into()))?,
            rows_affected: (!rows.is_null(row)).then(|| rows.value(row)),
            error_message: text(8, row),
            created_at: time(9, row).ok_or_else(|| bad(EventRowError::Null("created_at")))?,
            started_at: time(10, row),
            completed_at: time(11, row),
            created_by: text(12, row),
            claimed_by: text(13, row),
            pipeline: text(14, row),
            country: text(15, row),
            params: text(16, row),
            job_id: text(17, row),
            event_id,
        });
    }
    Ok(events)
}
