//! Grants and the authenticated caller: what a grant allows ([`Access`]) on which tables
//! ([`Scope`], [`TableRef`]), and [`Caller`], which checks a table use against its grants and
//! says why it is [`Denied`].

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::names::{LakehouseTable, Pattern, SqlTable};

/// What a grant allows on a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Read (extract) the table.
    Read,
    /// Write (insert, update, delete) the table.
    Write,
    /// Both.
    ReadWrite,
}

impl Access {
    /// Whether a grant of `self` covers the access `need`.
    pub fn allows(self, need: Access) -> bool {
        self == Access::ReadWrite || self == need
    }

    fn verb(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::ReadWrite => "read and write",
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::ReadWrite => "read_write",
        })
    }
}

/// Why a caller may not do what it asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No grant of the caller matches the table.
    #[error("`{caller}` has no access to {table} (needs {})", need.verb())]
    NoAccess {
        caller: String,
        table: String,
        need: Access,
    },
    /// The grant that matches does not include the access needed.
    #[error("`{caller}` may not {} {table} (has {has})", need.verb())]
    Insufficient {
        caller: String,
        table: String,
        need: Access,
        has: Access,
    },
    /// A delete would remove more rows than the grant's `max_delete_rows`.
    #[error("`{caller}` may delete at most {limit} rows of {table}; this would delete {rows}")]
    DeleteLimit {
        caller: String,
        table: String,
        rows: u64,
        limit: u64,
    },
    /// The table name cannot be a SQL Server table.
    #[error("`{caller}` named an invalid table `{table}`: {reason}")]
    InvalidTable {
        caller: String,
        table: String,
        reason: String,
    },
}

/// What a grant covers: SQL Server tables (`table:`) or lakehouse tables (`lakehouse_table:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// SQL Server tables of the configured database.
    Sqlserver,
    /// Unity Catalog tables (or local Delta tables under `lakehouse_root`).
    Lakehouse,
}

/// A table a grant is checked against, in canonical form ([`crate::auth::names`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TableRef {
    /// A SQL Server table.
    Sqlserver(SqlTable),
    /// A lakehouse table.
    Lakehouse(LakehouseTable),
}

/// How [`TableRef`]'s `Display` marks lakehouse tables (job and audit records keep that form).
const LAKEHOUSE_PREFIX: &str = "lakehouse table ";

impl TableRef {
    /// Reads back the form `Display` writes (`dbo.Sales`, `lakehouse table main.s.t`); a SQL
    /// Server name is resolved without a configured database (three-part names are refused).
    pub fn parse_shown(shown: &str) -> std::result::Result<TableRef, crate::auth::NameError> {
        match shown.strip_prefix(LAKEHOUSE_PREFIX) {
            Some(name) => LakehouseTable::parse(name).map(TableRef::Lakehouse),
            None => SqlTable::parse(shown, None).map(TableRef::Sqlserver),
        }
    }

    fn scope(&self) -> Scope {
        match self {
            TableRef::Sqlserver(_) => Scope::Sqlserver,
            TableRef::Lakehouse(_) => Scope::Lakehouse,
        }
    }

    fn key(&self) -> &[String] {
        match self {
            TableRef::Sqlserver(t) => t.key(),
            TableRef::Lakehouse(t) => t.key(),
        }
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableRef::Sqlserver(t) => write!(f, "{t}"),
            TableRef::Lakehouse(t) => write!(f, "{LAKEHOUSE_PREFIX}{t}"),
        }
    }
}

/// One grant of a user: a table, a prefix (`schema.*`, `catalog.*`) or every table (`*`), of
/// SQL Server or of the lakehouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Grant {
    /// The table as written, normalised: `dbo.Sales`, `staging.*` or `*`.
    pub table: String,
    /// Which tables the grant is about.
    pub scope: Scope,
    /// What the grant allows.
    pub access: Access,
    /// The most rows one delete may remove; `None` = no limit, `0` = no deletes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_delete_rows: Option<u64>,
    #[serde(skip)]
    pub(super) pattern: Pattern,
}

/// An authenticated caller and its grants.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user's name from the permissions file (what the audit log records).
    pub name: String,
    pub(super) grants: Arc<[Grant]>,
}

impl Caller {
    /// The caller's grants, in file order.
    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    /// A SQL Server table name in canonical form, without a configured database (three-part
    /// names are refused); checks that know the database use [`SqlTable::parse`] and
    /// [`Caller::check_table`].
    fn parse(&self, table: &str) -> std::result::Result<TableRef, Denied> {
        TableRef::parse_shown(table).map_err(|e| Denied::InvalidTable {
            caller: self.name.clone(),
            table: table.to_string(),
            reason: e.reason,
        })
    }

    /// The most specific grant of the table's scope matching it: an exact table over a longer
    /// prefix over a shorter one over `*`.
    fn grant(&self, table: &TableRef) -> Option<&Grant> {
        self.grants
            .iter()
            .filter(|g| g.scope == table.scope())
            .filter_map(|g| g.pattern.specificity(table.key()).map(|s| (s, g)))
            .max_by_key(|(s, _)| *s)
            .map(|(_, g)| g)
    }

    /// Whether the caller may access the table as needed (the most specific grant decides).
    pub fn check_table(&self, table: &TableRef, need: Access) -> std::result::Result<(), Denied> {
        match self.grant(table) {
            None => Err(Denied::NoAccess {
                caller: self.name.clone(),
                table: table.to_string(),
                need,
            }),
            Some(g) if g.access.allows(need) => Ok(()),
            Some(g) => Err(Denied::Insufficient {
                caller: self.name.clone(),
                table: table.to_string(),
                need,
                has: g.access,
            }),
        }
    }

    /// [`Caller::check_table`] for a table as shown in job and audit records: a SQL Server name
    /// (two parts, or one for `dbo`) or `lakehouse table catalog.schema.table`.
    pub fn check(&self, table: &str, need: Access) -> std::result::Result<(), Denied> {
        self.check_table(&self.parse(table)?, need)
    }

    /// The `max_delete_rows` of the most specific grant matching the table. `None` means no
    /// limit, or no grant at all: check write access first (or use [`Caller::check_delete`]).
    pub fn max_delete_rows_of(&self, table: &TableRef) -> Option<u64> {
        self.grant(table).and_then(|g| g.max_delete_rows)
    }

    /// [`Caller::max_delete_rows_of`] for a SQL Server table name.
    pub fn max_delete_rows(&self, table: &str) -> Option<u64> {
        self.max_delete_rows_of(&self.parse(table).ok()?)
    }

    /// Whether the caller may write every SQL Server table: a `*` grant that allows writing,
    /// and no more specific SQL Server grant that does not.
    pub fn may_write_every_table(&self) -> bool {
        self.may_every(Scope::Sqlserver, Access::Write)
    }

    fn may_every(&self, scope: Scope, need: Access) -> bool {
        let scoped = || self.grants.iter().filter(|g| g.scope == scope);
        scoped().any(|g| g.pattern.is_star() && g.access.allows(need))
            && scoped().all(|g| g.access.allows(need))
    }

    /// Whether the caller may delete `rows` rows of the table: write access and within the limit.
    pub fn check_delete(&self, table: &str, rows: u64) -> std::result::Result<(), Denied> {
        let name = self.parse(table)?;
        self.check_table(&name, Access::Write)?;
        match self.max_delete_rows_of(&name) {
            Some(limit) if rows > limit => Err(Denied::DeleteLimit {
                caller: self.name.clone(),
                table: name.to_string(),
                rows,
                limit,
            }),
            _ => Ok(()),
        }
    }
}
