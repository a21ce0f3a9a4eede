//! The HTTP side: shared state, request recording, fault injection, routing, authentication,
//! and the small endpoints (OAuth M2M token, SCIM Me, SQL warehouse).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use rusqlite::Connection;
use serde_json::json;

use crate::error::{ApiError, json_response};
use crate::statements::Statement;
use crate::{DoubleConfig, RecordedRequest, files, statements};

/// Largest non-file request body the double buffers (JSON bodies are small).
const MAX_BUFFERED_BODY: usize = 64 * 1024 * 1024;

pub(crate) struct Injection {
    /// Only requests of this method (any method when `None`).
    pub method: Option<String>,
    pub prefix: String,
    pub status: u16,
    pub retry_after: Option<u64>,
    pub remaining: u32,
    /// The request is carried out first and only its answer is replaced (a gateway timing out
    /// after the backend did the work).
    pub after_running: bool,
}

/// An injected answer, and whether the request is to be carried out anyway.
struct Injected {
    response: Response,
    after_running: bool,
}

/// State shared by the request handlers and the `DatabricksDouble` handle.
pub(crate) struct Shared {
    pub config: DoubleConfig,
    pub base_url: String,
    /// Root of the Files API storage; `<root>/Volumes/...` mirrors `/Volumes/...`.
    pub root: tempfile::TempDir,
    pub db: Mutex<Connection>,
    pub requests: Mutex<Vec<RecordedRequest>>,
    pub injections: Mutex<Vec<Injection>>,
    /// OAuth access tokens issued, with their expiry.
    pub tokens: Mutex<HashMap<String, Instant>>,
    pub statements: Mutex<HashMap<String, Statement>>,
    /// `/Volumes/<catalog>/<schema>/<volume>` of every created volume.
    pub volumes: Mutex<BTreeSet<String>>,
    /// Serialises namespace changes (rename into place, mkdir, delete) of the Files API.
    pub fs_lock: Mutex<()>,
}

/// Locks a mutex, ignoring poisoning (a panicking handler must not wedge the double).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A request body: buffered (JSON APIs) or streamed (file uploads).
pub(crate) enum Input {
    Bytes(Bytes),
    Stream(BoxStream<'static, Result<Bytes, axum::Error>>),
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// The single handler: records the request, applies injected failures, routes.
pub(crate) async fn dispatch(
    State(shared): State<Arc<Shared>>,
    req: axum::extract::Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let mut rec = RecordedRequest {
        method: parts.method.to_string(),
        path: path.clone(),
        query: parts.uri.query().map(str::to_string),
        authorization: header_str(&parts.headers, header::AUTHORIZATION),
        content_type: header_str(&parts.headers, header::CONTENT_TYPE),
        user_agent: header_str(&parts.headers, header::USER_AGENT),
        body_len: 0,
        json: None,
        status: 0,
    };
    let counter = Arc::new(AtomicUsize::new(0));
    let streaming = parts.method == Method::PUT && path.starts_with(files::FILES_PREFIX);
    let input = if streaming {
        let c = counter.clone();
        Ok(Input::Stream(
            body.into_data_stream()
                .inspect_ok(move |b| {
                    c.fetch_add(b.len(), Ordering::Relaxed);
                })
                .boxed(),
        ))
    } else {
        match axum::body::to_bytes(body, MAX_BUFFERED_BODY).await {
            Ok(b) => {
                counter.store(b.len(), Ordering::Relaxed);
                rec.json = serde_json::from_slice(&b).ok();
                Ok(Input::Bytes(b))
            }
            Err(e) => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "REQUEST_LIMIT_EXCEEDED",
                format!("request body could not be read: {e}"),
            )),
        }
    };
    let response = match (shared.take_injection(parts.method.as_str(), &path), input) {
        (Some(injected), Ok(input)) if injected.after_running => {
            let _ = route(&shared, &parts, input).await;
            injected.response
        }
        (Some(injected), _) => injected.response,
        (None, Err(e)) => e.into_response(),
        (None, Ok(input)) => {
            let head = parts.method == Method::HEAD;
            match route(&shared, &parts, input).await {
                Ok(r) => r,
                Err(e) if head => e.without_body().into_response(),
                Err(e) => e.into_response(),
            }
        }
    };
    rec.body_len = counter.load(Ordering::Relaxed);
    rec.status = response.status().as_u16();
    tracing::debug!(method = %rec.method, path = %rec.path, status = rec.status, "databricks double request");
    lock(&shared.requests).push(rec);
    response
}

