//! What each step of a plan reads and writes, declared by its source or sink kind at plan time:
//! SQL Server tables, lakehouse tables, and locations (volume folders, Delta paths, local files).
//! The server authorises a job from this list alone ([`crate::auth::policy`]); a source or sink
//! that declares nothing cannot be run by an API caller.
//!
//! Locations are normalised here ([`Place`]): local paths are made absolute against the project
//! root with `.` and `..` resolved, `file://` URLs become local paths, `/Volumes/...` and other
//! URLs keep their scheme and authority with their path's dot segments refused. Symlinks are
//! resolved when a place is checked against a root ([`Place::is_within`]).

use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::auth::{Access, LakehouseTable, NameError, SqlTable, TableRef};
use crate::pipeline::project::Project;
use crate::sql::Dialect;

/// Something a step reads or writes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// A SQL Server table, in the database the step connects to (`None`: the configured one).
    SqlTable {
        table: SqlTable,
        database: Option<String>,
    },
    /// A lakehouse table: a Unity Catalog table, or a Delta table under `lakehouse_root`.
    LakehouseTable(LakehouseTable),
    /// A folder or file: a volume folder, a Delta table outside `lakehouse_root`, a local file.
    Location(Place),
}

impl Resource {
    /// Whether both name the same table or location, however each was spelled (`DBO.target`
    /// and `dbo.Target` are one SQL Server table).
    pub fn same_as(&self, other: &Resource) -> bool {
        match (self, other) {
            (
                Resource::SqlTable { table, database },
                Resource::SqlTable {
                    table: other,
                    database: other_db,
                },
            ) => {
                table == other
                    && database.as_deref().map(str::to_lowercase)
                        == other_db.as_deref().map(str::to_lowercase)
            }
            (a, b) => a == b,
        }
    }

    /// The table a grant is checked against, if this is a table.
    pub fn table(&self) -> Option<TableRef> {
        match self {
            Resource::SqlTable { table, .. } => Some(TableRef::Sqlserver(table.clone())),
            Resource::LakehouseTable(t) => Some(TableRef::Lakehouse(t.clone())),
            Resource::Location(_) => None,
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::SqlTable {
                table,
                database: Some(db),
            } => write!(f, "{db}.{table}"),
            Resource::SqlTable { table, .. } => write!(f, "{table}"),
            Resource::LakehouseTable(t) => write!(f, "{}", TableRef::Lakehouse(t.clone())),
            Resource::Location(p) => write!(f, "{p}"),
        }
    }
}

/// A normalised location.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Place {
    /// An absolute local path, `.` and `..` resolved lexically.
    Local(PathBuf),
    /// A Unity Catalog volume path, `/Volumes/catalog/schema/volume/...`.
    Volume(String),
    /// A URL (`s3://bucket/prefix`, `abfss://...`), scheme lowercase, no trailing `/`.
    Url(String),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Local(p) => write!(f, "{}", p.display()),
            Place::Volume(p) | Place::Url(p) => f.write_str(p),
        }
    }
}

/// Why a location was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    /// Nothing was written.
    #[error("the location is empty")]
    Empty,
    /// A `file://` URL that does not parse, or names no local path.
    #[error("`{text}` is not a local file URL{}", reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    FileUrl {
        text: String,
        reason: Option<String>,
    },
    /// A scheme that is empty or not alphanumeric.
    #[error("`{0}` has an invalid URL scheme")]
    Scheme(String),
    /// A URL without a bucket or container.
    #[error("`{0}` names no bucket or container")]
    NoBucket(String),
    /// A URL or volume path with `.` or `..` segments.
    #[error("`{0}` may not contain `.` or `..` segments")]
    DotSegments(String),
}

