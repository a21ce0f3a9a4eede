//! Sync events: what a Databricks job asks for (a [`NewEvent`]) and the row that tracks it
//! ([`Event`]), with the checks every event passes before it is stored or applied.

use std::collections::HashSet;
use std::fmt;
use std::ops::ControlFlow;

use chrono::{DateTime, Utc};
use deltalake::datafusion::sql::sqlparser::ast::{Expr as SqlExpr, visit_expressions};
use deltalake::datafusion::sql::sqlparser::dialect::GenericDialect;
use deltalake::datafusion::sql::sqlparser::parser::Parser;
use deltalake::datafusion::sql::sqlparser::tokenizer::Token;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::error::Refusal;
use crate::sql::validate_ident;
use crate::sync::SyncError;

/// Longest filter accepted, in characters.
pub const MAX_FILTER_CHARS: usize = 4000;
/// Longest `created_by` and worker id accepted, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// What an event does to the target table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    /// Add the source's rows.
    Insert,
    /// Update the rows whose keys match, insert the others.
    Upsert,
    /// Update the rows whose keys match; source rows without a match are ignored.
    Update,
    /// Delete the rows whose keys match the source's.
    Delete,
    /// Run a pipeline of the project (`pipeline`, `country`, `params`) as `created_by`.
    Run,
}

impl Operation {
    /// The name stored in the events table (`INSERT`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Insert => "INSERT",
            Operation::Upsert => "UPSERT",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Run => "RUN",
        }
    }

    /// Whether the operation identifies rows by `primary_keys`.
    pub fn needs_keys(self) -> bool {
        matches!(
            self,
            Operation::Upsert | Operation::Update | Operation::Delete
        )
    }

    /// Whether the operation is a table sync (not a pipeline run).
    pub fn is_sync(self) -> bool {
        self != Operation::Run
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Operation {
    type Err = UnknownName;

    /// Any case: `upsert`, `Upsert` and `UPSERT` are the same operation.
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        match s.trim().to_ascii_uppercase().as_str() {
            "INSERT" => Ok(Operation::Insert),
            "UPSERT" => Ok(Operation::Upsert),
            "UPDATE" => Ok(Operation::Update),
            "DELETE" => Ok(Operation::Delete),
            "RUN" => Ok(Operation::Run),
            _ => Err(UnknownName::Operation(s.to_string())),
        }
    }
}

