//! SQL Server connection settings: `sqlserver:` in `config/`, then `SQLSERVER_*` variables, then a
//! step's `connection:`. Secrets are read from environment variables, never from files (the Python
//! operator hands its own over in-process, [`SqlServerSettings::secret`]).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
pub use crate::secret::Secret;

/// How the connection is encrypted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Encrypt {
    /// TLS for the whole session (default).
    #[default]
    Required,
    /// TLS for the login packet only (the server's `encrypt=false`).
    Off,
    /// No TLS at all; credentials travel in clear. For local test servers only.
    DangerPlaintext,
}

/// How the bridge logs in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    /// SQL Server login: `username` plus the password in the `password_env` variable.
    #[default]
    Sql,
    /// Azure AD access token read from the `aad_token_env` variable.
    AadToken,
}

/// Which client library reads query results (`SQLSERVER_READ_DRIVER`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadDriver {
    /// Microsoft's `mssql-tds` (default): its decoder hands each value straight to the Arrow
    /// builders, about 3x less client CPU per row than tiberius (benches/driver-probe).
    #[default]
    MssqlTds,
    /// The vendored tiberius, which also does everything else (describe, change tracking,
    /// writes): the fallback should a server or a type trouble `mssql-tds`.
    Tiberius,
}

/// The secret a login uses, read from its environment variable.
enum Credentials {
    Sql { user: String, password: String },
    AadToken(String),
}

/// SQL Server connection settings; every field is optional so layers can be merged.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlServerSettings {
    /// Server host name (`SQLSERVER_HOST`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// TCP port (`SQLSERVER_PORT`, default 1433).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Database (`SQLSERVER_DATABASE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Login name (`SQLSERVER_USERNAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Name of the environment variable holding the password (default `SQLSERVER_PASSWORD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// `sql` (default) or `aad_token` (`SQLSERVER_AUTH`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthKind>,
    /// Name of the environment variable holding an Azure AD token (default `SQLSERVER_AAD_TOKEN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aad_token_env: Option<String>,
    /// `required` (default), `off` or `danger_plaintext` (`SQLSERVER_ENCRYPT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypt: Option<Encrypt>,
    /// Accept the server's certificate without validating it (`SQLSERVER_TRUST_CERT=true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_server_certificate: Option<bool>,
    /// Connections kept in the pool (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<u32>,
    /// Seconds to wait for a connection (default 15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_secs: Option<u64>,
    /// `mssql_tds` (default) or `tiberius`: the client library that reads a `sqlserver`
    /// source's rows (`SQLSERVER_READ_DRIVER`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_driver: Option<ReadDriver>,
    /// A secret handed over in-process (the Python operator's `sql_server_password` or
    /// `aad_token`) instead of an environment variable; never read from or written to a file.
    #[serde(skip)]
    #[schemars(skip)]
    pub secret: Option<Secret>,
}

