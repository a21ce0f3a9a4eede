//! The HTTP client every Databricks call goes through: auth header, JSON errors, and retries of
//! throttled or unavailable answers (429, 502, 503, 504) honouring `Retry-After`, with backoff.
//!
//! A request that may already have been carried out is not replayed: submitting a statement
//! (`POST /api/2.0/sql/statements`) is retried only on 429 and 503 (refused before running) and on
//! failures to connect, never on 502/504, after which the statement may have run.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::databricks::auth::TokenSource;
use crate::databricks::config::DatabricksConfig;
use crate::databricks::{DatabricksError, Result};

/// Sent as `User-Agent` on every request.
pub(crate) const USER_AGENT: &str = concat!("sql-databricks-bridge/", env!("CARGO_PKG_VERSION"));
/// A `Retry-After` longer than this is cut to it.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// How failed requests are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: usize,
    /// First backoff delay (doubles each time, with jitter) when no `Retry-After` is given.
    pub min_delay: Duration,
    /// Longest backoff delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 6,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// A client of one workspace. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DatabricksClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    host: String,
    tokens: TokenSource,
    warehouse_id: Option<String>,
    retry: RetryPolicy,
    statement_timeout: Duration,
}

/// One failed attempt, and whether (and when) to try again.
struct Attempt {
    error: DatabricksError,
    retry: bool,
    retry_after: Option<Duration>,
}

#[derive(Deserialize)]
struct ApiErrorBody {
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl DatabricksClient {
    /// A client for a resolved configuration.
    pub fn new(config: &DatabricksConfig) -> Result<DatabricksClient> {
        Self::with_retry(config, RetryPolicy::default())
    }

    /// A client with its own retry policy.
    pub fn with_retry(config: &DatabricksConfig, retry: RetryPolicy) -> Result<DatabricksClient> {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| DatabricksError::Config {
                origin: config.origin.clone(),
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(DatabricksClient {
            inner: Arc::new(Inner {
                http,
                host: config.host.clone(),
                tokens: TokenSource::new(config.auth.clone()),
                warehouse_id: config.warehouse_id.clone(),
                retry,
                statement_timeout: config.statement_timeout,
            }),
        })
    }

    /// The workspace URL.
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// The configured default SQL warehouse.
    pub fn warehouse_id(&self) -> Option<&str> {
        self.inner.warehouse_id.as_deref()
    }

    /// How long a statement may take before it is canceled.
    pub fn statement_timeout(&self) -> Duration {
        self.inner.statement_timeout
    }

    /// How failed requests are retried (also used for presigned downloads).
    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        self.inner.retry
    }

    /// The plain HTTP client (no auth), for presigned URLs.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// Sends `method path` with the auth header, retrying throttled and unavailable answers.
    /// `build` adds the body and headers; it is called again for every attempt, so bodies
    /// must be re-creatable. Returns the successful response; error statuses become
    /// [`DatabricksError::Api`] with the body's `error_code` and `message`.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        build: impl Fn(RequestBuilder) -> Result<RequestBuilder>,
    ) -> Result<Response> {
        let policy = self.inner.retry;
        let attempt = || self.attempt(method.clone(), path, &build);
        attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(policy.min_delay)
                    .with_max_delay(policy.max_delay)
                    .with_max_times(policy.max_retries)
                    .with_jitter(),
            )
            .when(|a: &Attempt| a.retry)
            .adjust(|a: &Attempt, backoff| backoff.map(|d| a.retry_after.unwrap_or(d)))
            .notify(|a: &Attempt, wait| {
                tracing::warn!(error = %a.error, wait_ms = wait.as_millis() as u64, "Databricks request will be retried");
            })
            .await
            .map_err(|a| a.error)
    }

    async fn attempt(
        &self,
        method: Method,
        path: &str,
        build: &impl Fn(RequestBuilder) -> Result<RequestBuilder>,
    ) -> std::result::Result<Response, Attempt> {
        let fatal = |error| Attempt {
            error,
            retry: false,
            retry_after: None,
        };
        let token = self
            .inner
            .tokens
            .bearer(&self.inner.http, &self.inner.host)
            .await
            .map_err(fatal)?;
        let request = self
            .inner
            .http
            .request(method.clone(), format!("{}{path}", self.inner.host))
            .bearer_auth(token.expose());
        let request = build(request).map_err(fatal)?;
        let shown_path = path.split('?').next().unwrap_or(path).to_string();
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                // Only failures to connect are surely unsent; anything later may have run.
                let retry = e.is_connect();
                return Err(Attempt {
                    error: DatabricksError::Transport {
                        method: method.to_string(),
                        path: shown_path,
                        message: e.without_url().to_string(),
                    },
                    retry,
                    retry_after: None,
                });
            }
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = retry_after(response.headers());
        let body = response.text().await.unwrap_or_default();
        let error = api_error(&method, &shown_path, status, &body);
        let retry = match status.as_u16() {
            429 | 503 => true,
            502 | 504 => replay_safe(&method, &shown_path),
            _ => false,
        };
        if status == StatusCode::UNAUTHORIZED {
            // An OAuth token may have been revoked early: the next call fetches a new one.
            self.inner.tokens.invalidate().await;
        }
        Err(Attempt {
            error,
            retry,
            retry_after,
        })
    }

    /// `GET path`, answer parsed as JSON.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let response = self.send(Method::GET, path, Ok).await?;
        read_json(response, path).await
    }

    /// `POST path` with a JSON body, answer parsed as JSON.
    pub async fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T> {
        let response = self.send(Method::POST, path, |r| Ok(r.json(body))).await?;
        read_json(response, path).await
    }

    /// The user (or service principal) the credentials belong to.
    pub async fn current_user(&self) -> Result<String> {
        #[derive(Deserialize)]
        struct Me {
            #[serde(rename = "userName")]
            user_name: String,
        }
        let me: Me = self.get_json("/api/2.0/preview/scim/v2/Me").await?;
        Ok(me.user_name)
    }

    /// A SQL warehouse's name and state (`RUNNING`, `STOPPED`, ...).
    pub async fn warehouse(&self, id: &str) -> Result<WarehouseInfo> {
        let path = format!(
            "/api/2.0/sql/warehouses/{}",
            crate::databricks::files::encode_segment(id)
        );
        self.get_json(&path).await
    }
}