/// Why a row of an events table is not an event (the table was written by something else, or
/// by another version).
#[derive(Debug, thiserror::Error)]
pub enum EventRowError {
    /// A required column is NULL.
    #[error("`{0}` is NULL")]
    Null(&'static str),
    /// A column of the table is missing.
    #[error("column `{0}` is missing")]
    MissingColumn(&'static str),
    /// A column is not of its type, and cannot be cast to it.
    #[error("column `{column}`: {source}")]
    Column {
        column: &'static str,
        #[source]
        source: deltalake::arrow::error::ArrowError,
    },
    /// An operation or a status that is not one.
    #[error(transparent)]
    Name(#[from] UnknownName),
    /// A timestamp that does not parse.
    #[error("timestamp `{text}`: {source}")]
    Timestamp {
        text: String,
        #[source]
        source: chrono::ParseError,
    },
    /// `primary_keys` that are not a JSON list of names.
    #[error("primary_keys `{json}`: {source}")]
    Keys {
        json: String,
        #[source]
        source: serde_json::Error,
    },
    /// `rows_affected` that is not a number.
    #[error("rows_affected `{text}`: {source}")]
    Rows {
        text: String,
        #[source]
        source: std::num::ParseIntError,
    },
    /// What is wrong with the event `event_id`.
    #[error("event {event_id}: {source}")]
    Event {
        event_id: String,
        #[source]
        source: Box<EventRowError>,
    },
    /// An event that cannot become a row.
    #[error(transparent)]
    Batch(deltalake::arrow::error::ArrowError),
}

/// A name that is not an operation or an event status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnknownName {
    #[error("unknown operation `{0}`; expected INSERT, UPSERT, UPDATE, DELETE or RUN")]
    Operation(String),
    #[error("unknown event status `{0}`")]
    Status(String),
}

impl<'de> Deserialize<'de> for Operation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Where an event is in its life: `pending` -> `running` -> `completed` or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    /// Waiting for a poller.
    Pending,
    /// Claimed by a poller (`claimed_by`) at `started_at`.
    Running,
    /// Applied; `rows_affected` says how many rows changed.
    Completed,
    /// Not applied; `error_message` says why.
    Failed,
}

impl EventStatus {
    /// The name stored in the events table (`pending`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Pending => "pending",
            EventStatus::Running => "running",
            EventStatus::Completed => "completed",
            EventStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for EventStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EventStatus {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, UnknownName> {
        match s {
            "pending" => Ok(EventStatus::Pending),
            "running" => Ok(EventStatus::Running),
            "completed" => Ok(EventStatus::Completed),
            "failed" => Ok(EventStatus::Failed),
            _ => Err(UnknownName::Status(s.to_string())),
        }
    }
}

/// A request, as a Databricks job (or `POST /sync`, `POST /events`) submits it: a table sync
/// (INSERT, UPSERT, UPDATE, DELETE of `source_table` into `target_table`) or a pipeline run
/// (RUN of `pipeline` for `country` with `params`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    /// INSERT, UPSERT, UPDATE, DELETE or RUN (any case).
    pub operation: Operation,
    /// Syncs: the table rows come from, `catalog.schema.table` (1 to 3 dotted names). Empty for
    /// RUN.
    #[serde(default)]
    pub source_table: String,
    /// Syncs: the SQL Server table written, `schema.table` or `table`. Empty for RUN.
    #[serde(default)]
    pub target_table: String,
    /// Key columns; UPSERT, UPDATE and DELETE need at least one.
    #[serde(default)]
    pub primary_keys: Vec<String>,
    /// One SQL boolean expression over the source's columns selecting the rows to sync.
    #[serde(default)]
    pub filter: Option<String>,
    /// Who asked for the sync (checked against the server's permissions).
    #[serde(default)]
    pub created_by: Option<String>,
    /// RUN: the pipeline, by name or file name under `pipelines/`.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// RUN: the country whose parameters the run uses.
    #[serde(default)]
    pub country: Option<String>,
    /// RUN: parameter overrides, the text of a JSON object of strings, numbers or booleans
    /// (only parameters the pipeline declares).
    #[serde(default)]
    pub params: Option<String>,
}

/// An event as stored: the request plus its status, timings and outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Unique id (a UUID); also the idempotency key of the SQL Server write.
    pub event_id: String,
    pub operation: Operation,
    pub source_table: String,
    pub target_table: String,
    pub primary_keys: Vec<String>,
    pub filter: Option<String>,
    pub status: EventStatus,
    /// Rows inserted, updated or deleted (completed events).
    pub rows_affected: Option<i64>,
    /// Why the event failed (failed events).
    pub error_message: Option<String>,
    #[serde(with = "timestamp")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    /// When the current claim started (running, completed and failed events).
    #[serde(with = "optional_timestamp")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(with = "optional_timestamp")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub completed_at: Option<DateTime<Utc>>,
    pub created_by: Option<String>,
    /// The worker (server) that claimed the event.
    pub claimed_by: Option<String>,
    /// RUN: the pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    /// RUN: the country.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// RUN: the parameter overrides, as JSON object text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<String>,
    /// RUN: the job that ran the pipeline (`GET /jobs/{id}` on the server that ran it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
}

/// How applying an event ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Outcome {
    /// Applied (or found already applied): the rows the write changed (a run: the rows its
    /// sinks wrote).
    Completed {
        rows_affected: u64,
        /// RUN: the job that ran the pipeline.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job_id: Option<String>,
    },
    /// Not applied: why. `refusal` says, by type, when the event was refused for being over a
    /// limit (the server audits it as `refused`); it is not stored with the event.
    Failed {
        error: String,
        #[serde(skip)]
        refusal: Option<Refusal>,
        /// RUN: the job that ran the pipeline, when one was started.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job_id: Option<String>,
    },
}

