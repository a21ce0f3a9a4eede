//! SQL Statement Execution API: request validation, the statement state machine, result chunks
//! (INLINE JSON_ARRAY or EXTERNAL_LINKS with JSON_ARRAY / ARROW_STREAM) and the presigned-link endpoint.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema};
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use rusqlite::types::Value;
use serde_json::{Map, json};

use crate::engine::{self, Column, ExecError, Outcome, ResultSet};
use crate::error::{ApiError, json_response};
use crate::server::{Shared, lock};
use crate::translate;
use crate::types::{self, Kind};

/// Results larger than this fail with INLINE disposition (documented 25 MiB limit).
const INLINE_LIMIT: usize = 25 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Pending,
    Running,
    Succeeded,
    Failed,
    Canceled,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Pending => "PENDING",
            State::Running => "RUNNING",
            State::Succeeded => "SUCCEEDED",
            State::Failed => "FAILED",
            State::Canceled => "CANCELED",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    JsonArray,
    ArrowStream,
}

impl Format {
    fn as_str(self) -> &'static str {
        match self {
            Format::JsonArray => "JSON_ARRAY",
            Format::ArrowStream => "ARROW_STREAM",
        }
    }
}

/// A validated ExecuteStatementRequest.
#[derive(Debug)]
pub(crate) struct ExecRequest {
    statement: String,
    catalog: Option<String>,
    schema: Option<String>,
    params: Vec<(String, Value)>,
    external: bool,
    format: Format,
    row_limit: Option<usize>,
    wait_secs: u64,
    cancel_on_timeout: bool,
}

pub(crate) struct Statement {
    state: State,
    polls_left: u32,
    /// Request still to run (PENDING/RUNNING with pending_polls).
    pending: Option<ExecRequest>,
    external: bool,
    format: Format,
    result: Option<Arc<Materialized>>,
    error: Option<(String, String)>,
    /// Signature of this statement's external links.
    sig: String,
}

struct Materialized {
    columns: Vec<Column>,
    chunks: Vec<Chunk>,
    total_rows: usize,
    total_bytes: usize,
    truncated: bool,
}

struct Chunk {
    row_offset: usize,
    row_count: usize,
    byte_count: usize,
    payload: Payload,
}

enum Payload {
    Json(Vec<Vec<Option<String>>>),
    Arrow(Bytes),
}

const REQUEST_FIELDS: &[&str] = &[
    "statement",
    "warehouse_id",
    "catalog",
    "schema",
    "parameters",
    "wait_timeout",
    "on_wait_timeout",
    "disposition",
    "format",
    "row_limit",
    "byte_limit",
    "query_tags",
];

fn opt_str<'a>(
    obj: &'a Map<String, serde_json::Value>,
    field: &str,
) -> Result<Option<&'a str>, ApiError> {
    match obj.get(field) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(ApiError::invalid(format!(
            "Field '{field}' must be a string, got {other}."
        ))),
    }
}

fn opt_positive(
    obj: &Map<String, serde_json::Value>,
    field: &str,
) -> Result<Option<u64>, ApiError> {
    match obj.get(field) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => Ok(Some(n)),
            _ => Err(ApiError::invalid(format!(
                "Field '{field}' must be a positive integer, got {v}."
            ))),
        },
    }
}

