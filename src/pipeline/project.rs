//! The project folder: `pipelines/`, `queries/{country}/`, `config/` and how files are found in it.
//! Paths given in pipelines are relative to the project root and may not escape it with `..`.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Location, Result};
use crate::pipeline::spec::yaml_error;

/// Template parameters, by name.
pub type Params = BTreeMap<String, serde_yaml::Value>;

/// A project folder holding `pipelines/`, `queries/` and `config/`.
#[derive(Debug, Clone)]
pub struct Project {
    root: PathBuf,
    queries: Option<PathBuf>,
    config: Option<PathBuf>,
    /// A copy of `pipelines/`, `queries/` and `config/` read instead of the live folders (serve
    /// mode runs each job on the version that was valid when it started).
    snapshot: Option<PathBuf>,
    /// The Databricks profile named on the command line (`--profile`).
    databricks_profile: Option<String>,
    /// SQL Server settings that win over `config/` and `SQLSERVER_*` (the Python operator's
    /// connection, with its in-process secret).
    sqlserver: Option<crate::mssql::SqlServerSettings>,
}

/// A parameters file in `config/` (`defaults.yaml`, `countries/{country}.yaml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    /// Template parameters.
    #[serde(default)]
    params: Params,
    /// SQL Server connection settings (no secrets: those come from environment variables).
    #[serde(default)]
    sqlserver: Option<crate::mssql::SqlServerSettings>,
    /// Databricks profile and warehouse (credentials come from the environment or
    /// `~/.databrickscfg`).
    #[serde(default)]
    databricks: Option<crate::databricks::DatabricksSettings>,
    /// Where jobs started through `bridge serve` (API, events, schedules) may write: local
    /// folders (relative to the project root), `/Volumes/...` paths or URLs. Default: `output/`
    /// and the `volume_root` and `lakehouse_root` parameters.
    #[serde(default)]
    output_roots: Option<Vec<String>>,
}