impl Outcome {
    /// What the events table stores for this outcome: the final status, the rows changed (a
    /// completion) and the error message (a failure).
    pub fn stored(&self) -> (EventStatus, Option<i64>, Option<&str>) {
        match self {
            Outcome::Completed { rows_affected, .. } => (
                EventStatus::Completed,
                Some(i64::try_from(*rows_affected).unwrap_or(i64::MAX)),
                None,
            ),
            Outcome::Failed { error, .. } => (EventStatus::Failed, None, Some(error.as_str())),
        }
    }

    /// The job a RUN event started, if any.
    pub fn job_id(&self) -> Option<&str> {
        match self {
            Outcome::Completed { job_id, .. } | Outcome::Failed { job_id, .. } => job_id.as_deref(),
        }
    }

    /// A completion of a sync that changed `rows_affected` rows.
    pub fn completed(rows_affected: u64) -> Self {
        Outcome::Completed {
            rows_affected,
            job_id: None,
        }
    }

    /// A failure (not a refusal) with its message.
    pub fn failed(error: impl Into<String>) -> Self {
        Outcome::Failed {
            error: error.into(),
            refusal: None,
            job_id: None,
        }
    }
}

impl NewEvent {
    /// A RUN request: `pipeline` for `country` with parameter overrides `params` (stored as the
    /// text of a JSON object, none when empty), asked for by `created_by` (none: a schedule slot).
    pub fn run(
        pipeline: &str,
        country: Option<&str>,
        params: &std::collections::BTreeMap<String, serde_json::Value>,
        created_by: Option<&str>,
    ) -> NewEvent {
        NewEvent {
            operation: Operation::Run,
            source_table: String::new(),
            target_table: String::new(),
            primary_keys: Vec::new(),
            filter: None,
            created_by: created_by.map(str::to_string),
            pipeline: Some(pipeline.to_string()),
            country: country.map(str::to_string),
            params: (!params.is_empty())
                .then(|| serde_json::to_string(params).expect("JSON values serialize")),
        }
    }

    /// Checks every field; the error names the field (`primary_keys: UPSERT needs at least one key`).
    pub fn validate(&self) -> Result<(), SyncError> {
        if self.operation == Operation::Run {
            self.validate_run()?;
        } else {
            source_table_parts(&self.source_table)?;
            check_target_table(&self.target_table)?;
            check_keys(self.operation, &self.primary_keys)?;
            if let Some(filter) = &self.filter {
                parse_filter(filter)?;
            }
            for (field, value) in [
                ("pipeline", &self.pipeline),
                ("country", &self.country),
                ("params", &self.params),
            ] {
                if value.is_some() {
                    return Err(SyncError::invalid(
                        field,
                        format!(
                            "only RUN events have one ({} syncs a table)",
                            self.operation
                        ),
                    ));
                }
            }
        }
        if let Some(by) = &self.created_by
            && by.chars().count() > MAX_NAME_CHARS
        {
            return Err(SyncError::invalid(
                "created_by",
                format!("longer than {MAX_NAME_CHARS} characters"),
            ));
        }
        Ok(())
    }
}

impl NewEvent {
    /// The checks of a RUN event's own fields: a pipeline name, a country name, params that are
    /// a JSON object of scalars, and none of a sync's fields. Whether the pipeline exists, lists
    /// the country and declares the params is checked against the project when the event runs.
    fn validate_run(&self) -> Result<(), SyncError> {
        for (field, empty) in [
            ("source_table", self.source_table.is_empty()),
            ("target_table", self.target_table.is_empty()),
            ("primary_keys", self.primary_keys.is_empty()),
            ("filter", self.filter.is_none()),
        ] {
            if !empty {
                return Err(SyncError::invalid(
                    field,
                    "a RUN event has none; it names `pipeline` (and `country`, `params`)",
                ));
            }
        }
        let pipeline = self.pipeline.as_deref().unwrap_or_default();
        if pipeline.is_empty() {
            return Err(SyncError::invalid("pipeline", "a RUN event needs one"));
        }
        if pipeline.chars().count() > MAX_NAME_CHARS
            || !pipeline
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
            || pipeline.starts_with('.')
        {
            return Err(SyncError::invalid(
                "pipeline",
                format!("`{pipeline}` is not a pipeline name (letters, digits, `_`, `-`, `.`)"),
            ));
        }
        if let Some(country) = &self.country {
            crate::pipeline::project::check_country(country)
                .map_err(|e| SyncError::invalid("country", e.to_string()))?;
        }
        if let Some(params) = &self.params {
            run_params(params)?;
        }
        Ok(())
    }
}