/// Validates the request body and types the parameters.
fn validate(shared: &Shared, body: &[u8]) -> Result<ExecRequest, ApiError> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::malformed(format!("Request body is not valid JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::malformed("Request body must be a JSON object."))?;
    for k in obj.keys() {
        if !REQUEST_FIELDS.contains(&k.as_str()) {
            return Err(ApiError::invalid(format!(
                "Unknown field '{k}' in ExecuteStatementRequest."
            )));
        }
    }
    let statement = opt_str(obj, "statement")?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("Field 'statement' is required."))?
        .to_string();
    let warehouse = opt_str(obj, "warehouse_id")?
        .ok_or_else(|| ApiError::invalid("Field 'warehouse_id' is required."))?;
    if warehouse != shared.config.warehouse_id {
        return Err(ApiError::does_not_exist(format!(
            "warehouse_id: warehouse {warehouse} does not exist."
        )));
    }
    let catalog = opt_str(obj, "catalog")?.map(str::to_string);
    let schema = opt_str(obj, "schema")?.map(str::to_string);
    let wait = opt_str(obj, "wait_timeout")?.unwrap_or("10s");
    let secs = wait
        .strip_suffix('s')
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|n| *n == 0 || (5..=50).contains(n))
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "Invalid wait_timeout '{wait}': expected \"0s\" or between \"5s\" and \"50s\"."
            ))
        })?;
    let cancel_on_timeout = match opt_str(obj, "on_wait_timeout")?.unwrap_or("CONTINUE") {
        "CONTINUE" => false,
        "CANCEL" => true,
        other => {
            return Err(ApiError::invalid(format!(
                "Invalid on_wait_timeout '{other}': expected CONTINUE or CANCEL."
            )));
        }
    };
    let external = match opt_str(obj, "disposition")?.unwrap_or("INLINE") {
        "INLINE" => false,
        "EXTERNAL_LINKS" => true,
        other => {
            return Err(ApiError::invalid(format!(
                "Invalid disposition '{other}': expected INLINE or EXTERNAL_LINKS."
            )));
        }
    };
    let format = match opt_str(obj, "format")?.unwrap_or("JSON_ARRAY") {
        "JSON_ARRAY" => Format::JsonArray,
        "ARROW_STREAM" => Format::ArrowStream,
        "CSV" => {
            if !external {
                return Err(ApiError::invalid(
                    "format CSV is not supported with disposition INLINE (only JSON_ARRAY).",
                ));
            }
            return Err(ApiError::invalid(
                "format CSV is not supported by this double (use JSON_ARRAY or ARROW_STREAM).",
            ));
        }
        other => {
            return Err(ApiError::invalid(format!(
                "Invalid format '{other}': expected JSON_ARRAY, ARROW_STREAM or CSV."
            )));
        }
    };
    if format == Format::ArrowStream && !external {
        return Err(ApiError::invalid(
            "format ARROW_STREAM is not supported with disposition INLINE (INLINE supports only JSON_ARRAY).",
        ));
    }
    let row_limit = opt_positive(obj, "row_limit")?.map(|n| n as usize);
    let _byte_limit = opt_positive(obj, "byte_limit")?;
    if let Some(tags) = obj.get("query_tags")
        && !tags.is_array()
    {
        return Err(ApiError::invalid("Field 'query_tags' must be an array."));
    }

    let mut params = Vec::new();
    let mut names = BTreeSet::new();
    match obj.get("parameters") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let p = item.as_object().ok_or_else(|| {
                    ApiError::invalid(format!("parameters[{i}] must be an object."))
                })?;
                for k in p.keys() {
                    if !["name", "value", "type"].contains(&k.as_str()) {
                        return Err(ApiError::invalid(format!(
                            "Unknown field '{k}' in parameters[{i}]."
                        )));
                    }
                }
                let name = opt_str(p, "name")?
                    .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_alphanumeric() || c == '_'))
                    .ok_or_else(|| {
                        ApiError::invalid(format!(
                            "parameters[{i}].name is required (letters, digits, _)."
                        ))
                    })?;
                if !names.insert(name.to_string()) {
                    return Err(ApiError::invalid(format!(
                        "parameters: duplicate parameter name '{name}'."
                    )));
                }
                let ty = opt_str(p, "type")?.unwrap_or("STRING");
                let value = match p.get("value") {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(s)) => Some(s.as_str()),
                    Some(other) => {
                        return Err(ApiError::invalid(format!(
                            "parameters[{i}].value must be a string or null, got {other}."
                        )));
                    }
                };
                let bound = bind_value(ty, value)
                    .map_err(|m| ApiError::invalid(format!("parameters[{i}] ({name}): {m}")))?;
                params.push((name.to_string(), bound));
            }
        }
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "Field 'parameters' must be an array, got {other}."
            )));
        }
    }
    let markers = translate::parameter_markers(&statement).map_err(ApiError::invalid)?;
    if let Some(m) = markers.iter().find(|m| !names.contains(*m)) {
        return Err(ApiError::invalid(format!(
            "[UNBOUND_SQL_PARAMETER] Found the unbound parameter: {m}. Please, fix `parameters` and provide a mapping of the parameter."
        )));
    }
    if let Some(n) = names.iter().find(|n| !markers.contains(*n)) {
        return Err(ApiError::invalid(format!(
            "parameters: '{n}' is not used by the statement."
        )));
    }
    Ok(ExecRequest {
        statement,
        catalog,
        schema,
        params,
        external,
        format,
        row_limit,
        wait_secs: secs,
        cancel_on_timeout,
    })
}

