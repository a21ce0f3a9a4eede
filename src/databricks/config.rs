//! Where the workspace is and how to authenticate: environment variables and `~/.databrickscfg`
//! profiles, resolved the way Databricks' own tools do.
//!
//! Order: with a profile named (`--profile`, else `DATABRICKS_CONFIG_PROFILE`, else `profile` in
//! `config/defaults.yaml`) its values win and the environment fills gaps; otherwise the environment wins and the `DEFAULT` profile (if the
//! file has one) fills gaps. A token and a client id/secret in the same place is an error.
//!
//! No process-global state: the `--profile` of the command line travels in the project
//! ([`crate::pipeline::Project::with_databricks_profile`]) into [`DatabricksSettings::profile_override`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::databricks::auth::Secret;
use crate::databricks::{DatabricksError, Result};

/// How requests are authenticated.
#[derive(Debug, Clone)]
pub enum AuthKind {
    /// A personal access token (or any bearer token).
    Token(Secret),
    /// OAuth machine-to-machine: a service principal's client id and secret, exchanged for
    /// short-lived tokens at `{host}/oidc/v1/token`.
    OAuthM2M {
        client_id: String,
        client_secret: Secret,
    },
}

/// A resolved workspace configuration.
#[derive(Debug, Clone)]
pub struct DatabricksConfig {
    /// Workspace URL, e.g. `https://adb-123.4.azuredatabricks.net` (no trailing slash).
    pub host: String,
    /// How requests authenticate.
    pub auth: AuthKind,
    /// Default SQL warehouse for statements (`warehouse_id` in the profile or
    /// `DATABRICKS_WAREHOUSE_ID`).
    pub warehouse_id: Option<String>,
    /// Where the values came from, for messages (`environment`, `~/.databrickscfg [prod]`).
    pub origin: String,
    /// How long a SQL statement may take, queueing and running, before it is canceled
    /// ([`DEFAULT_STATEMENT_TIMEOUT`] unless `databricks.statement_timeout_secs` says otherwise).
    pub statement_timeout: Duration,
}

/// How long a SQL statement may take before it is canceled, unless configured otherwise.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(2 * 60 * 60);

/// The `databricks:` section of `config/defaults.yaml`: which profile and warehouse to use.
/// Secrets are never read from project files.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabricksSettings {
    /// Profile of `~/.databrickscfg` (`DATABRICKS_CONFIG_PROFILE` overrides it).
    #[serde(default)]
    pub profile: Option<String>,
    /// Default SQL warehouse for `databricks` sources and the events table.
    #[serde(default)]
    pub warehouse_id: Option<String>,
    /// Seconds a SQL statement may take (queued and running) before the bridge cancels it and
    /// fails; default 7200 (2 hours).
    #[serde(default)]
    pub statement_timeout_secs: Option<u64>,
    /// The profile named on the command line (`--profile`), which wins over
    /// `DATABRICKS_CONFIG_PROFILE` and `profile`. Never read from files: the project sets it.
    #[serde(skip)]
    pub profile_override: Option<String>,
}

/// The profile to use: the command line's, else the environment's, else the project's.
fn chosen_profile(cli: Option<&str>, env: Option<String>, project: Option<&str>) -> Option<String> {
    cli.map(str::to_string)
        .or(env.filter(|p| !p.is_empty()))
        .or_else(|| project.map(str::to_string))
}

impl DatabricksSettings {
    /// The workspace configuration these settings select, from the process environment and
    /// the config file.
    pub fn resolve(&self) -> Result<DatabricksConfig> {
        self.resolve_with(process_env)
    }

    /// Resolves with an explicit environment lookup (tests).
    pub fn resolve_with(&self, env: impl Fn(&str) -> Option<String>) -> Result<DatabricksConfig> {
        let profile = chosen_profile(
            self.profile_override.as_deref(),
            env("DATABRICKS_CONFIG_PROFILE"),
            self.profile.as_deref(),
        );
        let mut config = DatabricksConfig::resolve_with(profile.as_deref(), env)?;
        if config.warehouse_id.is_none() {
            config.warehouse_id = self.warehouse_id.clone();
        }
        match self.statement_timeout_secs {
            Some(0) => {
                return Err(DatabricksError::Config {
                    origin: "config/defaults.yaml".into(),
                    message: "databricks.statement_timeout_secs must be at least 1".into(),
                });
            }
            Some(secs) => config.statement_timeout = Duration::from_secs(secs),
            None => {}
        }
        Ok(config)
    }