impl Shared {
    fn take_injection(&self, method: &str, path: &str) -> Option<Injected> {
        let mut inj = lock(&self.injections);
        let idx = inj.iter().position(|i| {
            path.starts_with(&i.prefix)
                && i.remaining > 0
                && i.method.as_deref().is_none_or(|m| m == method)
        })?;
        let i = &mut inj[idx];
        i.remaining -= 1;
        let (status, retry_after, after_running) = (i.status, i.retry_after, i.after_running);
        if i.remaining == 0 {
            inj.remove(idx);
        }
        drop(inj);
        let code = match status {
            429 => "TOO_MANY_REQUESTS",
            503 => "TEMPORARILY_UNAVAILABLE",
            500 => "INTERNAL_ERROR",
            502 => "BAD_GATEWAY",
            504 => "GATEWAY_TIMEOUT",
            _ => "INJECTED_FAILURE",
        };
        let st = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut resp = json_response(
            st,
            &json!({"error_code": code, "message": format!("injected failure {status} by the databricks double")}),
        );
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        Some(Injected {
            response: resp,
            after_running,
        })
    }

    /// Checks `Authorization: Bearer <token>` against the PAT and the issued OAuth tokens.
    pub(crate) fn authenticate(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let unauth = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", m);
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(unauth(
                "Credential was not sent or was of an unsupported type for this API.",
            ));
        };
        let value = value
            .to_str()
            .map_err(|_| unauth("Authorization header is not valid text."))?;
        let Some((scheme, token)) = value.split_once(' ') else {
            return Err(unauth("Authorization header must be 'Bearer <token>'."));
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(unauth(
                "Credential was not sent or was of an unsupported type for this API.",
            ));
        }
        if token == self.config.token {
            return Ok(());
        }
        match lock(&self.tokens).get(token) {
            Some(exp) if *exp > Instant::now() => Ok(()),
            Some(_) => Err(unauth("Access token has expired.")),
            None => Err(unauth("Invalid access token.")),
        }
    }
}

fn method_not_allowed(method: &Method, path: &str, allowed: &str) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!("{method} is not allowed on {path} (allowed: {allowed})"),
    )
}

async fn route(shared: &Arc<Shared>, parts: &Parts, input: Input) -> Result<Response, ApiError> {
    let path = parts.uri.path();
    let method = &parts.method;
    let query = parts.uri.query();
    let allow = |allowed: &str, ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(method_not_allowed(method, path, allowed))
        }
    };

    if path == "/oidc/v1/token" {
        allow("POST", method == Method::POST)?;
        return oauth_token(shared, &parts.headers, input);
    }
    if path == "/oidc/.well-known/oauth-authorization-server" {
        allow("GET", method == Method::GET)?;
        return Ok(json_response(
            StatusCode::OK,
            &json!({
                "issuer": format!("{}/oidc", shared.base_url),
                "authorization_endpoint": format!("{}/oidc/v1/authorize", shared.base_url),
                "token_endpoint": format!("{}/oidc/v1/token", shared.base_url),
                "grant_types_supported": ["client_credentials"],
            }),
        ));
    }
    if let Some(rest) = path.strip_prefix("/__external/") {
        allow("GET", method == Method::GET)?;
        return statements::external(shared, rest, query, &parts.headers);
    }
    if path == "/api/2.0/preview/scim/v2/Me" {
        allow("GET", method == Method::GET)?;
        shared.authenticate(&parts.headers)?;
        let u = &shared.config.user_name;
        return Ok(json_response(
            StatusCode::OK,
            &json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "id": "123",
                "userName": u,
                "displayName": u.split('@').next().unwrap_or(u),
                "active": true,
                "emails": [{"value": u, "type": "work", "primary": true}],
            }),
        ));
    }
    if let Some(id) = path.strip_prefix("/api/2.0/sql/warehouses/") {
        allow("GET", method == Method::GET)?;
        shared.authenticate(&parts.headers)?;
        return warehouse(shared, id);
    }
    if let Some(rest) = path.strip_prefix(files::FILES_PREFIX) {
        allow(
            "GET, HEAD, PUT, DELETE",
            [Method::GET, Method::HEAD, Method::PUT, Method::DELETE].contains(method),
        )?;
        shared.authenticate(&parts.headers)?;
        return files::file(shared, method, rest, query, &parts.headers, input).await;
    }
    if let Some(rest) = path.strip_prefix(files::DIRS_PREFIX) {
        allow(
            "GET, HEAD, PUT, DELETE",
            [Method::GET, Method::HEAD, Method::PUT, Method::DELETE].contains(method),
        )?;
        shared.authenticate(&parts.headers)?;
        return files::directory(shared, method, rest, query).await;
    }
    if path == "/api/2.0/sql/statements" || path == "/api/2.0/sql/statements/" {
        allow("POST", method == Method::POST)?;
        shared.authenticate(&parts.headers)?;
        let Input::Bytes(body) = input else {
            return Err(ApiError::internal("statement body was not buffered"));
        };
        return statements::execute(shared, &body).await;
    }
    if let Some(rest) = path.strip_prefix("/api/2.0/sql/statements/") {
        let segs: Vec<&str> = rest.split('/').collect();
        match segs.as_slice() {
            [id] => {
                allow("GET", method == Method::GET)?;
                shared.authenticate(&parts.headers)?;
                return statements::get(shared, id).await;
            }
            [id, "cancel"] => {
                allow("POST", method == Method::POST)?;
                shared.authenticate(&parts.headers)?;
                return statements::cancel(shared, id);
            }
            [id, "result", "chunks", n] => {
                allow("GET", method == Method::GET)?;
                shared.authenticate(&parts.headers)?;
                return statements::chunk(shared, id, n);
            }
            _ => {}
        }
    }
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "ENDPOINT_NOT_FOUND",
        format!("No API found for '{method} {path}'"),
    ))
}