/// Types a parameter value as SQLite value by its declared Databricks type.
fn bind_value(ty: &str, value: Option<&str>) -> Result<Value, String> {
    let t = ty.trim().to_ascii_uppercase();
    let base = t.split('(').next().unwrap_or("").trim().to_string();
    let known = [
        "STRING",
        "VARCHAR",
        "CHAR",
        "BIGINT",
        "LONG",
        "INT",
        "INTEGER",
        "SMALLINT",
        "SHORT",
        "TINYINT",
        "BYTE",
        "DOUBLE",
        "FLOAT",
        "REAL",
        "DECIMAL",
        "DEC",
        "NUMERIC",
        "BOOLEAN",
        "DATE",
        "TIMESTAMP",
        "TIMESTAMP_NTZ",
        "TIMESTAMP_LTZ",
    ];
    if !known.contains(&base.as_str()) {
        return Err(format!("unsupported parameter type '{ty}'"));
    }
    if base == "DECIMAL" || base == "DEC" || base == "NUMERIC" {
        if t.contains('(') && Kind::from_decltype(&t).is_none() {
            return Err(format!("invalid type '{ty}'"));
        }
    } else if t.contains('(') && !matches!(base.as_str(), "VARCHAR" | "CHAR") {
        return Err(format!("invalid type '{ty}'"));
    }
    let Some(v) = value else {
        return Ok(Value::Null);
    };
    let bad = || format!("value {v:?} is not a valid {ty}");
    Ok(match base.as_str() {
        "BIGINT" | "LONG" | "INT" | "INTEGER" | "SMALLINT" | "SHORT" | "TINYINT" | "BYTE" => {
            let i: i64 = v.trim().parse().map_err(|_| bad())?;
            let fits = match base.as_str() {
                "INT" | "INTEGER" => i32::try_from(i).is_ok(),
                "SMALLINT" | "SHORT" => i16::try_from(i).is_ok(),
                "TINYINT" | "BYTE" => i8::try_from(i).is_ok(),
                _ => true,
            };
            if !fits {
                return Err(bad());
            }
            Value::Integer(i)
        }
        "DOUBLE" | "FLOAT" | "REAL" => Value::Real(v.trim().parse().map_err(|_| bad())?),
        "BOOLEAN" => match v.trim().to_ascii_lowercase().as_str() {
            "true" => Value::Integer(1),
            "false" => Value::Integer(0),
            _ => return Err(bad()),
        },
        "DECIMAL" | "DEC" | "NUMERIC" => {
            let scale = match Kind::from_decltype(&t) {
                Some(Kind::Decimal(_, s)) => s,
                _ => 0,
            };
            types::parse_decimal(v, scale).ok_or_else(bad)?;
            Value::Text(v.trim().to_string())
        }
        "DATE" => {
            types::parse_date(v)
                .filter(|_| v.trim().len() == 10)
                .ok_or_else(bad)?;
            Value::Text(v.trim().to_string())
        }
        "TIMESTAMP" | "TIMESTAMP_NTZ" | "TIMESTAMP_LTZ" => {
            types::parse_timestamp(v).ok_or_else(bad)?;
            Value::Text(v.to_string())
        }
        _ => Value::Text(v.to_string()),
    })
}

