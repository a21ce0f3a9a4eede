//! Prepared statements of a session: the system procedures ODBC drivers (FreeTDS, Microsoft's)
//! and JDBC-style clients call for parameterised statements, by RPC id or by name:
//! `sp_prepare` (11), `sp_execute` (12), `sp_prepexec` (13), `sp_unprepare` (15), next to
//! `sp_executesql` (10). A handle is an `int OUTPUT` parameter the server fills in, answered with a
//! RETURNVALUE token after the procedure's RETURNSTATUS, as SQL Server does.

use std::collections::HashMap;

use rusqlite::types::Value;

use crate::error::SqlError;

/// The system procedures an RPC request can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SystemProc {
    ExecuteSql,
    Prepare,
    Execute,
    PrepExec,
    Unprepare,
}

impl SystemProc {
    /// The procedure of a well-known RPC id (MS-TDS 2.2.6.6, `ProcID`).
    pub(crate) fn from_id(id: u16) -> Option<Self> {
        Some(match id {
            10 => Self::ExecuteSql,
            11 => Self::Prepare,
            12 => Self::Execute,
            13 => Self::PrepExec,
            15 => Self::Unprepare,
            _ => return None,
        })
    }

    /// The procedure called by name (`sp_prepexec`, `sys.sp_prepexec`, `[sp_prepexec]`).
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        let last = name.rsplit('.').next().unwrap_or(name);
        let last = last.trim_matches(|c| c == '[' || c == ']');
        Some(match last.to_ascii_lowercase().as_str() {
            "sp_executesql" => Self::ExecuteSql,
            "sp_prepare" => Self::Prepare,
            "sp_execute" => Self::Execute,
            "sp_prepexec" => Self::PrepExec,
            "sp_unprepare" => Self::Unprepare,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::ExecuteSql => "sp_executesql",
            Self::Prepare => "sp_prepare",
            Self::Execute => "sp_execute",
            Self::PrepExec => "sp_prepexec",
            Self::Unprepare => "sp_unprepare",
        }
    }
}

/// A prepared statement: its text and its parameter declaration (`@P1 int, @P2 nvarchar(10)`).
#[derive(Debug, Clone)]
pub(crate) struct Statement {
    pub sql: String,
    pub decl: String,
}

/// The prepared statements of one connection (handles are per connection in SQL Server too).
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    statements: HashMap<i32, Statement>,
    next: i32,
}

impl Prepared {
    /// Store a statement and return its new handle (1, 2, ... as SQL Server numbers them).
    pub(crate) fn insert(&mut self, statement: Statement) -> i32 {
        self.next += 1;
        self.statements.insert(self.next, statement);
        self.next
    }

    /// The statement of a handle, or SQL Server's error 8179.
    pub(crate) fn get(&self, handle: i32) -> Result<&Statement, SqlError> {
        self.statements.get(&handle).ok_or_else(|| unknown(handle))
    }

    /// Forget a handle (`sp_unprepare`), or SQL Server's error 8179.
    pub(crate) fn remove(&mut self, handle: i32) -> Result<(), SqlError> {
        self.statements
            .remove(&handle)
            .map(|_| ())
            .ok_or_else(|| unknown(handle))
    }
}

fn unknown(handle: i32) -> SqlError {
    SqlError::new(
        8179,
        format!("Could not find prepared statement with handle {handle}."),
    )
}

/// A handle parameter's value: an integer, or error 201/8179 as SQL Server reports them.
pub(crate) fn handle_of(proc: SystemProc, value: Option<&Value>) -> Result<i32, SqlError> {
    match value {
        Some(Value::Integer(h)) => i32::try_from(*h).map_err(|_| unknown(0)),
        Some(Value::Null) => Err(unknown(0)),
        _ => Err(SqlError::new(
            201,
            format!(
                "Procedure or function '{}' expects parameter '@handle', which was not supplied.",
                proc.name()
            ),
        )),
    }
}

/// The text of a string parameter (`@params`, `@stmt`), or SQL Server's error 214.
pub(crate) fn text_of(value: Option<&Value>, name: &str) -> Result<String, SqlError> {
    match value {
        Some(Value::Text(s)) => Ok(s.clone()),
        Some(Value::Null) if name == "@params" => Ok(String::new()),
        _ => Err(SqlError::new(
            214,
            format!("Procedure expects parameter '{name}' of type 'ntext/nchar/nvarchar'."),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procedures_are_known_by_id_and_by_name() {
        assert_eq!(SystemProc::from_id(13), Some(SystemProc::PrepExec));
        assert_eq!(SystemProc::from_id(14), None);
        assert_eq!(
            SystemProc::from_name("sys.[SP_PREPEXEC]"),
            Some(SystemProc::PrepExec)
        );
        assert_eq!(SystemProc::from_name("sp_who"), None);
    }

    #[test]
    fn handles_are_numbered_and_forgotten() {
        let mut p = Prepared::default();
        let st = |s: &str| Statement {
            sql: s.into(),
            decl: String::new(),
        };
        let a = p.insert(st("select 1"));
        let b = p.insert(st("select 2"));
        assert_eq!((a, b), (1, 2));
        assert_eq!(p.get(b).unwrap().sql, "select 2");
        p.remove(a).unwrap();
        assert_eq!(p.get(a).unwrap_err().number, 8179);
        assert_eq!(p.remove(a).unwrap_err().number, 8179);
    }
}
