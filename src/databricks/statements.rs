//! The SQL Statement Execution API: run a statement on a SQL warehouse, wait for it, and stream
//! its result as Arrow record batches, chunk after chunk, in order.
//!
//! Large results use `EXTERNAL_LINKS` + `ARROW_STREAM`: each chunk is an Arrow IPC stream behind
//! a short-lived presigned URL (fetched without our auth header, as Databricks requires). Small
//! results use `INLINE` + `JSON_ARRAY` (the only format `INLINE` allows). Either way each chunk
//! is converted to the engine types of [`crate::databricks::types`], which also refuses, before
//! any row is read, result columns of types the bridge does not read. The next chunk is
//! downloaded while the current one is consumed, so at most two chunks are held in memory.
//!
//! A statement still queued or running after the client's statement timeout is canceled, and so
//! is one whose waiting future is dropped (a canceled job, a shutdown).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::ipc::reader::StreamReader;
use futures::StreamExt;
use futures::stream::BoxStream;
use reqwest::Method;
use serde::Deserialize;

use crate::databricks::client::DatabricksClient;
use crate::databricks::types::ResultTypes;
use crate::databricks::{DatabricksError, Result};

/// How the result comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// `EXTERNAL_LINKS` + `ARROW_STREAM`: for tables and large results.
    ExternalLinks,
    /// `INLINE` + `JSON_ARRAY`: small results (at most 25 MiB), e.g. the events table.
    Inline,
}

/// A named parameter (`:name` in the statement). Values are sent as strings with a SQL type.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StatementParam {
    /// Marker name, without the colon.
    pub name: String,
    /// The value as text; `None` is NULL.
    pub value: Option<String>,
    /// SQL type: `STRING`, `BIGINT`, `INT`, `DOUBLE`, `BOOLEAN`, `DATE`, `TIMESTAMP`, `DECIMAL(p,s)`.
    #[serde(rename = "type")]
    pub sql_type: String,
}

impl StatementParam {
    /// A `STRING` parameter.
    pub fn string(name: &str, value: impl Into<String>) -> StatementParam {
        StatementParam {
            name: name.into(),
            value: Some(value.into()),
            sql_type: "STRING".into(),
        }
    }