/// Turns a result set into chunks of `chunk_rows` rows in the requested format.
fn materialize(
    rs: ResultSet,
    format: Format,
    chunk_rows: usize,
) -> Result<Materialized, ExecError> {
    let chunk_rows = chunk_rows.max(1);
    let arrow_err = |e: arrow::error::ArrowError| ExecError {
        code: "INTERNAL_ERROR",
        message: format!("arrow: {e}"),
    };
    let schema = Arc::new(Schema::new(
        rs.columns
            .iter()
            .map(|c| Field::new(&c.name, c.kind.arrow_type(), true))
            .collect::<Vec<_>>(),
    ));
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < rs.rows {
        let end = (start + chunk_rows).min(rs.rows);
        let payload = match format {
            Format::JsonArray => Payload::Json(
                (start..end)
                    .map(|r| {
                        rs.columns
                            .iter()
                            .zip(&rs.data)
                            .map(|(c, d)| types::render(&d[r], c.kind))
                            .collect()
                    })
                    .collect(),
            ),
            Format::ArrowStream => {
                let arrays = rs
                    .columns
                    .iter()
                    .zip(&rs.data)
                    .map(|(c, d)| types::build_array(c.kind, &d[start..end]))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(arrow_err)?;
                let batch = RecordBatch::try_new_with_options(
                    schema.clone(),
                    arrays,
                    &RecordBatchOptions::new().with_row_count(Some(end - start)),
                )
                .map_err(arrow_err)?;
                let mut w = StreamWriter::try_new(Vec::new(), &schema).map_err(arrow_err)?;
                w.write(&batch).map_err(arrow_err)?;
                w.finish().map_err(arrow_err)?;
                Payload::Arrow(Bytes::from(w.into_inner().map_err(arrow_err)?))
            }
        };
        let byte_count = match &payload {
            Payload::Json(rows) => serde_json::to_vec(rows).map(|v| v.len()).unwrap_or(0),
            Payload::Arrow(b) => b.len(),
        };
        chunks.push(Chunk {
            row_offset: start,
            row_count: end - start,
            byte_count,
            payload,
        });
        start = end;
    }
    Ok(Materialized {
        columns: rs.columns,
        total_rows: rs.rows,
        total_bytes: chunks.iter().map(|c| c.byte_count).sum(),
        chunks,
        truncated: rs.truncated,
    })
}

type RunResult = Result<Arc<Materialized>, (String, String)>;

/// Runs a request on the blocking pool; SQL errors become the FAILED status error.
async fn run(shared: Arc<Shared>, req: ExecRequest) -> RunResult {
    let joined = tokio::task::spawn_blocking(move || -> RunResult {
        let fail = |e: ExecError| (e.code.to_string(), e.message);
        let outcome = {
            let db = lock(&shared.db);
            engine::run(&db, &req.statement, req.catalog.as_deref(), req.schema.as_deref(), &req.params, req.row_limit)
                .map_err(fail)?
        };
        let rs = match outcome {
            Outcome::Rows(rs) => rs,
            Outcome::CreateVolume { path, if_not_exists } => {
                if !shared.add_volume_path(&path) && !if_not_exists {
                    return Err((
                        "BAD_REQUEST".into(),
                        format!("[RESOURCE_ALREADY_EXISTS] Volume {path} already exists."),
                    ));
                }
                ResultSet::default()
            }
        };
        let m = materialize(rs, req.format, shared.config.chunk_rows).map_err(fail)?;
        if !req.external && m.total_bytes > INLINE_LIMIT {
            return Err((
                "BAD_REQUEST".into(),
                format!(
                    "The result ({} bytes) exceeds the 25 MiB limit of INLINE disposition; use EXTERNAL_LINKS.",
                    m.total_bytes
                ),
            ));
        }
        Ok(Arc::new(m))
    })
    .await;
    joined.unwrap_or_else(|e| {
        Err((
            "INTERNAL_ERROR".into(),
            format!("statement task failed: {e}"),
        ))
    })
}

fn finish(st: &mut Statement, r: RunResult) {
    if st.state == State::Canceled {
        return;
    }
    match r {
        Ok(m) => {
            st.state = State::Succeeded;
            st.result = Some(m);
        }
        Err((code, message)) => {
            st.state = State::Failed;
            st.error = Some((code, message));
        }
    }
}

/// `POST /api/2.0/sql/statements`
pub(crate) async fn execute(shared: &Arc<Shared>, body: &[u8]) -> Result<Response, ApiError> {
    let req = validate(shared, body)?;
    let (wait_secs, cancel_on_timeout) = (req.wait_secs, req.cancel_on_timeout);
    let id = uuid::Uuid::new_v4().to_string();
    let mut st = Statement {
        state: State::Pending,
        polls_left: shared.config.pending_polls,
        pending: None,
        external: req.external,
        format: req.format,
        result: None,
        error: None,
        sig: uuid::Uuid::new_v4().simple().to_string(),
    };
    if shared.config.pending_polls == 0 {
        let r = run(shared.clone(), req).await;
        finish(&mut st, r);
    } else if cancel_on_timeout && wait_secs > 0 {
        // The statement would not finish within wait_timeout: on_wait_timeout=CANCEL cancels it.
        st.state = State::Canceled;
    } else {
        st.pending = Some(req);
    }
    let body = statement_json(shared, &id, &st);
    lock(&shared.statements).insert(id, st);
    Ok(json_response(StatusCode::OK, &body))
}