/// What `GET /api/2.0/sql/warehouses/{id}` tells.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct WarehouseInfo {
    /// Warehouse id.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// `STARTING`, `RUNNING`, `STOPPING`, `STOPPED`, `DELETED`...
    #[serde(default)]
    pub state: String,
}

async fn read_json<T: DeserializeOwned>(response: Response, path: &str) -> Result<T> {
    let body = response
        .bytes()
        .await
        .map_err(|e| DatabricksError::Transport {
            method: "read".into(),
            path: path.to_string(),
            message: e.without_url().to_string(),
        })?;
    serde_json::from_slice(&body).map_err(|e| DatabricksError::protocol(path.to_string(), e))
}

/// The error of a non-2xx answer, from Databricks' `{error_code, message}` body when it has one.
pub(crate) fn api_error(
    method: &Method,
    path: &str,
    status: StatusCode,
    body: &str,
) -> DatabricksError {
    let parsed: Option<ApiErrorBody> = serde_json::from_str(body).ok();
    let (error_code, message) = match parsed {
        Some(b) if b.error_code.is_some() || b.message.is_some() => (
            b.error_code,
            b.message.unwrap_or_else(|| "no message".into()),
        ),
        _ => {
            let text: String = body.trim().chars().take(300).collect();
            (
                None,
                if text.is_empty() {
                    status
                        .canonical_reason()
                        .unwrap_or("no message")
                        .to_string()
                } else {
                    text
                },
            )
        }
    };
    DatabricksError::Api {
        method: method.to_string(),
        path: path.to_string(),
        status: status.as_u16(),
        error_code,
        message,
    }
}

/// Whether a request may be sent again after an answer that does not say whether it was carried
/// out (502, 504): reads, uploads with overwrite, deletes and cancels may; a POST submitting a
/// statement may not (an INSERT would run twice).
fn replay_safe(method: &Method, path: &str) -> bool {
    *method != Method::POST || path.ends_with("/cancel")
}

/// `Retry-After` as seconds or an HTTP date, capped.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
                .to_std()
                .unwrap_or_default()
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(RETRY_AFTER, "100000".parse().unwrap());
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
    }

    #[test]
    fn statements_are_not_replayed_after_an_ambiguous_answer() {
        assert!(!replay_safe(&Method::POST, "/api/2.0/sql/statements"));
        assert!(replay_safe(
            &Method::POST,
            "/api/2.0/sql/statements/abc/cancel"
        ));
        assert!(replay_safe(&Method::GET, "/api/2.0/sql/statements/abc"));
        assert!(replay_safe(
            &Method::PUT,
            "/api/2.0/fs/files/Volumes/a/b/c/f"
        ));
    }

    #[test]
    fn api_errors_use_the_documented_body() {
        let e = api_error(
            &Method::GET,
            "/api/2.0/fs/files/Volumes/a",
            StatusCode::NOT_FOUND,
            r#"{"error_code":"NOT_FOUND","message":"no such file"}"#,
        );
        assert!(e.is_not_found());
        assert_eq!(
            e.to_string(),
            "Databricks GET /api/2.0/fs/files/Volumes/a answered 404 NOT_FOUND: no such file"
        );
        let e = api_error(&Method::POST, "/x", StatusCode::BAD_GATEWAY, "");
        assert_eq!(
            e.to_string(),
            "Databricks POST /x answered 502: Bad Gateway"
        );
    }
}