    /// A parameter of another type (value as text; `None` is NULL).
    pub fn typed(name: &str, sql_type: &str, value: Option<String>) -> StatementParam {
        StatementParam {
            name: name.into(),
            value,
            sql_type: sql_type.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct StatementResponse {
    statement_id: String,
    status: StatementStatus,
    #[serde(default)]
    manifest: Option<Manifest>,
    #[serde(default)]
    result: Option<ResultData>,
}

#[derive(Debug, Deserialize)]
struct StatementStatus {
    state: String,
    #[serde(default)]
    error: Option<ServiceError>,
}

#[derive(Debug, Deserialize)]
struct ServiceError {
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    #[serde(default)]
    schema: Option<ResultSchema>,
    #[serde(default)]
    total_row_count: Option<u64>,
    #[serde(default)]
    truncated: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct ResultSchema {
    #[serde(default)]
    columns: Vec<ColumnInfo>,
}

/// A result column as the manifest describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct ColumnInfo {
    /// Column name.
    pub name: String,
    /// `LONG`, `BYTE`, `STRING`, `DECIMAL`, `TIMESTAMP_NTZ`, `ARRAY`, ...
    #[serde(default)]
    pub type_name: Option<String>,
    /// The full SQL type, e.g. `DECIMAL(18,4)`, `ARRAY<INT>`, `INTERVAL DAY TO SECOND`.
    #[serde(default)]
    pub type_text: Option<String>,
    /// Decimal precision.
    #[serde(default)]
    pub type_precision: Option<u8>,
    /// Decimal scale.
    #[serde(default)]
    pub type_scale: Option<i8>,
    /// 0-based position in the result.
    #[serde(default)]
    pub position: Option<u32>,
    /// The fields of an interval, e.g. `DAY TO SECOND`.
    #[serde(default)]
    pub type_interval_type: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ResultData {
    /// Row of the whole result this chunk starts at.
    #[serde(default)]
    row_offset: Option<u64>,
    #[serde(default)]
    data_array: Option<Vec<Vec<Option<String>>>>,
    #[serde(default)]
    external_links: Option<Vec<ExternalLink>>,
    #[serde(default)]
    next_chunk_internal_link: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct ExternalLink {
    chunk_index: u64,
    /// Row of the whole result this chunk starts at.
    #[serde(default)]
    row_offset: Option<u64>,
    external_link: String,
    #[serde(default)]
    http_headers: Option<HashMap<String, String>>,
    #[serde(default)]
    next_chunk_internal_link: Option<String>,
    /// When the presigned URL stops working (RFC 3339).
    #[serde(default)]
    expiration: Option<String>,
}

/// A link expiring sooner than this is replaced before it is used.
const LINK_MARGIN: Duration = Duration::from_secs(10);

/// A finished statement whose result can be streamed.
#[derive(Debug)]
pub struct StatementResult {
    client: DatabricksClient,
    /// Id of the statement on the warehouse.
    pub statement_id: String,
    /// Result columns.
    pub columns: Vec<ColumnInfo>,
    /// Rows in the whole result, as the manifest says.
    pub total_row_count: u64,
    first: Option<ResultData>,
}

impl DatabricksClient {
    /// Runs `statement` on `warehouse_id`, waits for it to finish, and returns its result.
    /// A statement that fails, is canceled or whose result was truncated is an error.
    pub async fn execute_statement(
        &self,
        warehouse_id: &str,
        statement: &str,
        params: &[StatementParam],
        disposition: Disposition,
    ) -> Result<StatementResult> {
        let (disposition_name, format) = match disposition {
            Disposition::ExternalLinks => ("EXTERNAL_LINKS", "ARROW_STREAM"),
            Disposition::Inline => ("INLINE", "JSON_ARRAY"),
        };
        let body = serde_json::json!({
            "warehouse_id": warehouse_id,
            "statement": statement,
            "parameters": params,
            "wait_timeout": "10s",
            "on_wait_timeout": "CONTINUE",
            "disposition": disposition_name,
            "format": format,
        });
        let deadline = tokio::time::Instant::now() + self.statement_timeout();
        let mut response: StatementResponse =
            self.post_json("/api/2.0/sql/statements", &body).await?;
        if matches!(response.status.state.as_str(), "PENDING" | "RUNNING") {
            // From here on the statement runs on the warehouse: if this future is dropped (a
            // job canceled, a server shutting down) or gives up, the statement is canceled.
            let mut guard = CancelOnDrop::new(self, &response.statement_id);
            let polled = tokio::time::timeout_at(deadline, self.wait_for(response)).await;
            guard.disarm();
            response = match polled {
                Ok(finished) => finished?,
                Err(_) => {
                    let statement_id = guard.statement_id.clone();
                    if let Err(e) = cancel_statement(self, &statement_id).await {
                        tracing::warn!(statement = %statement_id, error = %e, "could not cancel a statement that timed out");
                    }
                    return Err(DatabricksError::StatementTimeout {
                        statement_id,
                        timeout: self.statement_timeout(),
                    });
                }
            };
        }
        let StatementResponse {
            statement_id,
            status,
            manifest,
            result,
        } = response;
        if status.state != "SUCCEEDED" {
            let error = status.error.unwrap_or(ServiceError {
                error_code: None,
                message: None,
            });
            return Err(DatabricksError::Statement {
                statement_id,
                state: status.state,
                error_code: error.error_code,
                message: error.message.unwrap_or_else(|| "no message".into()),
            });
        }
        let manifest = manifest.ok_or_else(|| {
            DatabricksError::protocol("statement result", "SUCCEEDED without a manifest")
        })?;
        if manifest.truncated == Some(true) {
            return Err(DatabricksError::Statement {
                statement_id,
                state: "TRUNCATED".into(),
                error_code: None,
                message:
                    "the warehouse cut the result short (byte or row limit); no rows were used"
                        .into(),
            });
        }
        let columns = manifest.schema.map(|s| s.columns).unwrap_or_default();
        Ok(StatementResult {
            client: self.clone(),
            statement_id,
            columns,
            total_row_count: manifest.total_row_count.unwrap_or(0),
            first: result,
        })
    }
}

impl DatabricksClient {
    /// Polls a PENDING or RUNNING statement until it reaches a terminal state.
    async fn wait_for(&self, mut response: StatementResponse) -> Result<StatementResponse> {
        let mut wait = Duration::from_millis(100);
        while matches!(response.status.state.as_str(), "PENDING" | "RUNNING") {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
            response = self
                .get_json(&format!(
                    "/api/2.0/sql/statements/{}",
                    crate::databricks::files::encode_segment(&response.statement_id)
                ))
                .await?;
        }
        Ok(response)
    }
}

/// Cancels a statement when dropped while armed: the future waiting for the statement was
/// dropped or failed, and nobody will read its result.
struct CancelOnDrop {
    client: Option<DatabricksClient>,
    statement_id: String,
}

impl CancelOnDrop {
    fn new(client: &DatabricksClient, statement_id: &str) -> CancelOnDrop {
        CancelOnDrop {
            client: Some(client.clone()),
            statement_id: statement_id.to_string(),
        }
    }

    /// The statement finished (or is canceled explicitly): nothing to do on drop.
    fn disarm(&mut self) {
        self.client = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let statement_id = std::mem::take(&mut self.statement_id);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    match cancel_statement(&client, &statement_id).await {
                        Ok(()) => tracing::info!(statement = %statement_id, "canceled an abandoned statement"),
                        Err(e) => tracing::warn!(statement = %statement_id, error = %e, "could not cancel an abandoned statement"),
                    }
                });
            }
            Err(_) => {
                tracing::warn!(statement = %statement_id, "an abandoned statement could not be canceled: no runtime");
            }
        }
    }
}

/// A finished statement whose columns all have engine types: its rows can be streamed as
/// batches of [`TypedResult::schema`].
#[derive(Debug)]
pub struct TypedResult {
    result: StatementResult,
    types: Arc<ResultTypes>,
}

impl StatementResult {
    /// The result with the engine types of its columns; columns of types the bridge does not
    /// read (intervals, nested types, VOID...) are an error naming each with what to select.
    pub fn into_typed(self) -> Result<TypedResult> {
        let types = Arc::new(ResultTypes::new(&self.columns)?);
        Ok(TypedResult {
            result: self,
            types,
        })
    }
}

impl TypedResult {
    /// Id of the statement on the warehouse.
    pub fn statement_id(&self) -> &str {
        &self.result.statement_id
    }