fn check_id(id: &str) -> Result<(), ApiError> {
    uuid::Uuid::parse_str(id)
        .map(|_| ())
        .map_err(|_| ApiError::invalid(format!("statement_id '{id}' is not a valid statement id.")))
}

fn missing(id: &str) -> ApiError {
    ApiError::does_not_exist(format!("The statement {id} does not exist."))
}

/// `GET /api/2.0/sql/statements/{id}`
pub(crate) async fn get(shared: &Arc<Shared>, id: &str) -> Result<Response, ApiError> {
    check_id(id)?;
    let to_run = {
        let mut map = lock(&shared.statements);
        let st = map.get_mut(id).ok_or_else(|| missing(id))?;
        match st.state {
            State::Pending | State::Running if st.polls_left > 0 => {
                st.polls_left -= 1;
                st.state = State::Running;
                None
            }
            State::Pending | State::Running => {
                st.state = State::Running;
                st.pending.take()
            }
            _ => None,
        }
    };
    if let Some(req) = to_run {
        let r = run(shared.clone(), req).await;
        if let Some(st) = lock(&shared.statements).get_mut(id) {
            finish(st, r);
        }
    }
    let map = lock(&shared.statements);
    let st = map.get(id).ok_or_else(|| missing(id))?;
    Ok(json_response(
        StatusCode::OK,
        &statement_json(shared, id, st),
    ))
}

/// `POST /api/2.0/sql/statements/{id}/cancel`
pub(crate) fn cancel(shared: &Shared, id: &str) -> Result<Response, ApiError> {
    check_id(id)?;
    let mut map = lock(&shared.statements);
    let st = map.get_mut(id).ok_or_else(|| missing(id))?;
    if matches!(st.state, State::Pending | State::Running) {
        st.state = State::Canceled;
        st.pending = None;
    }
    Ok(json_response(StatusCode::OK, &json!({})))
}

/// `GET /api/2.0/sql/statements/{id}/result/chunks/{n}`
pub(crate) fn chunk(shared: &Shared, id: &str, n: &str) -> Result<Response, ApiError> {
    check_id(id)?;
    let idx: usize = n
        .parse()
        .map_err(|_| ApiError::invalid(format!("chunk_index '{n}' is not a valid index.")))?;
    let map = lock(&shared.statements);
    let st = map.get(id).ok_or_else(|| missing(id))?;
    let m = match (&st.state, &st.result) {
        (State::Succeeded, Some(m)) => m,
        (s, _) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_STATE",
                format!(
                    "The statement {id} is {}; results are only available once it SUCCEEDED.",
                    s.as_str()
                ),
            ));
        }
    };
    if idx >= m.chunks.len() {
        return Err(ApiError::invalid(format!(
            "chunk_index {idx} is out of range: the result has {} chunks.",
            m.chunks.len()
        )));
    }
    Ok(json_response(
        StatusCode::OK,
        &result_json(shared, id, st, m, idx),
    ))
}

fn manifest_json(st: &Statement, m: &Materialized) -> serde_json::Value {
    let columns: Vec<serde_json::Value> = m
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut col = json!({
                "name": c.name,
                "type_name": c.kind.type_name(),
                "type_text": c.kind.type_text(),
                "position": i,
            });
            if let Kind::Decimal(p, s) = c.kind {
                col["type_precision"] = json!(p);
                col["type_scale"] = json!(s);
            }
            if let Some(fields) = c.kind.interval_type() {
                col["type_interval_type"] = json!(fields);
            }
            col
        })
        .collect();
    let mut schema = json!({ "column_count": m.columns.len() });
    if !columns.is_empty() {
        schema["columns"] = json!(columns);
    }
    let mut manifest = json!({
        "format": st.format.as_str(),
        "schema": schema,
        "total_chunk_count": m.chunks.len(),
        "total_row_count": m.total_rows,
        "total_byte_count": m.total_bytes,
        "truncated": m.truncated,
    });
    if !m.chunks.is_empty() {
        manifest["chunks"] = json!(
            m.chunks
                .iter()
                .enumerate()
                .map(|(i, c)| json!({
                    "chunk_index": i,
                    "row_offset": c.row_offset,
                    "row_count": c.row_count,
                    "byte_count": c.byte_count,
                }))
                .collect::<Vec<_>>()
        );
    }
    manifest
}