impl Place {
    /// Normalises a location written in a pipeline (relative paths are under the project root).
    pub fn parse(root: &Path, text: &str) -> Result<Place, PlaceError> {
        if text.is_empty() {
            return Err(PlaceError::Empty);
        }
        if text.starts_with("/Volumes/") {
            return Ok(Place::Volume(format!(
                "/{}",
                clean_segments(text, &text[1..])?.join("/")
            )));
        }
        if let Some((scheme, rest)) = text.split_once("://") {
            let scheme = scheme.to_ascii_lowercase();
            if scheme == "file" {
                let url = url::Url::parse(text).map_err(|e| PlaceError::FileUrl {
                    text: text.to_string(),
                    reason: Some(e.to_string()),
                })?;
                let path = url.to_file_path().map_err(|()| PlaceError::FileUrl {
                    text: text.to_string(),
                    reason: None,
                })?;
                return Ok(Place::Local(lexical(&path)));
            }
            if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(PlaceError::Scheme(text.to_string()));
            }
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            if authority.is_empty() {
                return Err(PlaceError::NoBucket(text.to_string()));
            }
            let segments = clean_segments(text, path)?;
            let mut url = format!("{scheme}://{}", authority.to_ascii_lowercase());
            for s in segments {
                url.push('/');
                url.push_str(&s);
            }
            return Ok(Place::Url(url));
        }
        let path = Path::new(text);
        let joined = if path.is_absolute() {
            path.to_path_buf()
        } else {
            root.join(path)
        };
        Ok(Place::Local(lexical(&joined)))
    }

    /// Whether this place is `root` or inside it. Local paths are compared with symlinks
    /// resolved (the longest existing ancestor of each is canonicalised).
    pub fn is_within(&self, root: &Place) -> bool {
        match (self, root) {
            (Place::Local(p), Place::Local(r)) => resolved(p).starts_with(resolved(r)),
            (Place::Volume(p), Place::Volume(r)) | (Place::Url(p), Place::Url(r)) => {
                p == r || p.starts_with(&format!("{}/", r.trim_end_matches('/')))
            }
            _ => false,
        }
    }

    /// The path of this place relative to `root`, when it is inside it (lexically).
    pub fn relative_to(&self, root: &Place) -> Option<Vec<String>> {
        let split = |s: &str| -> Vec<String> {
            s.split('/')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()
        };
        match (self, root) {
            (Place::Local(p), Place::Local(r)) => p.strip_prefix(r).ok().map(|rest| {
                rest.components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect()
            }),
            (Place::Volume(p), Place::Volume(r)) | (Place::Url(p), Place::Url(r))
                if self.is_within(root) =>
            {
                Some(split(&p[r.trim_end_matches('/').len()..]))
            }
            _ => None,
        }
    }
}

/// The segments of a URL or volume path; `.` and `..` are refused (a location must say where
/// it is without them).
fn clean_segments(text: &str, path: &str) -> Result<Vec<String>, PlaceError> {
    let mut out = Vec::new();
    for segment in path.split('/') {
        let decoded = segment.replace("%2e", ".").replace("%2E", ".");
        match decoded.as_str() {
            "" => {}
            "." | ".." => return Err(PlaceError::DotSegments(text.to_string())),
            _ => out.push(segment.to_string()),
        }
    }
    Ok(out)
}

/// `.` and `..` resolved without looking at the disk (`..` at the root stays at the root).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The path with symlinks resolved: its longest existing ancestor canonicalised, the rest
/// appended.
fn resolved(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut out = real;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return lexical(&out);
        }
        match (
            existing.file_name().map(std::ffi::OsStr::to_os_string),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// One use of a resource by a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Use {
    /// The step that uses it.
    pub step: String,
    /// What it uses.
    pub resource: Resource,
    /// Read, write, or both.
    pub access: Access,
    /// The write may delete rows (`delete` and `replace` modes): the grant's `max_delete_rows`
    /// applies.
    pub deletes: bool,
}

/// The resources of a plan: every use, plus the steps whose reads could not be determined (a
/// query that cannot be parsed), which an API caller may not run.
#[derive(Debug, Clone, Default)]
pub struct Declared {
    /// Every use, in step order.
    pub uses: Vec<Use>,
    /// `(step, why)` for each step whose resources are not known.
    pub unknown: Vec<(String, String)>,
}

impl Declared {
    /// The tables used, each once, as shown in audit lines and job listings.
    pub fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for u in &self.uses {
            if u.resource.table().is_some() {
                let name = u.resource.to_string();
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names
    }
}

/// What a kind needs to declare its resources.
pub struct ResourceContext<'a> {
    /// The project (its root resolves relative paths).
    pub project: &'a Project,
    /// The configured SQL Server database (three-part names must name it), read from the
    /// project's settings the first time a kind names a SQL Server table.
    pub database: &'a std::cell::OnceCell<Option<String>>,
    /// `lakehouse_root` of the run's parameters: Delta tables under it are lakehouse tables.
    pub lakehouse_root: Option<&'a str>,
    /// The step's rendered SQL, for query sources.
    pub sql: Option<&'a str>,
}

/// Why a step's resources could not be declared: an invalid name (a plan error) or reads that
/// cannot be determined (recorded in [`Declared::unknown`]).
#[derive(Debug)]
pub enum DeclareError {
    /// A table or location that cannot be what it names.
    Invalid(String),
    /// The step's reads cannot be determined.
    Unknown(String),
    /// The project's SQL Server settings, needed to resolve a table name, are invalid.
    Settings(Box<crate::error::Error>),
}