    /// Whether anything configures a workspace: a profile (`--profile`, `databricks.profile`,
    /// `DATABRICKS_CONFIG_PROFILE`), `DATABRICKS_HOST`, or a config file.
    pub fn is_configured(&self) -> bool {
        self.is_named() || config_file(&process_env).is_some_and(|p| p.is_file())
    }

    /// Whether a workspace is named on purpose: a profile (`--profile`, `databricks.profile`,
    /// `DATABRICKS_CONFIG_PROFILE`) or `DATABRICKS_HOST`; a `~/.databrickscfg` alone is not.
    pub fn is_named(&self) -> bool {
        self.profile_override.is_some()
            || self.profile.is_some()
            || std::env::var_os("DATABRICKS_HOST").is_some()
            || std::env::var_os("DATABRICKS_CONFIG_PROFILE").is_some()
    }
}

/// A variable of the process environment; empty counts as unset.
fn process_env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

/// Keys read from the environment, by profile key.
const ENV_KEYS: [(&str, &str); 5] = [
    ("host", "DATABRICKS_HOST"),
    ("token", "DATABRICKS_TOKEN"),
    ("client_id", "DATABRICKS_CLIENT_ID"),
    ("client_secret", "DATABRICKS_CLIENT_SECRET"),
    ("warehouse_id", "DATABRICKS_WAREHOUSE_ID"),
];

impl DatabricksConfig {
    /// Resolves the configuration from the process environment and the config file, with
    /// `profile` (else `DATABRICKS_CONFIG_PROFILE`) as the named profile.
    pub fn resolve(profile: Option<&str>) -> Result<DatabricksConfig> {
        Self::resolve_with(profile, process_env)
    }

    /// Resolves with an explicit environment lookup (tests).
    pub fn resolve_with(
        profile: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<DatabricksConfig> {
        let named = profile
            .map(str::to_string)
            .or_else(|| env("DATABRICKS_CONFIG_PROFILE"));
        let from_env: BTreeMap<&str, String> = ENV_KEYS
            .iter()
            .filter_map(|(key, var)| env(var).map(|v| (*key, v)))
            .collect();
        let file = config_file(&env);
        let (profile_values, origin) = match (&named, &file) {
            (Some(name), Some(path)) => {
                let profiles = read_profiles(path)?;
                let values = profiles.get(name.as_str()).cloned().ok_or_else(|| {
                    DatabricksError::Config {
                        origin: path.display().to_string(),
                        message: format!(
                            "no profile [{name}] (profiles: {})",
                            profiles.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    }
                })?;
                (values, format!("{} [{name}]", path.display()))
            }
            (Some(name), None) => {
                return Err(DatabricksError::Config {
                    origin: "~/.databrickscfg".into(),
                    message: format!(
                        "profile [{name}] was asked for, but there is no config file (set DATABRICKS_CONFIG_FILE or HOME)"
                    ),
                });
            }
            (None, Some(path)) if path.is_file() && !from_env.contains_key("host") => {
                let mut profiles = read_profiles(path)?;
                match profiles.remove("DEFAULT") {
                    Some(values) => (values, format!("{} [DEFAULT]", path.display())),
                    None => (Profile::default(), "environment".into()),
                }
            }
            _ => (Profile::default(), "environment".into()),
        };
        // With a named profile its values win; otherwise the environment does.
        let get = |key: &str| -> Option<String> {
            let p = profile_values.get(key).map(|(v, _)| v.clone());
            let e = from_env.get(key).cloned();
            if named.is_some() { p.or(e) } else { e.or(p) }
        };
        let config_error = |message: String| DatabricksError::Config {
            origin: origin.clone(),
            message,
        };
        let host = get("host").ok_or_else(|| {
            config_error(
                "no workspace host: set DATABRICKS_HOST, or `host` in a ~/.databrickscfg profile"
                    .into(),
            )
        })?;
        let host = normalize_host(&host).map_err(|e| config_error(e.to_string()))?;
        let auth = match (get("token"), get("client_id"), get("client_secret")) {
            (Some(_), Some(_), _) => {
                return Err(config_error(
                    "both a token and an OAuth client id are set; keep one".into(),
                ));
            }
            (Some(token), None, _) => AuthKind::Token(Secret::new(token)),
            (None, Some(client_id), Some(secret)) => AuthKind::OAuthM2M {
                client_id,
                client_secret: Secret::new(secret),
            },
            (None, Some(_), None) => {
                return Err(config_error(
                    "DATABRICKS_CLIENT_ID is set without DATABRICKS_CLIENT_SECRET (`client_secret`)"
                        .into(),
                ));
            }
            (None, None, _) => {
                return Err(config_error(
                    "no credentials: set DATABRICKS_TOKEN, or DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET (OAuth M2M), or `token` in the profile"
                        .into(),
                ));
            }
        };
        Ok(DatabricksConfig {
            host,
            auth,
            warehouse_id: get("warehouse_id"),
            origin,
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
        })
    }
}

/// `~/.databrickscfg`, or `DATABRICKS_CONFIG_FILE`.
fn config_file(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    env("DATABRICKS_CONFIG_FILE")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".databrickscfg")))
}

