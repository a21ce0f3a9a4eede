//! `Connection`: the SQL Server a `BridgeOperator` talks to. It holds the settings and the secret
//! in memory; neither `repr` nor any message shows the user, password or token.

use bridge::mssql::SqlServerSettings;
use bridge::mssql::settings::{AuthKind, Encrypt, ReadDriver, Secret};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// A SQL Server connection's settings (no connection is opened until a call needs one).
#[pyclass(module = "bridge_operator._native", frozen)]
pub struct Connection {
    pub(crate) settings: SqlServerSettings,
}

#[pymethods]
impl Connection {
    #[new]
    #[pyo3(signature = (host, database, user=None, password=None, port=1433, encrypt="required", trust_server_certificate=false, aad_token=None, read_driver=None, connect_timeout_secs=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        host: String,
        database: String,
        user: Option<String>,
        password: Option<String>,
        port: u16,
        encrypt: &str,
        trust_server_certificate: bool,
        aad_token: Option<String>,
        read_driver: Option<&str>,
        connect_timeout_secs: Option<u64>,
    ) -> PyResult<Self> {
        if host.trim().is_empty() {
            return Err(PyValueError::new_err("sql_server_host: must not be empty"));
        }
        let encrypt = match encrypt {
            "required" => Encrypt::Required,
            "off" => Encrypt::Off,
            "danger_plaintext" => Encrypt::DangerPlaintext,
            other => {
                return Err(PyValueError::new_err(format!(
                    "encrypt: `{other}` is not one of required, off, danger_plaintext"
                )));
            }
        };
        let read_driver = match read_driver {
            None | Some("mssql_tds") => ReadDriver::MssqlTds,
            Some("tiberius") => ReadDriver::Tiberius,
            Some(other) => {
                return Err(PyValueError::new_err(format!(
                    "read_driver: `{other}` is not one of mssql_tds, tiberius"
                )));
            }
        };
        let (auth, secret) = match (aad_token, password) {
            (Some(_), Some(_)) => {
                return Err(PyValueError::new_err(
                    "give either aad_token or sql_server_password, not both",
                ));
            }
            (Some(token), None) => (AuthKind::AadToken, Secret::new(token)),
            (None, Some(password)) => {
                if user.is_none() {
                    return Err(PyValueError::new_err(
                        "sql_server_user: required with sql_server_password",
                    ));
                }
                (AuthKind::Sql, Secret::new(password))
            }
            (None, None) => {
                return Err(PyValueError::new_err(
                    "no credentials: give sql_server_user and sql_server_password, or aad_token",
                ));
            }
        };
        Ok(Connection {
            settings: SqlServerSettings {
                host: Some(host),
                port: Some(port),
                database: Some(database),
                username: user,
                auth: Some(auth),
                encrypt: Some(encrypt),
                trust_server_certificate: Some(trust_server_certificate),
                read_driver: Some(read_driver),
                connect_timeout_secs,
                secret: Some(secret),
                ..Default::default()
            },
        })
    }

    /// `host:port/database`, never credentials.
    fn target(&self) -> String {
        self.settings.describe()
    }

    fn __repr__(&self) -> String {
        format!("Connection({})", self.settings.describe())
    }
}