impl From<NameError> for DeclareError {
    fn from(e: NameError) -> Self {
        DeclareError::Invalid(format!("invalid table name {e}"))
    }
}

/// What a kind declares: each resource with its access and whether the write may delete rows.
pub type Declaring = Result<Vec<(Resource, Access, bool)>, DeclareError>;

impl ResourceContext<'_> {
    /// The database of the project's SQL Server settings, read once per plan.
    fn configured_database(&self) -> Result<Option<&str>, DeclareError> {
        if self.database.get().is_none() {
            let settings = self
                .project
                .sqlserver_settings()
                .map_err(|e| DeclareError::Settings(Box::new(e)))?;
            let _ = self.database.set(settings.database);
        }
        Ok(self.database.get().and_then(|d| d.as_deref()))
    }

    /// The tables a query source reads: its `table`, or those its rendered SQL names.
    pub fn query_tables(
        &self,
        table: Option<&String>,
        dialect: Dialect,
    ) -> Result<Vec<String>, DeclareError> {
        match (table, self.sql) {
            (Some(table), _) => Ok(vec![table.clone()]),
            (None, Some(sql)) => relations(sql, dialect),
            (None, None) => Ok(Vec::new()),
        }
    }

    /// A location written in the step (relative paths are under the project root).
    pub fn place(&self, text: &str) -> Result<Place, DeclareError> {
        Place::parse(self.project.root(), text).map_err(|e| DeclareError::Invalid(e.to_string()))
    }

    /// A Delta location: a lakehouse table when it is under `lakehouse_root` (its folders are
    /// the name's parts), else a location.
    pub fn delta(&self, path: &str) -> Result<Resource, DeclareError> {
        let place = self.place(path)?;
        if let Some(root) = self.lakehouse_root
            && let Ok(root) = Place::parse(self.project.root(), root)
            && let Some(parts) = place.relative_to(&root)
            && (1..=3).contains(&parts.len())
            && let Ok(table) = LakehouseTable::parse(&parts.join("."))
        {
            return Ok(Resource::LakehouseTable(table));
        }
        Ok(Resource::Location(place))
    }

    /// A SQL Server table named in the step; `database` is the step's own
    /// `connection.database`, if it sets one.
    pub fn sql_table(&self, name: &str, database: Option<&str>) -> Result<Resource, DeclareError> {
        let configured = self.configured_database()?;
        // A step's own `connection.database` is where its names resolve.
        let db = database.or(configured);
        Ok(Resource::SqlTable {
            table: SqlTable::parse(name, db)?,
            database: database
                .filter(|d| !configured.is_some_and(|c| c.eq_ignore_ascii_case(d)))
                .map(str::to_string),
        })
    }
}

/// The folder part of a path that may end in a glob (`data/*.csv` is read under `data`).
pub(crate) fn glob_base(path: &str) -> &str {
    match path.find(['*', '?', '[']) {
        Some(i) => path[..i].rsplit_once('/').map_or(".", |(base, _)| base),
        None => path,
    }
}

/// The tables a query reads (CTE names excluded), as dotted names with each part re-quoted so
/// the canonical parser sees exactly the parts the SQL parser found. Anything but queries
/// (`SELECT`, `WITH`) is refused: a source only reads.
fn relations(sql: &str, dialect: Dialect) -> Result<Vec<String>, DeclareError> {
    use deltalake::datafusion::sql::sqlparser::ast::{Statement, visit_relations};
    use deltalake::datafusion::sql::sqlparser::dialect::{DatabricksDialect, MsSqlDialect};
    use deltalake::datafusion::sql::sqlparser::parser::Parser;
    use std::ops::ControlFlow;

    let statements = match dialect {
        Dialect::SqlServer => Parser::parse_sql(&MsSqlDialect {}, sql),
        Dialect::Databricks => Parser::parse_sql(&DatabricksDialect {}, sql),
        Dialect::Sqlite | Dialect::DataFusion => {
            return Err(DeclareError::Unknown(format!(
                "reading tables of {dialect:?} queries is not declared"
            )));
        }
    }
    .map_err(|e| DeclareError::Unknown(format!("cannot tell which tables its query reads: {e}")))?;
    let mut ctes = std::collections::BTreeSet::new();
    for statement in &statements {
        let Statement::Query(query) = statement else {
            return Err(DeclareError::Unknown(format!(
                "its SQL is not only queries (found `{}`), so what it changes cannot be checked",
                statement
                    .to_string()
                    .split_whitespace()
                    .next()
                    .unwrap_or("?")
            )));
        };
        if let Some(with) = &query.with {
            ctes.extend(
                with.cte_tables
                    .iter()
                    .map(|c| c.alias.name.value.to_lowercase()),
            );
        }
    }
    let (open, close) = match dialect {
        Dialect::SqlServer => ('[', ']'),
        _ => ('`', '`'),
    };
    let mut tables = Vec::new();
    let mut bad = None;
    let _ = visit_relations(&statements, |name| {
        let parts: Option<Vec<String>> = name
            .0
            .iter()
            .map(|p| p.as_ident().map(|i| i.value.clone()))
            .collect();
        let Some(parts) = parts else {
            bad = Some(name.to_string());
            return ControlFlow::Break(());
        };
        let is_cte = parts.len() == 1 && ctes.contains(&parts[0].to_lowercase());
        let quoted = parts
            .iter()
            .map(|p| {
                let escaped = p.replace(close, &format!("{close}{close}"));
                format!("{open}{escaped}{close}")
            })
            .collect::<Vec<_>>()
            .join(".");
        if !is_cte && !tables.contains(&quoted) {
            tables.push(quoted);
        }
        ControlFlow::Continue(())
    });
    match bad {
        Some(name) => Err(DeclareError::Unknown(format!(
            "cannot tell which table `{name}` is"
        ))),
        None => Ok(tables),
    }
}