impl SqlServerSettings {
    /// Settings from `SQLSERVER_*` environment variables.
    pub fn from_env() -> Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let parse_err = |name: &str, value: &str, expected: &str| {
            Error::Invalid(format!(
                "environment variable {name}=`{value}`: expected {expected}"
            ))
        };
        let port = match var("SQLSERVER_PORT") {
            Some(v) => Some(
                v.parse()
                    .map_err(|_| parse_err("SQLSERVER_PORT", &v, "a port number"))?,
            ),
            None => None,
        };
        let encrypt = match var("SQLSERVER_ENCRYPT").as_deref() {
            None => None,
            Some("required" | "true" | "strict") => Some(Encrypt::Required),
            Some("off" | "false") => Some(Encrypt::Off),
            Some("danger_plaintext") => Some(Encrypt::DangerPlaintext),
            Some(v) => {
                return Err(parse_err(
                    "SQLSERVER_ENCRYPT",
                    v,
                    "required, off or danger_plaintext",
                ));
            }
        };
        let auth = match var("SQLSERVER_AUTH").as_deref() {
            None => None,
            Some("sql") => Some(AuthKind::Sql),
            Some("aad_token") => Some(AuthKind::AadToken),
            Some(v) => return Err(parse_err("SQLSERVER_AUTH", v, "sql or aad_token")),
        };
        let read_driver = match var("SQLSERVER_READ_DRIVER").as_deref() {
            None => None,
            Some("mssql_tds") => Some(ReadDriver::MssqlTds),
            Some("tiberius") => Some(ReadDriver::Tiberius),
            Some(v) => {
                return Err(parse_err(
                    "SQLSERVER_READ_DRIVER",
                    v,
                    "mssql_tds or tiberius",
                ));
            }
        };
        Ok(SqlServerSettings {
            host: var("SQLSERVER_HOST"),
            port,
            database: var("SQLSERVER_DATABASE"),
            username: var("SQLSERVER_USERNAME"),
            auth,
            encrypt,
            trust_server_certificate: var("SQLSERVER_TRUST_CERT").map(|v| v == "true" || v == "1"),
            read_driver,
            ..Default::default()
        })
    }

    /// `self` with the fields `over` sets replaced.
    pub fn merged(mut self, over: &SqlServerSettings) -> Self {
        macro_rules! take {
            ($($f:ident),*) => { $( if over.$f.is_some() { self.$f = over.$f.clone(); } )* };
        }
        take!(
            host,
            port,
            database,
            username,
            password_env,
            auth,
            aad_token_env,
            encrypt,
            trust_server_certificate,
            pool_size,
            connect_timeout_secs,
            read_driver,
            secret
        );
        self
    }

    /// Host and port for messages (never credentials).
    pub fn describe(&self) -> String {
        format!(
            "{}:{}/{}",
            self.host.as_deref().unwrap_or("?"),
            self.port.unwrap_or(1433),
            self.database.as_deref().unwrap_or("(default database)")
        )
    }

    /// The tiberius configuration; reads the secret from its environment variable.
    pub fn to_tiberius(&self) -> Result<tiberius::Config> {
        let host = self.host()?;
        let mut config = tiberius::Config::new();
        config.host(host);
        config.port(self.port.unwrap_or(1433));
        if let Some(db) = &self.database {
            config.database(db);
        }
        config.application_name("sql-databricks-bridge");
        config.encryption(match self.encrypt.unwrap_or_default() {
            Encrypt::Required => tiberius::EncryptionLevel::Required,
            Encrypt::Off => tiberius::EncryptionLevel::Off,
            Encrypt::DangerPlaintext => tiberius::EncryptionLevel::NotSupported,
        });
        if self.trust_server_certificate.unwrap_or(false) {
            config.trust_cert();
        }
        match self.credentials()? {
            Credentials::Sql { user, password } => {
                config.authentication(tiberius::AuthMethod::sql_server(user, password));
            }
            Credentials::AadToken(token) => {
                config.authentication(tiberius::AuthMethod::aad_token(token));
            }
        }
        Ok(config)
    }

    fn host(&self) -> Result<&str> {
        self.host.as_deref().ok_or_else(|| {
            Error::Invalid(
                "SQL Server host is not set: set SQLSERVER_HOST, `sqlserver.host` in config/, or the step's connection.host".into(),
            )
        })
    }

    /// The login's secret: the one handed over in-process, else its environment variable.
    fn credentials(&self) -> Result<Credentials> {
        let secret = |var: &str| {
            if let Some(secret) = &self.secret {
                return Ok(secret.expose().to_string());
            }
            std::env::var(var).map_err(|_| {
                Error::Invalid(format!(
                    "environment variable {var} (the SQL Server secret) is not set"
                ))
            })
        };
        Ok(match self.auth.unwrap_or_default() {
            AuthKind::Sql => Credentials::Sql {
                user: self.username.clone().ok_or_else(|| {
                    Error::Invalid("SQL Server username is not set (SQLSERVER_USERNAME)".into())
                })?,
                password: secret(self.password_env.as_deref().unwrap_or("SQLSERVER_PASSWORD"))?,
            },
            AuthKind::AadToken => Credentials::AadToken(secret(
                self.aad_token_env
                    .as_deref()
                    .unwrap_or("SQLSERVER_AAD_TOKEN"),
            )?),
        })
    }

    /// The `mssql-tds` client context and data source (`tcp:host,port`); reads the secret from
    /// its environment variable. `off` and `danger_plaintext` both ask for no encryption
    /// (`mssql-tds` still encrypts the login when the server offers TLS).
    pub fn to_mssql_tds(
        &self,
    ) -> Result<(mssql_tds::connection::client_context::ClientContext, String)> {
        use mssql_tds::connection::client_context::{ClientContext, TdsAuthenticationMethod};
        use mssql_tds::core::EncryptionSetting;
        let datasource = format!("tcp:{},{}", self.host()?, self.port.unwrap_or(1433));
        let mut ctx = ClientContext::default();
        if let Some(db) = &self.database {
            ctx.database = db.clone();
        }
        ctx.application_name = "sql-databricks-bridge".into();
        ctx.connect_timeout =
            u32::try_from(self.connect_timeout_secs.unwrap_or(15)).unwrap_or(u32::MAX);
        ctx.encryption_options.mode = match self.encrypt.unwrap_or_default() {
            Encrypt::Required => EncryptionSetting::On,
            Encrypt::Off | Encrypt::DangerPlaintext => EncryptionSetting::PreferOff,
        };
        ctx.encryption_options.trust_server_certificate =
            self.trust_server_certificate.unwrap_or(false);
        match self.credentials()? {
            Credentials::Sql { user, password } => {
                ctx.tds_authentication_method = TdsAuthenticationMethod::Password;
                ctx.user_name = user;
                ctx.password = password;
            }
            Credentials::AadToken(token) => {
                ctx.tds_authentication_method = TdsAuthenticationMethod::AccessToken;
                ctx.access_token = Some(token);
            }
        }
        Ok((ctx, datasource))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mssql_tds::connection::client_context::TdsAuthenticationMethod;
    use mssql_tds::core::EncryptionSetting;

    /// Settings whose secret variable is `PATH` (set in every test process).
    fn settings(yaml: &str) -> SqlServerSettings {
        serde_yaml::from_str(&format!(
            "{{host: db.example, username: reader, password_env: PATH, aad_token_env: PATH, {yaml}}}"
        ))
        .unwrap()
    }

    #[test]
    fn mssql_tds_context_carries_host_login_and_encryption() {
        let path = std::env::var("PATH").unwrap();
        let (ctx, datasource) =
            settings("port: 14330, database: sales, trust_server_certificate: true")
                .to_mssql_tds()
                .unwrap();
        assert_eq!(datasource, "tcp:db.example,14330");
        assert_eq!(ctx.database, "sales");
        assert_eq!(ctx.user_name, "reader");
        assert_eq!(ctx.password, path);
        assert!(ctx.tds_authentication_method == TdsAuthenticationMethod::Password);
        assert!(ctx.encryption_options.mode == EncryptionSetting::On);
        assert!(ctx.encryption_options.trust_server_certificate);
        for off in ["off", "danger_plaintext"] {
            let (ctx, _) = settings(&format!("encrypt: {off}")).to_mssql_tds().unwrap();
            assert!(
                ctx.encryption_options.mode == EncryptionSetting::PreferOff,
                "{off}"
            );
        }
        let (ctx, datasource) = settings("auth: aad_token").to_mssql_tds().unwrap();
        assert_eq!(datasource, "tcp:db.example,1433");
        assert!(ctx.tds_authentication_method == TdsAuthenticationMethod::AccessToken);
        assert_eq!(ctx.access_token.as_deref(), Some(path.as_str()));
    }

    #[test]
    fn read_driver_is_a_setting_a_step_can_override() {
        let base = settings("read_driver: tiberius");
        assert_eq!(base.read_driver, Some(ReadDriver::Tiberius));
        let step = settings("read_driver: mssql_tds");
        assert_eq!(
            base.clone().merged(&step).read_driver,
            Some(ReadDriver::MssqlTds)
        );
        assert_eq!(
            base.merged(&SqlServerSettings::default()).read_driver,
            Some(ReadDriver::Tiberius)
        );
        assert!(serde_yaml::from_str::<SqlServerSettings>("{read_driver: odbc}").is_err());
        let missing = SqlServerSettings::default().to_mssql_tds().err().unwrap();
        assert!(
            missing.to_string().contains("SQL Server host is not set"),
            "{missing}"
        );
    }
}