    /// Result columns, as the manifest describes them.
    pub fn columns(&self) -> &[ColumnInfo] {
        &self.result.columns
    }

    /// Rows in the whole result, as the manifest says.
    pub fn total_row_count(&self) -> u64 {
        self.result.total_row_count
    }

    /// The engine schema of the batches.
    pub fn schema(&self) -> &SchemaRef {
        self.types.schema()
    }

    /// The batches of the result in engine types, chunk after chunk, in order. The next chunk
    /// is downloaded while the current one is consumed, so at most two chunks are held in memory.
    pub fn into_stream(self) -> BoxStream<'static, Result<RecordBatch>> {
        let TypedResult { result, types } = self;
        // Chunk descriptions, following each chunk's link to the next (cheap JSON calls).
        let client = result.client.clone();
        let descriptions = futures::stream::unfold(
            (Some(Ok(result.first.unwrap_or_default())), None::<String>),
            move |(current, next)| {
                let client = client.clone();
                async move {
                    let data: Result<ResultData> = match (current, next) {
                        (Some(d), _) => d,
                        (None, Some(link)) => client.get_json::<ResultData>(&link).await,
                        (None, None) => return None,
                    };
                    let next = match &data {
                        Ok(d) => d.next_chunk_internal_link.clone().or_else(|| {
                            d.external_links
                                .as_ref()
                                .and_then(|l| l.last())
                                .and_then(|l| l.next_chunk_internal_link.clone())
                        }),
                        Err(_) => None,
                    };
                    Some((data, (None, next)))
                }
            },
        );
        let client = result.client;
        let statement_id: Arc<str> = result.statement_id.into();
        descriptions
            .map(move |data| {
                let (client, types, id) = (client.clone(), types.clone(), statement_id.clone());
                async move { read_chunk(&client, &id, &types, &data?).await }
            })
            .buffered(2)
            .flat_map(|chunk: Result<Vec<RecordBatch>>| match chunk {
                Ok(batches) => futures::stream::iter(batches.into_iter().map(Ok)).boxed(),
                Err(e) => futures::stream::iter([Err(e)]).boxed(),
            })
            .boxed()
    }
}