/// A RUN event's `params`: the text of a JSON object whose values are strings, numbers or
/// booleans, as (name, value) pairs.
pub fn run_params(text: &str) -> Result<Vec<(String, String)>, SyncError> {
    let invalid = |message: String| SyncError::invalid("params", message);
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let serde_json::Value::Object(map) = value else {
        return Err(invalid(
            "must be a JSON object of parameter names to values".into(),
        ));
    };
    param_pairs(map).map_err(|e| invalid(e.to_string()))
}

/// A parameter override that is not one: the field (`params.<name>`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ParamError {
    pub field: String,
    pub message: String,
}

/// Parameter overrides as (name, value) text pairs: names of letters, digits and `_`; values
/// strings, numbers or booleans.
pub fn param_pairs(
    params: impl IntoIterator<Item = (String, serde_json::Value)>,
) -> Result<Vec<(String, String)>, ParamError> {
    params
        .into_iter()
        .map(|(k, v)| {
            let error = |message: String| ParamError {
                field: format!("params.{k}"),
                message,
            };
            if k.is_empty() || !k.chars().all(|c| c.is_alphanumeric() || c == '_') {
                return Err(error(format!(
                    "`{k}` is not a parameter name (letters, digits, `_`)"
                )));
            }
            let value = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => return Err(error("expected a string, number or boolean".into())),
            };
            Ok((k, value))
        })
        .collect()
}

impl NewEvent {
    /// The event this request becomes once stored with `event_id` (pending, created now).
    pub fn pending(&self, event_id: &str) -> Event {
        Event {
            event_id: event_id.to_string(),
            operation: self.operation,
            source_table: self.source_table.clone(),
            target_table: self.target_table.clone(),
            primary_keys: self.primary_keys.clone(),
            filter: self.filter.clone(),
            status: EventStatus::Pending,
            rows_affected: None,
            error_message: None,
            created_at: Utc::now(),
            started_at: None,
            completed_at: None,
            created_by: self.created_by.clone(),
            claimed_by: None,
            pipeline: self.pipeline.clone(),
            country: self.country.clone(),
            params: self.params.clone(),
            job_id: None,
        }
    }
}

impl Event {
    /// The request this event carries.
    pub fn request(&self) -> NewEvent {
        NewEvent {
            operation: self.operation,
            source_table: self.source_table.clone(),
            target_table: self.target_table.clone(),
            primary_keys: self.primary_keys.clone(),
            filter: self.filter.clone(),
            created_by: self.created_by.clone(),
            pipeline: self.pipeline.clone(),
            country: self.country.clone(),
            params: self.params.clone(),
        }
    }
}

/// The dotted parts of a source table name (1 to 3 identifiers).
pub fn source_table_parts(table: &str) -> Result<Vec<&str>, SyncError> {
    validate_ident(table).map_err(|e| {
        SyncError::invalid(
            "source_table",
            format!("`{table}` is not a table name ({})", e.reason),
        )
    })
}

fn check_target_table(table: &str) -> Result<(), SyncError> {
    validate_ident(table).map(|_| ()).map_err(|e| {
        SyncError::invalid(
            "target_table",
            format!("`{table}` is not a table name ({})", e.reason),
        )
    })
}