fn warehouse(shared: &Shared, id: &str) -> Result<Response, ApiError> {
    if id != shared.config.warehouse_id {
        return Err(ApiError::does_not_exist(format!(
            "Warehouse {id} does not exist."
        )));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "id": id,
            "name": "Databricks double warehouse",
            "state": "RUNNING",
            "cluster_size": "2X-Small",
            "min_num_clusters": 1,
            "max_num_clusters": 1,
            "num_clusters": 1,
            "num_active_sessions": 0,
            "auto_stop_mins": 10,
            "creator_name": shared.config.user_name,
            "enable_photon": true,
            "enable_serverless_compute": true,
            "warehouse_type": "PRO",
            "spot_instance_policy": "COST_OPTIMIZED",
            "channel": {"name": "CHANNEL_NAME_CURRENT"},
            "health": {"status": "HEALTHY"},
            "odbc_params": {
                "hostname": "127.0.0.1",
                "path": format!("/sql/1.0/warehouses/{id}"),
                "protocol": "https",
                "port": 443
            },
            "jdbc_url": format!("jdbc:databricks://127.0.0.1:443/default;transportMode=http;ssl=1;AuthMech=3;httpPath=/sql/1.0/warehouses/{id};"),
        }),
    ))
}

/// OAuth 2.0 client credentials grant (Databricks M2M): Basic client auth or client_id/client_secret in the form.
fn oauth_token(shared: &Shared, headers: &HeaderMap, input: Input) -> Result<Response, ApiError> {
    let oauth_err = |status: StatusCode, error: &str, desc: &str| {
        Ok(json_response(
            status,
            &json!({"error": error, "error_description": desc}),
        ))
    };
    let Input::Bytes(body) = input else {
        return Err(ApiError::internal("token body was not buffered"));
    };
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return oauth_err(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Content-Type must be application/x-www-form-urlencoded",
        );
    }
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        });
    let creds = basic.or_else(|| {
        Some((
            form.get("client_id")?.clone(),
            form.get("client_secret")?.clone(),
        ))
    });
    let valid = match (&creds, &shared.config.oauth_client) {
        (Some(given), Some(expected)) => given == expected,
        _ => false,
    };
    if !valid {
        return oauth_err(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed",
        );
    }
    match form.get("grant_type").map(String::as_str) {
        None => {
            return oauth_err(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            );
        }
        Some("client_credentials") => {}
        Some(_) => {
            return oauth_err(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only grant_type=client_credentials is supported",
            );
        }
    }
    match form.get("scope") {
        None => {
            return oauth_err(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "scope is required (use all-apis)",
            );
        }
        Some(s) if !s.split(' ').any(|x| x == "all-apis") => {
            return oauth_err(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "scope must include all-apis",
            );
        }
        Some(_) => {}
    }
    let token = format!("dose{}", uuid::Uuid::new_v4().simple());
    lock(&shared.tokens).insert(token.clone(), Instant::now() + Duration::from_secs(3600));
    Ok(json_response(
        StatusCode::OK,
        &json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600, "scope": "all-apis"}),
    ))
}

/// An empty-bodied response with a status (204 etc.).
pub(crate) fn empty(status: StatusCode) -> Response {
    (status, Body::empty()).into_response()
}