/// Why a workspace host is refused.
#[derive(Debug, thiserror::Error)]
enum HostError {
    #[error("host `{host}`: {source}")]
    Unparsable {
        host: String,
        #[source]
        source: url::ParseError,
    },
    #[error("host `{host}` is not an http(s) URL of a workspace")]
    NotHttp { host: String },
    #[error("host `{host}` must be the workspace URL only (no path or query)")]
    NotWorkspaceRoot { host: String },
}

/// `https://` added when no scheme is given; no trailing slash.
fn normalize_host(host: &str) -> std::result::Result<String, HostError> {
    let host = host.trim().trim_end_matches('/');
    let with_scheme = if host.contains("://") {
        host.to_string()
    } else {
        format!("https://{host}")
    };
    let url = url::Url::parse(&with_scheme).map_err(|source| HostError::Unparsable {
        host: host.to_string(),
        source,
    })?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return Err(HostError::NotHttp {
            host: host.to_string(),
        });
    }
    if url.path() != "/" || url.query().is_some() {
        return Err(HostError::NotWorkspaceRoot {
            host: host.to_string(),
        });
    }
    Ok(with_scheme)
}

/// A line of the config file that is neither `[profile]` nor `key = value` in a profile.
#[derive(Debug, thiserror::Error)]
enum SyntaxError {
    #[error("expected `[profile]`, found `{0}`")]
    BadSection(String),
    #[error("expected `key = value`")]
    NotKeyValue,
    #[error("a `key = value` line before any [profile]")]
    OutsideProfile,
}

/// One profile: key -> (value, line).
type Profile = BTreeMap<String, (String, usize)>;

/// Reads the INI-style config file: `[name]` sections of `key = value` lines, `#`/`;` comments.
fn read_profiles(path: &Path) -> Result<BTreeMap<String, Profile>> {
    let text = std::fs::read_to_string(path).map_err(|e| DatabricksError::Config {
        origin: path.display().to_string(),
        message: format!("cannot read: {e}"),
    })?;
    parse_profiles(&text).map_err(|(line, e)| DatabricksError::Config {
        origin: format!("{}:{line}", path.display()),
        message: e.to_string(),
    })
}