fn check_keys(operation: Operation, keys: &[String]) -> Result<(), SyncError> {
    let invalid = |message: String| SyncError::invalid("primary_keys", message);
    if operation.needs_keys() && keys.is_empty() {
        return Err(invalid(format!("{operation} needs at least one key")));
    }
    for (i, key) in keys.iter().enumerate() {
        match validate_ident(key) {
            Ok(parts) if parts.len() == 1 => {}
            _ => return Err(invalid(format!("`{key}` is not a column name"))),
        }
        if keys[..i].contains(key) {
            return Err(invalid(format!("`{key}` is listed twice")));
        }
    }
    Ok(())
}

/// Parses a filter as exactly one SQL expression without subqueries, using only the expressions
/// and functions [`crate::sync::filter`] allows, and returns it normalised (comments dropped,
/// printed back by the parser), ready to be put in a `WHERE (...)`.
pub fn parse_filter(filter: &str) -> Result<String, SyncError> {
    let invalid = |message: String| SyncError::invalid("filter", message);
    if filter.trim().is_empty() {
        return Err(invalid("is empty; leave it out to sync every row".into()));
    }
    if filter.chars().count() > MAX_FILTER_CHARS {
        return Err(invalid(format!(
            "longer than {MAX_FILTER_CHARS} characters"
        )));
    }
    let dialect = GenericDialect {};
    let mut parser = Parser::new(&dialect)
        .try_with_sql(filter)
        .map_err(|e| invalid(format!("not a SQL expression: {e}")))?;
    let expr = parser
        .parse_expr()
        .map_err(|e| invalid(format!("not a SQL expression: {e}")))?;
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(invalid(format!(
            "must be one SQL expression, but `{}` follows it (at {})",
            next.token, next.span.start
        )));
    }
    let subquery = visit_expressions(&expr, |e| match e {
        SqlExpr::Subquery(_) | SqlExpr::Exists { .. } | SqlExpr::InSubquery { .. } => {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    });
    if subquery.is_break() {
        return Err(invalid(
            "subqueries are not allowed; use a condition on the source's columns".into(),
        ));
    }
    crate::sync::filter::check_bounded(&expr).map_err(|e| invalid(e.to_string()))?;
    Ok(expr.to_string())
}

/// Checks an event id (a UUID) and returns it in canonical form.
pub fn parse_event_id(id: &str) -> Result<String, SyncError> {
    uuid::Uuid::parse_str(id)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| SyncError::invalid("event_id", format!("`{id}` is not a UUID")))
}

/// Of pending `candidates` (oldest first), those a worker may claim: RUN events, and sync events
/// whose target table is not among `running` (the lowercased targets of running syncs) nor
/// that of an older candidate, so the events of one target are applied in order, one at a time.
pub fn claimable(candidates: Vec<Event>, running: &HashSet<String>) -> Vec<Event> {
    let mut held = running.clone();
    candidates
        .into_iter()
        .filter(|event| {
            event.operation == Operation::Run || held.insert(event.target_table.to_lowercase())
        })
        .collect()
}

/// The lowercased target tables of the running sync events among `events`.
pub fn running_targets<'a>(events: impl IntoIterator<Item = &'a Event>) -> HashSet<String> {
    events
        .into_iter()
        .filter(|e| e.status == EventStatus::Running && e.operation != Operation::Run)
        .map(|e| e.target_table.to_lowercase())
        .collect()
}

