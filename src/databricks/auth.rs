//! Bearer tokens for requests: a fixed token, or OAuth M2M tokens fetched and cached until
//! shortly before they expire.

use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

use crate::databricks::config::AuthKind;
use crate::databricks::{DatabricksError, Result};

pub use crate::secret::Secret;

/// Tokens are renewed this long before they expire.
const RENEW_BEFORE: Duration = Duration::from_secs(60);

/// Produces the bearer token of each request.
#[derive(Debug)]
pub(crate) struct TokenSource {
    kind: AuthKind,
    /// OAuth: the current token and when it stops being used.
    cached: Mutex<Option<(Secret, Instant)>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl TokenSource {
    pub(crate) fn new(kind: AuthKind) -> TokenSource {
        TokenSource {
            kind,
            cached: Mutex::new(None),
        }
    }

    /// The token to send now.
    pub(crate) async fn bearer(&self, http: &reqwest::Client, host: &str) -> Result<Secret> {
        let (client_id, client_secret) = match &self.kind {
            AuthKind::Token(token) => return Ok(token.clone()),
            AuthKind::OAuthM2M {
                client_id,
                client_secret,
            } => (client_id, client_secret),
        };
        let mut cached = self.cached.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let fail = |message: String| DatabricksError::Auth {
            host: host.to_string(),
            message,
        };
        let response = http
            .post(format!("{host}/oidc/v1/token"))
            .basic_auth(client_id, Some(client_secret.expose()))
            .form(&[("grant_type", "client_credentials"), ("scope", "all-apis")])
            .send()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        let status = response.status();
        if !status.is_success() {
            // The body names the OAuth error (`invalid_client`); it holds no secret.
            let body = response.text().await.unwrap_or_default();
            let detail: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let reason = detail["error_description"]
                .as_str()
                .or(detail["error"].as_str())
                .unwrap_or("no detail");
            return Err(fail(format!(
                "{status} for client id `{client_id}`: {reason}"
            )));
        }
        let token: TokenResponse = response
            .json()
            .await
            .map_err(|e| fail(format!("unreadable token response: {}", e.without_url())))?;
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(3600));
        let until = Instant::now() + lifetime.saturating_sub(RENEW_BEFORE);
        let token = Secret::new(token.access_token);
        *cached = Some((token.clone(), until));
        Ok(token)
    }

    /// Forgets a cached OAuth token (after a 401, so the next request fetches a new one).
    pub(crate) async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }
}