impl Project {
    /// A project rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Project {
            root: root.into(),
            queries: None,
            config: None,
            snapshot: None,
            databricks_profile: None,
            sqlserver: None,
        }
    }

    /// Connects to SQL Server with these settings, over `config/` and `SQLSERVER_*`.
    pub fn with_sqlserver(mut self, settings: crate::mssql::SqlServerSettings) -> Self {
        self.sqlserver = Some(settings);
        self
    }

    /// Uses this profile of `~/.databrickscfg` (`--profile`): it wins over
    /// `DATABRICKS_CONFIG_PROFILE` and `databricks.profile` in `config/defaults.yaml`.
    pub fn with_databricks_profile(mut self, profile: Option<String>) -> Self {
        self.databricks_profile = profile;
        self
    }

    /// The profile of [`Project::with_databricks_profile`], if any.
    pub fn databricks_profile(&self) -> Option<&str> {
        self.databricks_profile.as_deref()
    }

    /// Reads `pipelines/`, `queries/` and `config/` from a copy of them in `dir`; outputs and
    /// relative paths in pipelines still resolve against the root, and messages name the files as
    /// if they were in the root.
    pub fn with_snapshot(mut self, dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        self.queries = Some(dir.join("queries"));
        self.config = Some(dir.join("config"));
        self.snapshot = Some(dir);
        self
    }

    /// The snapshot folder this project reads its files from, if any.
    pub fn snapshot(&self) -> Option<&Path> {
        self.snapshot.as_deref()
    }

    /// Uses another folder for SQL files (the original CLI's `--queries-path`).
    pub fn with_queries_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.queries = Some(dir.into());
        self
    }

    /// Uses another folder for parameters (the original CLI's `--config-path`).
    pub fn with_config_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config = Some(dir.into());
        self
    }

    /// The project root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `queries/` under the root.
    pub fn queries_dir(&self) -> PathBuf {
        self.queries
            .clone()
            .unwrap_or_else(|| self.root.join("queries"))
    }

    /// `config/` under the root.
    pub fn config_dir(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| self.root.join("config"))
    }

    /// `pipelines/` under the root.
    pub fn pipelines_dir(&self) -> PathBuf {
        self.snapshot
            .as_deref()
            .unwrap_or(&self.root)
            .join("pipelines")
    }

    /// A path for messages: relative to the root (or the snapshot) when it is inside it.
    pub fn display_path(&self, path: &Path) -> PathBuf {
        self.snapshot
            .as_deref()
            .and_then(|s| path.strip_prefix(s).ok())
            .or_else(|| path.strip_prefix(&self.root).ok())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| path.to_path_buf())
    }

    /// Resolves a path written in a pipeline: absolute paths and URLs stay as they are, relative paths
    /// are joined to the root.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.root.join(p)
        }
    }

    /// A local path or URL written in a pipeline as a URL string DataFusion and delta-rs accept:
    /// URLs as they are, local paths resolved against the root.
    pub fn location(&self, path: &str) -> String {
        if path.contains("://") {
            path.to_string()
        } else {
            self.resolve(path).display().to_string()
        }
    }

    /// Countries that have a parameters file under `config/countries/`.
    pub fn countries(&self) -> Result<Vec<String>> {
        let dir = self.config_dir().join("countries");
        let mut countries = Vec::new();
        if dir.is_dir() {
            for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
                let path = entry.map_err(|e| Error::io(&dir, e))?.path();
                if path.extension().is_some_and(|e| e == "yaml" || e == "yml")
                    && let Some(stem) = path.file_stem()
                {
                    countries.push(stem.to_string_lossy().into_owned());
                }
            }
        }
        countries.sort();
        Ok(countries)
    }

    /// Parameters from `config/defaults.yaml` then `config/countries/{country}.yaml`; a country
    /// without a file is an error that lists the known ones.
    pub fn config_params(&self, country: Option<&str>) -> Result<Params> {
        if let Some(country) = country {
            check_country(country)?;
        }
        let mut params = Params::new();
        let defaults = self.config_dir().join("defaults.yaml");
        if defaults.is_file() {
            params.extend(self.read_config(&defaults)?.params);
        }
        if let Some(country) = country {
            let file = self.country_file(country);
            if !file.is_file() {
                let known = self.countries()?;
                return Err(Error::Spec {
                    location: Location::file(self.display_path(&file)),
                    message: format!(
                        "unknown country `{country}`: no parameters file; known countries: {}",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                });
            }
            params.extend(self.read_config(&file)?.params);
        }
        Ok(params)
    }

    /// SQL Server settings: `sqlserver:` in `config/defaults.yaml`, then `SQLSERVER_*` variables,
    /// then those of [`Project::with_sqlserver`].
    pub fn sqlserver_settings(&self) -> Result<crate::mssql::SqlServerSettings> {
        let mut settings = crate::mssql::SqlServerSettings::default();
        let defaults = self.config_dir().join("defaults.yaml");
        if defaults.is_file()
            && let Some(s) = self.read_config(&defaults)?.sqlserver
        {
            settings = settings.merged(&s);
        }
        let settings = settings.merged(&crate::mssql::SqlServerSettings::from_env()?);
        Ok(match &self.sqlserver {
            Some(over) => settings.merged(over),
            None => settings,
        })
    }

    /// The `databricks:` section of `config/defaults.yaml` (empty when absent), with the
    /// profile of [`Project::with_databricks_profile`].
    pub fn databricks_settings(&self) -> Result<crate::databricks::DatabricksSettings> {
        let defaults = self.config_dir().join("defaults.yaml");
        let mut settings = if defaults.is_file() {
            self.read_config(&defaults)?.databricks.unwrap_or_default()
        } else {
            Default::default()
        };
        settings.profile_override = self.databricks_profile.clone();
        Ok(settings)
    }

    /// The server's access policy for this project: output roots (`output_roots:` of
    /// `config/defaults.yaml`, or `output/`, `volume_root` and `lakehouse_root`), the files no
    /// job reads, and the configured SQL Server database.
    pub fn access_policy(&self, protected: &[PathBuf]) -> Result<crate::auth::AccessPolicy> {
        use crate::pipeline::resources::Place;
        let defaults = self.config_dir().join("defaults.yaml");
        let configured = if defaults.is_file() {
            self.read_config(&defaults)?.output_roots
        } else {
            None
        };
        let roots: Vec<String> = match configured {
            Some(roots) => roots,
            None => {
                let params = self.config_params(None)?;
                std::iter::once("output".to_string())
                    .chain(
                        ["volume_root", "lakehouse_root"]
                            .iter()
                            .filter_map(|k| params.get(*k).and_then(|v| v.as_str()))
                            .map(str::to_string),
                    )
                    .collect()
            }
        };
        let output_roots = roots
            .iter()
            .map(|r| {
                Place::parse(&self.root, r).map_err(|e| Error::Spec {
                    location: Location::file(self.display_path(&defaults)),
                    message: format!("output_roots: {e}"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(crate::auth::AccessPolicy {
            project_root: self.root.clone(),
            output_roots,
            protected: protected.to_vec(),
            database: self.sqlserver_settings()?.database,
        })
    }

    /// A client of the workspace the project is configured for, once its address answers: a
    /// workspace that is not configured or not reachable is said at once (not after the
    /// client's minutes of retries).
    pub async fn databricks_client(&self) -> Result<crate::databricks::DatabricksClient> {
        use crate::databricks::probe::{OpenError, open_client};
        open_client(&self.databricks_settings()?)
            .await
            .map_err(|e| match e {
                OpenError::Config(cause) => Error::Databricks(cause),
                unreachable @ OpenError::Unreachable { .. } => {
                    Error::internal("cannot use the Databricks workspace", unreachable)
                }
            })
    }

    fn country_file(&self, country: &str) -> PathBuf {
        let dir = self.config_dir().join("countries");
        let yml = dir.join(format!("{country}.yml"));
        if yml.is_file() {
            yml
        } else {
            dir.join(format!("{country}.yaml"))
        }
    }

    fn read_config(&self, path: &Path) -> Result<ConfigFile> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        if text.trim().is_empty() {
            return Ok(ConfigFile {
                params: Params::new(),
                sqlserver: None,
                databricks: None,
                output_roots: None,
            });
        }
        serde_yaml::from_str(&text).map_err(|e| yaml_error(&self.display_path(path), &text, &e))
    }

    /// Finds a SQL file: `queries/{country}/{name}` first, then `queries/common/{name}`.
    pub fn find_query(&self, country: Option<&str>, name: &str) -> Result<PathBuf> {
        if let Some(country) = country {
            check_country(country)?;
        }
        check_relative(name).map_err(|e| Error::Spec {
            location: Location::file(name),
            message: e.to_string(),
        })?;
        let mut tried = Vec::new();
        let dirs = country.into_iter().chain(std::iter::once("common"));
        for dir in dirs {
            let candidate = self.queries_dir().join(dir).join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
            tried.push(self.display_path(&candidate).display().to_string());
        }
        Err(Error::Spec {
            location: Location::file(name),
            message: format!("query file not found; looked in {}", tried.join(" and ")),
        })
    }

    /// SQL files of a country (its own folder, then `common/` files it does not override), by name.
    pub fn list_queries(&self, country: Option<&str>) -> Result<Vec<(String, PathBuf)>> {
        if let Some(country) = country {
            check_country(country)?;
        }
        let mut found: BTreeMap<String, PathBuf> = BTreeMap::new();
        for dir in ["common"].into_iter().chain(country) {
            let dir = self.queries_dir().join(dir);
            if !dir.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
                let path = entry.map_err(|e| Error::io(&dir, e))?.path();
                if path.extension().is_some_and(|e| e == "sql") {
                    let name = path
                        .file_name()
                        .expect("read_dir entries have names")
                        .to_string_lossy()
                        .into_owned();
                    found.insert(name, path);
                }
            }
        }
        Ok(found.into_iter().collect())
    }

    /// All pipeline files under `pipelines/`, sorted.
    pub fn pipeline_files(&self) -> Result<Vec<PathBuf>> {
        let dir = self.pipelines_dir();
        if dir.is_dir() {
            pipeline_files_in(&dir)
        } else {
            Ok(Vec::new())
        }
    }
}

/// Pipeline files (`*.yaml`, `*.yml`) directly inside a folder, sorted.
pub fn pipeline_files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// A country names a file under `config/countries/` and a folder under `queries/`: letters,
/// digits, `_` and `-` only, so it can never leave those folders.
pub fn check_country(country: &str) -> Result<()> {
    let ok = !country.is_empty()
        && country.len() <= 64
        && country
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        return Ok(());
    }
    Err(Error::Spec {
        location: Location::file("country"),
        message: format!(
            "`{}` is not a country name (letters, digits, `_` and `-`, at most 64)",
            country.chars().take(80).collect::<String>()
        ),
    })
}

/// Why a path that must stay under a base folder was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is empty.
    #[error("path is empty")]
    Empty,
    /// The path climbs out with `..`.
    #[error("path `{0}` may not contain `..`")]
    Parent(String),
    /// The path is absolute.
    #[error("path `{0}` must be relative")]
    Absolute(String),
    /// A sink's folder that names its destination itself.
    #[error(
        "path `{0}` is the destination itself; each run deletes the other files of its folder, so name a folder below the destination (e.g. `sales`)"
    )]
    Destination(String),
}