/// Checks a worker id: 1 to 200 characters.
pub fn check_worker(worker: &str) -> Result<(), SyncError> {
    if worker.is_empty() || worker.chars().count() > MAX_NAME_CHARS {
        return Err(SyncError::invalid(
            "worker",
            format!("must have 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    Ok(())
}

/// RFC 3339 timestamps (microseconds, `Z`).
mod timestamp {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// Optional RFC 3339 timestamps (`null` when absent).
mod optional_timestamp {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::timestamp::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| {
                DateTime::parse_from_rfc3339(&text)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(serde::de::Error::custom)
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(operation: Operation) -> NewEvent {
        NewEvent {
            operation,
            source_table: "main.sales.results".into(),
            target_table: "dbo.Results".into(),
            primary_keys: vec!["id".into()],
            filter: None,
            created_by: Some("job-42".into()),
            pipeline: None,
            country: None,
            params: None,
        }
    }

    #[test]
    fn operations_accept_any_case_and_serialize_uppercase() {
        let op: Operation = serde_json::from_str("\"upsert\"").unwrap();
        assert_eq!(op, Operation::Upsert);
        let op: Operation = serde_json::from_str("\"Delete\"").unwrap();
        assert_eq!(serde_json::to_string(&op).unwrap(), "\"DELETE\"");
        let err = serde_json::from_str::<Operation>("\"merge\"").unwrap_err();
        assert!(
            err.to_string().contains("unknown operation `merge`"),
            "{err}"
        );
        assert_eq!(
            serde_json::to_string(&EventStatus::Running).unwrap(),
            "\"running\""
        );
    }

    #[test]
    fn validation_names_the_field() {
        assert!(event(Operation::Upsert).validate().is_ok());
        let mut e = event(Operation::Upsert);
        e.primary_keys.clear();
        assert_eq!(
            e.validate().unwrap_err().to_string(),
            "primary_keys: UPSERT needs at least one key"
        );
        let mut e = event(Operation::Insert);
        e.primary_keys.clear();
        assert!(e.validate().is_ok());
        let mut e = event(Operation::Insert);
        e.target_table = "x;drop".into();
        let err = e.validate().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("target_table: `x;drop` is not a table name"),
            "{err}"
        );
        assert_eq!(err.field(), Some("target_table"));
        let mut e = event(Operation::Insert);
        e.source_table = "a.b.c.d".into();
        assert!(
            e.validate()
                .unwrap_err()
                .to_string()
                .starts_with("source_table: `a.b.c.d` is not a table name")
        );
        let mut e = event(Operation::Delete);
        e.primary_keys = vec!["id".into(), "a.b".into()];
        assert_eq!(
            e.validate().unwrap_err().to_string(),
            "primary_keys: `a.b` is not a column name"
        );
    }

    #[test]
    fn filters_are_one_expression() {
        assert_eq!(
            parse_filter("region = 'north' -- comment").unwrap(),
            "region = 'north'"
        );
        assert_eq!(
            parse_filter("amount > 10 AND id IN (1, 2)").unwrap(),
            "amount > 10 AND id IN (1, 2)"
        );
        let err = parse_filter("1=1; DROP TABLE x").unwrap_err().to_string();
        assert!(
            err.starts_with("filter: must be one SQL expression, but `;` follows it"),
            "{err}"
        );
        let err = parse_filter("1=1) UNION (SELECT 1")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("filter: must be one SQL expression"),
            "{err}"
        );
        let err = parse_filter("id IN (SELECT id FROM other)")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("filter: subqueries are not allowed"),
            "{err}"
        );
        assert!(parse_filter("  ").is_err());
        assert!(parse_filter("{{ env('X') }}").is_err());
    }

    #[test]
    fn event_ids_are_uuids() {
        let id = uuid::Uuid::new_v4().to_string();
        assert_eq!(parse_event_id(&id.to_uppercase()).unwrap(), id);
        assert!(parse_event_id("x' OR '1'='1").is_err());
    }

    #[test]
    fn events_round_trip_through_json() {
        let e = Event {
            event_id: uuid::Uuid::new_v4().to_string(),
            operation: Operation::Update,
            source_table: "a.b.c".into(),
            target_table: "dbo.T".into(),
            primary_keys: vec!["id".into()],
            filter: Some("x > 1".into()),
            status: EventStatus::Completed,
            rows_affected: Some(3),
            error_message: None,
            created_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            started_at: None,
            completed_at: DateTime::from_timestamp_micros(1_700_000_001_000_000),
            created_by: None,
            claimed_by: Some("w1".into()),
            pipeline: None,
            country: None,
            params: None,
            job_id: None,
        };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["created_at"], "2023-11-14T22:13:20.123456Z");
        assert_eq!(json["operation"], "UPDATE");
        assert_eq!(json["status"], "completed");
        assert_eq!(json["started_at"], serde_json::Value::Null);
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
    }
}