/// The profiles of a config file, or the first bad line (1-based) and what is wrong with it.
fn parse_profiles(
    text: &str,
) -> std::result::Result<BTreeMap<String, Profile>, (usize, SyntaxError)> {
    let mut profiles: BTreeMap<String, Profile> = BTreeMap::new();
    let mut current: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[') {
            let name = name
                .strip_suffix(']')
                .ok_or_else(|| (line_no, SyntaxError::BadSection(line.to_string())))?
                .trim();
            profiles.entry(name.to_string()).or_default();
            current = Some(name.to_string());
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err((line_no, SyntaxError::NotKeyValue));
        };
        let section = current
            .clone()
            .ok_or((line_no, SyntaxError::OutsideProfile))?;
        profiles
            .entry(section)
            .or_default()
            .insert(key.trim().to_string(), (value.trim().to_string(), line_no));
    }
    Ok(profiles)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn the_command_line_profile_wins_then_the_environment_then_the_project() {
        let env = || Some("from-env".to_string());
        assert_eq!(
            chosen_profile(Some("flag"), env(), Some("yaml")).as_deref(),
            Some("flag")
        );
        assert_eq!(
            chosen_profile(None, env(), Some("yaml")).as_deref(),
            Some("from-env")
        );
        assert_eq!(
            chosen_profile(None, Some(String::new()), Some("yaml")).as_deref(),
            Some("yaml")
        );
        assert_eq!(chosen_profile(None, None, None), None);
    }

    /// `--profile` travels in the project: two projects of one process, each with its own
    /// profile, resolve two workspaces (a process-global profile made this impossible).
    #[test]
    fn two_projects_with_different_profiles_resolve_different_workspaces() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cfg");
        std::fs::write(
            &file,
            "[a]\nhost = https://a.example\ntoken = ta\n\n[b]\nhost = https://b.example\ntoken = tb\n",
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        std::fs::write(
            dir.path().join("config/defaults.yaml"),
            "databricks:\n  profile: b\n",
        )
        .unwrap();
        let f = file.to_str().unwrap().to_string();
        // The environment names a profile too; the project's `--profile` wins over it.
        let env = env_of(&[
            ("DATABRICKS_CONFIG_FILE", &f),
            ("DATABRICKS_CONFIG_PROFILE", "b"),
        ]);
        let project = crate::pipeline::Project::new(dir.path());
        let host = |p: &crate::pipeline::Project| {
            p.databricks_settings()
                .unwrap()
                .resolve_with(&env)
                .unwrap()
                .host
        };
        let with_a = project.clone().with_databricks_profile(Some("a".into()));
        let with_b = project.clone().with_databricks_profile(Some("b".into()));
        assert_eq!(host(&with_a), "https://a.example");
        assert_eq!(host(&with_b), "https://b.example");
        assert_eq!(host(&with_a), "https://a.example", "the first is unchanged");
        // Without `--profile` the environment's profile is used.
        assert_eq!(host(&project), "https://b.example");
        assert!(with_a.databricks_settings().unwrap().is_configured());
    }

    #[test]
    fn environment_token() {
        let c = DatabricksConfig::resolve_with(
            None,
            env_of(&[
                ("DATABRICKS_HOST", "adb-1.2.azuredatabricks.net/"),
                ("DATABRICKS_TOKEN", "dapi-secret"),
            ]),
        )
        .unwrap();
        assert_eq!(c.host, "https://adb-1.2.azuredatabricks.net");
        assert!(matches!(c.auth, AuthKind::Token(ref t) if t.expose() == "dapi-secret"));
        assert!(!format!("{c:?}").contains("dapi-secret"));
    }

    #[test]
    fn named_profile_wins_and_default_fills_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cfg");
        std::fs::write(
            &file,
            "# comment\n[DEFAULT]\nhost = https://default.example\ntoken = t0\n\n[prod]\nhost = https://prod.example\nclient_id = sp\nclient_secret = s3cret\nwarehouse_id = wh1\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let c = DatabricksConfig::resolve_with(
            Some("prod"),
            env_of(&[
                ("DATABRICKS_CONFIG_FILE", f),
                ("DATABRICKS_HOST", "https://env.example"),
            ]),
        )
        .unwrap();
        assert_eq!(c.host, "https://prod.example");
        assert_eq!(c.warehouse_id.as_deref(), Some("wh1"));
        assert!(matches!(c.auth, AuthKind::OAuthM2M { ref client_id, .. } if client_id == "sp"));
        let c =
            DatabricksConfig::resolve_with(None, env_of(&[("DATABRICKS_CONFIG_FILE", f)])).unwrap();
        assert_eq!(c.host, "https://default.example");
        let err =
            DatabricksConfig::resolve_with(Some("nope"), env_of(&[("DATABRICKS_CONFIG_FILE", f)]))
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("no profile [nope] (profiles: DEFAULT, prod)"),
            "{err}"
        );
    }

    #[test]
    fn bad_files_and_missing_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cfg");
        std::fs::write(&file, "[DEFAULT]\nhost = h.example\nthis line is wrong\n").unwrap();
        let f = file.to_str().unwrap();
        let err = DatabricksConfig::resolve_with(None, env_of(&[("DATABRICKS_CONFIG_FILE", f)]))
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("cfg:3: expected `key = value`"), "{err}");
        let err = DatabricksConfig::resolve_with(None, env_of(&[("DATABRICKS_HOST", "h")]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("environment: no credentials"), "{err}");
        let err = DatabricksConfig::resolve_with(
            None,
            env_of(&[
                ("DATABRICKS_HOST", "https://h/x"),
                ("DATABRICKS_TOKEN", "t"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("no path or query"), "{err}");
    }
}