/// Refuses absolute paths and `..` in a path that must stay under a base folder.
pub fn check_relative(path: &str) -> std::result::Result<(), PathError> {
    let p = Path::new(path);
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    for c in p.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(PathError::Parent(path.to_string())),
            Component::RootDir | Component::Prefix(_) => {
                return Err(PathError::Absolute(path.to_string()));
            }
        }
    }
    Ok(())
}

/// Refuses a folder a sink owns (each run replaces what is in it) unless it is a folder below
/// the destination: besides what [`check_relative`] refuses, `.` and `./.` are refused, since
/// they name the destination itself and a run would delete everything else in it.
pub fn check_owned_folder(path: &str) -> std::result::Result<(), PathError> {
    check_relative(path)?;
    if !Path::new(path)
        .components()
        .any(|c| matches!(c, Component::Normal(_)))
    {
        return Err(PathError::Destination(path.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_folders_are_below_the_destination() {
        assert!(check_owned_folder("sales").is_ok());
        assert!(check_owned_folder("./sales/2024").is_ok());
        for bad in [".", "./", "./.", "", "..", "a/../..", "/Volumes/x"] {
            assert!(check_owned_folder(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn relative_paths_are_confined() {
        assert!(check_relative("a/b.sql").is_ok());
        assert!(check_relative("../x.sql").is_err());
        assert!(check_relative("a/../../x").is_err());
        assert!(check_relative("/etc/passwd").is_err());
        assert!(check_relative("").is_err());
    }

    #[test]
    fn country_queries_override_common() {
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join("queries");
        std::fs::create_dir_all(q.join("common")).unwrap();
        std::fs::create_dir_all(q.join("colombia")).unwrap();
        std::fs::write(q.join("common/a.sql"), "select 1").unwrap();
        std::fs::write(q.join("common/b.sql"), "select 2").unwrap();
        std::fs::write(q.join("colombia/a.sql"), "select 3").unwrap();
        let project = Project::new(dir.path());
        let found = project.find_query(Some("colombia"), "a.sql").unwrap();
        assert!(found.ends_with("colombia/a.sql"));
        let found = project.find_query(Some("colombia"), "b.sql").unwrap();
        assert!(found.ends_with("common/b.sql"));
        let err = project.find_query(Some("colombia"), "c.sql").unwrap_err();
        assert!(err.to_string().contains("queries/colombia/c.sql"), "{err}");
        let listed = project.list_queries(Some("colombia")).unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed[0].1.ends_with("colombia/a.sql"));
    }
}
