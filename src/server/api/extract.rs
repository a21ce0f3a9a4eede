//! What handlers take from a request: its id ([`RequestId`], set by the [`request_id`]
//! middleware), a JSON [`Body`] whose errors name the field at fault, and the authenticated
//! caller ([`Authed`], from the bearer token).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::auth::Caller;
use crate::server::AppState;

/// The id of a request: the caller's `x-request-id` when it is sane, else a new uuid.
#[derive(Debug, Clone)]
struct RequestId(String);

pub(super) async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(req).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// A JSON body whose errors name the field at fault.
pub(super) struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::bad_request("body", e.body_text()))?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de).map(Body).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let field = field_at_fault(&path, &inner.to_string());
            ApiError::bad_request(&field, format!("{field}: {inner}"))
        })
    }
}

/// The request field a JSON error is about: the path where it happened, plus the field serde
/// names for a missing or unknown field (which the path stops short of); `body` for JSON that
/// does not parse.
fn field_at_fault(path: &str, message: &str) -> String {
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name)
        .filter(|name| !name.is_empty());
    // `.` is the whole body; `?` a place the parser never reached (truncated JSON).
    let path = (path != "." && path != "?").then_some(path);
    match (path, named) {
        (Some(path), Some(name)) if path == name || path.ends_with(&format!(".{name}")) => {
            path.to_string()
        }
        (Some(path), Some(name)) => format!("{path}.{name}"),
        (Some(path), None) => path.to_string(),
        (None, Some(name)) => name.to_string(),
        (None, None) => "body".to_string(),
    }
}

/// The authenticated caller of a request.
pub(super) struct Authed {
    pub caller: Caller,
    pub request_id: String,
}

impl FromRequestParts<Arc<AppState>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default();
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(bearer_token);
        let refusal = match token {
            None => "no bearer token",
            Some(token) => match state.permissions.authenticate(token) {
                Some(caller) => return Ok(Authed { caller, request_id }),
                None => "unknown token",
            },
        };
        // Rate-limited and cut short: a refused request costs its sender nothing.
        let request = format!("{} {}", parts.method, parts.uri.path());
        let log = Arc::clone(&state.refused_auth);
        tokio::task::spawn_blocking(move || log.record(request_id, refusal, &request))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?;
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!(
                "{refusal}: send `Authorization: Bearer <token>` with a token from the permissions file"
            ),
        ))
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case, RFC 7235).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::api::runs::{ExtractRequest, RunRequest};
    use crate::server::api::sync::SyncRequest;

    fn field_of<T: DeserializeOwned>(json: &str) -> String {
        let de = &mut serde_json::Deserializer::from_str(json);
        match serde_path_to_error::deserialize::<_, T>(de) {
            Ok(_) => panic!("`{json}` parsed"),
            Err(e) => field_at_fault(&e.path().to_string(), &e.into_inner().to_string()),
        }
    }

    #[test]
    fn a_bad_body_names_the_field_at_fault() {
        assert_eq!(field_of::<RunRequest>("{}"), "pipeline");
        assert_eq!(field_of::<RunRequest>(r#"{"pipline": "demo"}"#), "pipline");
        assert_eq!(
            field_of::<RunRequest>(r#"{"pipeline": "demo", "country": 7}"#),
            "country"
        );
        assert_eq!(field_of::<RunRequest>("{"), "body");
        assert_eq!(field_of::<RunRequest>("[]"), "body");
        assert_eq!(
            field_of::<ExtractRequest>(r#"{"country": "x"}"#),
            "destination"
        );
        assert_eq!(
            field_of::<SyncRequest>(r#"{"operation": "MERGE"}"#),
            "operation"
        );
    }

    #[test]
    fn the_bearer_scheme_matches_in_any_case() {
        for header in ["Bearer t0k", "bearer t0k", "BEARER  t0k ", "bEaReR t0k"] {
            assert_eq!(bearer_token(header), Some("t0k"), "{header}");
        }
        for header in ["Basic dXNlcg==", "Bearer", "Bearer  ", "Bearert0k", "t0k"] {
            assert_eq!(bearer_token(header), None, "{header}");
        }
    }

    #[test]
    fn fields_inside_objects_keep_their_path() {
        assert_eq!(field_at_fault("a", "missing field `b`"), "a.b");
        assert_eq!(
            field_at_fault("a.b", "unknown field `b`, expected `c`"),
            "a.b"
        );
        assert_eq!(field_at_fault("a", "invalid type: integer"), "a");
        assert_eq!(field_at_fault(".", "EOF while parsing"), "body");
        assert_eq!(field_at_fault("?", "EOF while parsing"), "body");
    }
}