/// The ResultData of chunk `idx`: inline rows or one external link.
fn result_json(
    shared: &Shared,
    id: &str,
    st: &Statement,
    m: &Materialized,
    idx: usize,
) -> serde_json::Value {
    let Some(c) = m.chunks.get(idx) else {
        return json!({});
    };
    let mut out = json!({
        "chunk_index": idx,
        "row_offset": c.row_offset,
        "row_count": c.row_count,
        "byte_count": c.byte_count,
    });
    if idx + 1 < m.chunks.len() {
        out["next_chunk_index"] = json!(idx + 1);
        out["next_chunk_internal_link"] = json!(format!(
            "/api/2.0/sql/statements/{id}/result/chunks/{}",
            idx + 1
        ));
    }
    if st.external {
        let expires = chrono::Utc::now()
            + chrono::Duration::from_std(shared.config.link_ttl)
                .unwrap_or(chrono::Duration::minutes(15));
        let exp = expires.timestamp_millis();
        out["external_link"] = json!(format!(
            "{}/__external/{id}/{idx}?exp={exp}&sig={}",
            shared.base_url,
            link_signature(&st.sig, id, idx, exp)
        ));
        out["expiration"] = json!(expires.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        json!({ "external_links": [out] })
    } else {
        if let Payload::Json(rows) = &c.payload {
            out["data_array"] = json!(rows);
        }
        out
    }
}

fn statement_json(shared: &Shared, id: &str, st: &Statement) -> serde_json::Value {
    let mut status = json!({ "state": st.state.as_str() });
    if let Some((code, message)) = &st.error {
        status["error"] = json!({ "error_code": code, "message": message });
    }
    let mut out = json!({ "statement_id": id, "status": status });
    if st.state == State::Succeeded
        && let Some(m) = &st.result
    {
        out["manifest"] = manifest_json(st, m);
        out["result"] = result_json(shared, id, st, m, 0);
    }
    out
}

/// The signature of an external link: binds the statement's secret, the chunk and the expiry.
fn link_signature(secret: &str, id: &str, idx: usize, exp: i64) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    (secret, id, idx, exp).hash(&mut h);
    format!("{:016x}", h.finish())
}

/// `GET /__external/{id}/{chunk}?exp=...&sig=...`: the presigned-URL stand-in. No Authorization
/// allowed; a wrong signature or a link past its expiry is 403, as with cloud storage.
pub(crate) fn external(
    shared: &Shared,
    rest: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    if headers.contains_key(header::AUTHORIZATION) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "External links are presigned URLs: the request must not carry an Authorization header.",
        ));
    }
    let (id, n) = rest
        .split_once('/')
        .ok_or_else(|| ApiError::not_found("No such external link."))?;
    let param = |name: &str| -> Option<String> {
        form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let sig = param("sig");
    let exp = param("exp").and_then(|e| e.parse::<i64>().ok());
    let map = lock(&shared.statements);
    let forbidden = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "Signature does not match.",
        )
    };
    let st = map.get(id).ok_or_else(forbidden)?;
    let idx = n.parse::<usize>().ok();
    let (Some(exp), Some(idx)) = (exp, idx) else {
        return Err(forbidden());
    };
    if sig.as_deref() != Some(link_signature(&st.sig, id, idx, exp).as_str()) {
        return Err(forbidden());
    }
    if chrono::Utc::now().timestamp_millis() > exp {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Request has expired.",
        ));
    }
    let m = st
        .result
        .as_ref()
        .ok_or_else(|| ApiError::not_found("No result for this link."))?;
    let c = m
        .chunks
        .get(idx)
        .ok_or_else(|| ApiError::not_found("No such chunk."))?;
    let (ct, body) = match &c.payload {
        Payload::Arrow(b) => ("application/vnd.apache.arrow.stream", b.clone()),
        Payload::Json(rows) => (
            "application/json",
            Bytes::from(serde_json::to_vec(rows).unwrap_or_default()),
        ),
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, ct)
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::from(body))
        .map_err(|e| ApiError::internal(e.to_string()))
}