impl StatementResult {
    /// The whole (small) result as text values, row by row, as `JSON_ARRAY` gives them.
    pub async fn into_text_rows(self) -> Result<Vec<Vec<Option<String>>>> {
        let mut rows = Vec::new();
        let mut data = self.first;
        while let Some(chunk) = data {
            let values = chunk.data_array.unwrap_or_default();
            rows.extend(values);
            data = match chunk.next_chunk_internal_link {
                Some(link) => Some(self.client.get_json::<ResultData>(&link).await?),
                None => None,
            };
        }
        Ok(rows)
    }

    /// `num_affected_rows` of a DML statement's result (0 when absent).
    pub async fn affected_rows(self) -> Result<u64> {
        let position = self
            .columns
            .iter()
            .position(|c| c.name == "num_affected_rows");
        let rows = self.into_text_rows().await?;
        Ok(position
            .and_then(|p| rows.first()?.get(p)?.as_deref()?.parse().ok())
            .unwrap_or(0))
    }
}

/// The batches of one chunk in engine types: an Arrow IPC stream behind each external link, or
/// inline strings.
async fn read_chunk(
    client: &DatabricksClient,
    statement_id: &str,
    types: &ResultTypes,
    data: &ResultData,
) -> Result<Vec<RecordBatch>> {
    if let Some(rows) = &data.data_array {
        return Ok(vec![types.from_text(rows, data.row_offset.unwrap_or(0))?]);
    }
    let mut batches = Vec::new();
    for link in data.external_links.iter().flatten() {
        let what = format!("result chunk {}", link.chunk_index);
        let bytes = download_chunk(client, statement_id, link).await?;
        let reader = StreamReader::try_new(std::io::Cursor::new(bytes), None)
            .map_err(|e| DatabricksError::protocol(what.clone(), e))?;
        let mut row = link.row_offset.unwrap_or(0);
        for batch in reader {
            let batch = batch.map_err(|e| DatabricksError::protocol(what.clone(), e))?;
            if batch.num_columns() != types.len() {
                return Err(DatabricksError::protocol(
                    what,
                    format!(
                        "{} columns in the Arrow stream, {} in the manifest",
                        batch.num_columns(),
                        types.len()
                    ),
                ));
            }
            batches.push(types.from_arrow(&batch, row)?);
            row += batch.num_rows() as u64;
        }
    }
    Ok(batches)
}

/// Why a download from a presigned link failed.
enum LinkFailure {
    /// Refused (403, or 400 as some stores answer): the link may have expired.
    Refused(DatabricksError),
    /// Worth another try: the connection failed, or the store answered 408, 429 or 5xx.
    Transient {
        error: DatabricksError,
        retry_after: Option<Duration>,
    },
    /// Anything else.
    Fatal(DatabricksError),
}