/// A printable form of a plan's uses (for `bridge plan --output json` and job records).
#[derive(Debug, Serialize)]
pub struct UseSummary {
    pub step: String,
    pub resource: String,
    pub access: Access,
}

impl From<&Use> for UseSummary {
    fn from(u: &Use) -> Self {
        UseSummary {
            step: u.step.clone(),
            resource: u.resource.to_string(),
            access: u.access,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(text: &str) -> Result<Place, PlaceError> {
        Place::parse(Path::new("/srv/project"), text)
    }

    #[test]
    fn places_are_normalised() {
        assert_eq!(
            place("output/x/../y").unwrap(),
            Place::Local("/srv/project/output/y".into())
        );
        assert_eq!(
            place("file:///tmp/x").unwrap(),
            Place::Local("/tmp/x".into())
        );
        assert_eq!(
            place("S3://Bucket/a//b/").unwrap(),
            Place::Url("s3://bucket/a/b".into())
        );
        assert_eq!(
            place("/Volumes/main/s/v//x").unwrap(),
            Place::Volume("/Volumes/main/s/v/x".into())
        );
        for bad in ["/Volumes/main/../x", "s3://b/a/%2e%2e/c", "s3:///x", ""] {
            assert!(place(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn within_roots() {
        let root = place("output").unwrap();
        assert!(place("output/volume/x").unwrap().is_within(&root));
        assert!(place("output").unwrap().is_within(&root));
        assert!(!place("outputs/x").unwrap().is_within(&root));
        assert!(!place("output/../etc").unwrap().is_within(&root));
        assert!(!place("/tmp/x").unwrap().is_within(&root));
        let s3 = place("s3://bucket/lake").unwrap();
        assert!(place("s3://bucket/lake/t").unwrap().is_within(&s3));
        assert!(!place("s3://bucket/lakehouse").unwrap().is_within(&s3));
        assert!(!place("s3://other/lake/t").unwrap().is_within(&s3));
        assert_eq!(
            place("s3://bucket/lake/a/b").unwrap().relative_to(&s3),
            Some(vec!["a".to_string(), "b".to_string()])
        );
    }

    #[test]
    fn symlinks_do_not_leave_a_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("output");
        std::fs::create_dir_all(&root).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();
        let root_place = Place::Local(root.clone());
        assert!(!Place::Local(root.join("link/x")).is_within(&root_place));
        assert!(Place::Local(root.join("real/x")).is_within(&root_place));
    }

    #[test]
    fn query_relations() {
        assert_eq!(
            relations(
                "WITH c AS (SELECT 1 AS x) SELECT * FROM dbo.Sales s JOIN [my schema].[T] t ON 1=1, c",
                Dialect::SqlServer
            )
            .unwrap(),
            ["[dbo].[Sales]", "[my schema].[T]"]
        );
        assert!(relations("DELETE FROM dbo.x", Dialect::SqlServer).is_err());
        assert!(relations("SELECT 1; DROP TABLE x", Dialect::SqlServer).is_err());
        assert_eq!(
            relations("SELECT * FROM main.sales.orders", Dialect::Databricks).unwrap(),
            ["`main`.`sales`.`orders`"]
        );
        assert_eq!(glob_base("data/*.csv"), "data");
        assert_eq!(glob_base("*.csv"), ".");
        assert_eq!(glob_base("data/x.csv"), "data/x.csv");
    }
}