/// Downloads the chunk behind a presigned link. Transient failures are retried with backoff
/// (the client's retry policy, honouring `Retry-After`); a link that is refused, or about to
/// expire, is replaced once by a fresh one from
/// `GET /api/2.0/sql/statements/{id}/result/chunks/{n}`.
async fn download_chunk(
    client: &DatabricksClient,
    statement_id: &str,
    link: &ExternalLink,
) -> Result<bytes::Bytes> {
    let policy = client.retry_policy();
    let mut link = link.clone();
    let mut refreshed = false;
    if expires_soon(&link) {
        link = fresh_link(client, statement_id, link.chunk_index).await?;
        refreshed = true;
    }
    let (mut retries, mut delay) = (0, policy.min_delay);
    loop {
        let failure = match fetch_link(client, &link).await {
            Ok(bytes) => return Ok(bytes),
            Err(failure) => failure,
        };
        match failure {
            LinkFailure::Refused(error) if !refreshed => {
                tracing::info!(statement = %statement_id, chunk = link.chunk_index, error = %error, "presigned link refused; fetching a fresh one");
                link = fresh_link(client, statement_id, link.chunk_index).await?;
                refreshed = true;
            }
            LinkFailure::Transient { error, retry_after } if retries < policy.max_retries => {
                let wait = retry_after
                    .unwrap_or(delay)
                    .min(policy.max_delay.max(delay));
                tracing::warn!(statement = %statement_id, chunk = link.chunk_index, error = %error, wait_ms = wait.as_millis() as u64, "result chunk download will be retried");
                tokio::time::sleep(wait).await;
                delay = (delay * 2).min(policy.max_delay);
                retries += 1;
            }
            LinkFailure::Refused(error)
            | LinkFailure::Transient { error, .. }
            | LinkFailure::Fatal(error) => return Err(error),
        }
    }
}

/// Whether a link's `expiration` is past or near.
fn expires_soon(link: &ExternalLink) -> bool {
    let Some(at) = link
        .expiration
        .as_deref()
        .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
    else {
        return false;
    };
    let margin = chrono::Duration::from_std(LINK_MARGIN).unwrap_or_default();
    at.with_timezone(&chrono::Utc) - margin <= chrono::Utc::now()
}

/// A fresh link to chunk `n` of a statement's result.
async fn fresh_link(
    client: &DatabricksClient,
    statement_id: &str,
    chunk_index: u64,
) -> Result<ExternalLink> {
    let path = format!(
        "/api/2.0/sql/statements/{}/result/chunks/{chunk_index}",
        crate::databricks::files::encode_segment(statement_id)
    );
    let data: ResultData = client.get_json(&path).await?;
    data.external_links
        .into_iter()
        .flatten()
        .find(|l| l.chunk_index == chunk_index)
        .ok_or_else(|| {
            DatabricksError::protocol(path, format!("no external link for chunk {chunk_index}"))
        })
}

/// One download attempt. A presigned URL: it must not get our Authorization header, and its
/// query (the signature) must not appear in messages.
async fn fetch_link(
    client: &DatabricksClient,
    link: &ExternalLink,
) -> std::result::Result<bytes::Bytes, LinkFailure> {
    let mut request = client.http().get(&link.external_link);
    for (k, v) in link.http_headers.iter().flatten() {
        request = request.header(k, v);
    }
    let path = format!("external link of result chunk {}", link.chunk_index);
    let transport = |e: reqwest::Error| LinkFailure::Transient {
        error: DatabricksError::Transport {
            method: "GET".into(),
            path: path.clone(),
            message: e.without_url().to_string(),
        },
        retry_after: None,
    };
    let response = request.send().await.map_err(transport)?;
    let status = response.status();
    if !status.is_success() {
        let error = DatabricksError::Api {
            method: "GET".into(),
            path: path.clone(),
            status: status.as_u16(),
            error_code: None,
            message: "download of the result chunk failed".into(),
        };
        return Err(match status.as_u16() {
            400 | 403 => LinkFailure::Refused(error),
            408 | 429 | 500..=599 => LinkFailure::Transient {
                retry_after: crate::databricks::client::retry_after(response.headers()),
                error,
            },
            _ => LinkFailure::Fatal(error),
        });
    }
    response.bytes().await.map_err(transport)
}

/// Cancels a running statement (best effort).
pub async fn cancel_statement(client: &DatabricksClient, statement_id: &str) -> Result<()> {
    let path = format!(
        "/api/2.0/sql/statements/{}/cancel",
        crate::databricks::files::encode_segment(statement_id)
    );
    client.send(Method::POST, &path, Ok).await.map(drop)
}
