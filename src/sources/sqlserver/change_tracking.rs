//! SQL Server Change Tracking reads of the `sqlserver` source (`incremental: {mode:
//! change_tracking}`).
//!
//! When the source opens, [`ChangeTracking::prepare`] checks that the database and the table
//! track changes (else it fails with the `ALTER` statements to run), finds the key (the table's
//! primary key unless `keys:` are given) and decides what the run reads:
//! - a **snapshot** of the whole table, on the first run, or when the saved version expired and
//!   `on_expired: full_refresh` is set: every row as an `insert`;
//! - the **changes** since the saved version: `CHANGETABLE(CHANGES table, @saved)` joined to the
//!   table, one row per changed key with its last operation; a deleted key carries its key
//!   columns, the other columns null.
//!
//! Either read runs in one snapshot-isolation transaction that first reads
//! `CHANGE_TRACKING_CURRENT_VERSION()` (Microsoft's documented pattern), so the rows and the
//! version agree; the database must allow snapshot isolation. The version is saved only once
//! the run commits ([`ChangeTracking::save`]), so a dry run or a failed run reads the same changes
//! again. A source scanned by several steps saves the lowest version any scan read (reading a
//! change twice is harmless for a merge; skipping one is not).

use std::sync::{Arc, Mutex};

use crate::changes::{OP_COLUMN, VERSION_COLUMN};
use crate::error::{Error, Result};
use crate::mssql::{MssqlError, Phase, PooledClient};
use crate::pipeline::render::RenderedSql;
use crate::pipeline::run::RunInfo;
use crate::pipeline::state::WatermarkStore;
use crate::sql::{Dialect, SqlValue, quote_ident, validate_ident};

use super::config::{IncrementalSpec, OnExpired};

/// SQL Server's error number when a snapshot transaction reads a database that does not allow
/// snapshot isolation.
const SNAPSHOT_NOT_ALLOWED: u32 = 3952;

/// Why a change-tracking read cannot go ahead. Each message names the table and what to run.
#[derive(Debug, thiserror::Error)]
pub enum ChangeTrackingError {
    #[error(
        "change tracking is not enabled on database `{database}`, so table {table} cannot be read incrementally; run `ALTER DATABASE [{database}] SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 7 DAYS, AUTO_CLEANUP = ON)` and then `ALTER TABLE {table} ENABLE CHANGE_TRACKING`"
    )]
    DatabaseNotEnabled { database: String, table: String },
    #[error(
        "change tracking is not enabled on table {table} (database `{database}`); run `ALTER TABLE {table} ENABLE CHANGE_TRACKING` (the table needs a primary key)"
    )]
    TableNotEnabled { database: String, table: String },
    #[error("table {table} does not exist in database `{database}`")]
    NoTable { database: String, table: String },
    #[error(
        "table {table} has no primary key and `incremental.keys` names none; change tracking needs the key to report changes by"
    )]
    NoKeys { table: String },
    #[error(
        "incremental.keys: [{keys}] are not the primary key of {table} ([{primary_key}]); change tracking reports changes by primary key, so leave `keys` out or list exactly those columns"
    )]
    KeysAreNotThePrimaryKey {
        table: String,
        keys: String,
        primary_key: String,
    },
    #[error("incremental.keys: `{key}` is not a column of {table}")]
    UnknownKey { key: String, table: String },
    #[error(
        "the changes of {table} since version {saved} (saved by the last committed run) were cleaned up: the table's CHANGE_TRACKING_MIN_VALID_VERSION is {min_valid}; resync with a new snapshot by setting `incremental.on_expired: full_refresh` (the next run reads the whole table), or raise the database's CHANGE_RETENTION so runs keep up"
    )]
    Expired {
        table: String,
        saved: i64,
        min_valid: i64,
    },
    #[error(
        "snapshot isolation is not allowed in database `{database}`, and change tracking reads {table} in a snapshot transaction so rows and version agree; run `ALTER DATABASE [{database}] SET ALLOW_SNAPSHOT_ISOLATION ON`"
    )]
    SnapshotNotAllowed { database: String, table: String },
    #[error(
        "the saved change version of this step, `{value}`, is not a number (the state file `.bridge/state.db` was edited, or the step was a watermark source); delete it or rename the step"
    )]
    BadSavedVersion { value: String },
    #[error(
        "incremental.mode change_tracking: `{table}` names a database; connect to it with `connection.database` and name the table as `schema.table`"
    )]
    ThreePartName { table: String },
}

/// What a run reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadKind {
    /// The whole table, every row an `insert`: the first run, or a full refresh.
    Snapshot,
    /// Keys changed after version `since`.
    Changes { since: i64 },
}

/// What [`ChangeTracking::prepare`] decided.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub kind: ReadKind,
    /// The key columns, in key order.
    pub keys: Vec<String>,
    /// The database, for messages.
    pub database: String,
}

/// A change-tracking source's state between runs and during one.
#[derive(Debug)]
pub struct ChangeTracking {
    step: String,
    /// The table as configured (`dbo.Sales`), and quoted (`[dbo].[Sales]`).
    table: String,
    quoted: String,
    keys: Vec<String>,
    on_expired: OnExpired,
    store: WatermarkStore,
    run: RunInfo,
    /// The lowest `CHANGE_TRACKING_CURRENT_VERSION()` a scan of this run read.
    read_version: Arc<Mutex<Option<i64>>>,
}

impl ChangeTracking {
    /// The change-tracking state of `step` reading `table`.
    pub fn new(
        step: &str,
        table: &str,
        spec: &IncrementalSpec,
        store: WatermarkStore,
        run: &RunInfo,
    ) -> std::result::Result<Self, ChangeTrackingError> {
        let parts = validate_ident(table).map_err(|_| ChangeTrackingError::NoTable {
            database: "?".into(),
            table: table.to_string(),
        })?;
        if parts.len() > 2 {
            return Err(ChangeTrackingError::ThreePartName {
                table: table.to_string(),
            });
        }
        Ok(ChangeTracking {
            step: step.to_string(),
            table: table.to_string(),
            quoted: quote_ident(table, Dialect::SqlServer).expect("validated above"),
            keys: spec.keys.clone(),
            on_expired: spec.on_expired,
            store,
            run: run.clone(),
            read_version: Arc::default(),
        })
    }

    /// The state-store key of the saved version (apart from a watermark of the same step).
    fn state_key(step: &str) -> String {
        format!("{step}#change_tracking")
    }

    /// The version the last committed run read, if any.
    pub fn saved(&self) -> Result<Option<i64>> {
        saved_version(&self.store, &self.run, &self.step)
    }

    /// Checks the database and table, finds the keys and decides what this run reads.
    pub async fn prepare(&self, conn: &mut PooledClient, target: &str) -> Result<Prepared> {
        let fail = |e: ChangeTrackingError| Error::step_from(&self.step, e);
        let database = scalar_text(conn, target, "SELECT DB_NAME()", &[])
            .await
            .map_err(|e| self.query_failed(e))?
            .unwrap_or_default();
        let tracked = scalar_i64(
            conn,
            target,
            "SELECT CAST(COUNT(*) AS bigint) FROM sys.change_tracking_databases WHERE database_id = DB_ID()",
            &[],
        )
        .await
        .map_err(|e| self.query_failed(e))?
        .unwrap_or(0);
        if tracked == 0 {
            return Err(fail(ChangeTrackingError::DatabaseNotEnabled {
                database,
                table: self.quoted.clone(),
            }));
        }
        let name = [SqlValue::Text(self.quoted.clone())];
        let min_valid = scalar_i64(
            conn,
            target,
            "SELECT CAST(CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(@P1)) AS bigint)",
            &name,
        )
        .await
        .map_err(|e| self.query_failed(e))?;
        let Some(min_valid) = min_valid else {
            let exists = scalar_i64(conn, target, "SELECT CAST(OBJECT_ID(@P1) AS bigint)", &name)
                .await
                .map_err(|e| self.query_failed(e))?;
            let table = self.quoted.clone();
            return Err(fail(match exists {
                None => ChangeTrackingError::NoTable { database, table },
                Some(_) => ChangeTrackingError::TableNotEnabled { database, table },
            }));
        };
        // CHANGETABLE reports changes by primary key: given keys must be those columns (when the
        // catalog shows them), or each row would not stand for one key.
        let primary_key = self.primary_key(conn, target).await?;
        let keys = if self.keys.is_empty() {
            primary_key
        } else {
            let sorted = |keys: &[String]| {
                let mut keys = keys.to_vec();
                keys.sort();
                keys
            };
            if !primary_key.is_empty() && sorted(&primary_key) != sorted(&self.keys) {
                return Err(fail(ChangeTrackingError::KeysAreNotThePrimaryKey {
                    table: self.quoted.clone(),
                    keys: self.keys.join(", "),
                    primary_key: primary_key.join(", "),
                }));
            }
            self.keys.clone()
        };
        if keys.is_empty() {
            return Err(fail(ChangeTrackingError::NoKeys {
                table: self.quoted.clone(),
            }));
        }
        let kind = match self.saved()? {
            None => ReadKind::Snapshot,
            Some(saved) if saved < min_valid => match self.on_expired {
                OnExpired::Fail => {
                    return Err(fail(ChangeTrackingError::Expired {
                        table: self.quoted.clone(),
                        saved,
                        min_valid,
                    }));
                }
                OnExpired::FullRefresh => {
                    tracing::warn!(step = %self.step, table = %self.quoted, saved, min_valid, "saved change version expired; reading a new snapshot (on_expired: full_refresh)");
                    ReadKind::Snapshot
                }
            },
            Some(saved) => ReadKind::Changes { since: saved },
        };
        self.run.change_feeds.record(
            &self.step,
            crate::changes::Feed {
                keys: keys.clone(),
                snapshot: kind == ReadKind::Snapshot,
            },
        );
        tracing::info!(step = %self.step, table = %self.quoted, ?kind, "change tracking read planned");
        Ok(Prepared {
            kind,
            keys,
            database,
        })
    }

    /// The table's primary key columns, in key order (empty without a primary key).
    async fn primary_key(&self, conn: &mut PooledClient, target: &str) -> Result<Vec<String>> {
        let parts: Vec<&str> = self.table.split('.').collect();
        let (schema, name) = match parts.as_slice() {
            [name] => ("dbo", *name),
            [schema, name] => (*schema, *name),
            _ => unreachable!("checked in new"),
        };
        let sql = "SELECT k.COLUMN_NAME FROM INFORMATION_SCHEMA.TABLE_CONSTRAINTS AS c \
                   JOIN INFORMATION_SCHEMA.KEY_COLUMN_USAGE AS k ON k.CONSTRAINT_NAME = c.CONSTRAINT_NAME \
                   AND k.TABLE_SCHEMA = c.TABLE_SCHEMA AND k.TABLE_NAME = c.TABLE_NAME \
                   WHERE c.CONSTRAINT_TYPE = 'PRIMARY KEY' AND c.TABLE_SCHEMA = @P1 AND c.TABLE_NAME = @P2 \
                   ORDER BY k.ORDINAL_POSITION";
        let mut query = tiberius::Query::new(sql);
        query.bind(schema.to_string());
        query.bind(name.to_string());
        let rows = async {
            query
                .query(&mut conn.client)
                .await?
                .into_first_result()
                .await
        }
        .await
        .map_err(|e| self.query_failed(MssqlError::from_tiberius(Phase::Query, target, &e)))?;
        Ok(rows
            .iter()
            .filter_map(|r| r.get::<&str, _>(0).map(str::to_string))
            .collect())
    }

    fn query_failed(&self, e: MssqlError) -> Error {
        Error::step_from(&self.step, e)
    }

    /// The query of this run's read: the table's `columns` (as described, in order) then
    /// `_change_op` and `_change_version`. A snapshot's version is the transaction's current one.
    pub fn query(&self, prepared: &Prepared, columns: &[String]) -> Result<RenderedSql> {
        for key in &prepared.keys {
            if !columns.contains(key) {
                return Err(Error::step_from(
                    &self.step,
                    ChangeTrackingError::UnknownKey {
                        key: key.clone(),
                        table: self.quoted.clone(),
                    },
                ));
            }
        }
        let table = &self.quoted;
        Ok(match prepared.kind {
            ReadKind::Snapshot => {
                let list: Vec<String> = columns
                    .iter()
                    .map(|c| format!("[t].{0} AS {0}", bracket(c)))
                    .collect();
                RenderedSql {
                    text: format!(
                        "SELECT {}, N'insert' AS {}, CAST(CHANGE_TRACKING_CURRENT_VERSION() AS bigint) AS {} FROM {table} AS [t]",
                        list.join(", "),
                        bracket(OP_COLUMN),
                        bracket(VERSION_COLUMN)
                    ),
                    params: Vec::new(),
                }
            }
            ReadKind::Changes { since } => {
                let list: Vec<String> = columns
                    .iter()
                    .map(|c| {
                        let from = if prepared.keys.contains(c) { "ct" } else { "t" };
                        format!("[{from}].{0} AS {0}", bracket(c))
                    })
                    .collect();
                let on: Vec<String> = prepared
                    .keys
                    .iter()
                    .map(|k| format!("[t].{0} = [ct].{0}", bracket(k)))
                    .collect();
                RenderedSql {
                    text: format!(
                        "SELECT {}, CASE [ct].[SYS_CHANGE_OPERATION] WHEN N'I' THEN N'insert' WHEN N'U' THEN N'update' ELSE N'delete' END AS {}, [ct].[SYS_CHANGE_VERSION] AS {} FROM CHANGETABLE(CHANGES {table}, @P1) AS [ct] LEFT OUTER JOIN {table} AS [t] ON {}",
                        list.join(", "),
                        bracket(OP_COLUMN),
                        bracket(VERSION_COLUMN),
                        on.join(" AND ")
                    ),
                    params: vec![SqlValue::Int(since)],
                }
            }
        })
    }

    /// What a scan needs to read in a snapshot transaction and report its version.
    pub fn snapshot_read(&self, database: &str) -> SnapshotRead {
        SnapshotRead {
            database: database.to_string(),
            table: self.quoted.clone(),
            version: Arc::clone(&self.read_version),
        }
    }

    /// Saves the version this run read, once the run committed.
    pub fn save(&self) -> Result<()> {
        let version = *self.read_version.lock().expect("version lock");
        if let Some(version) = version {
            tracing::info!(step = %self.step, table = %self.quoted, version, "change tracking version saved");
            self.store.set(
                &self.run.pipeline,
                self.run.country.as_deref(),
                &Self::state_key(&self.step),
                &version.to_string(),
            )?;
        }
        Ok(())
    }
}

/// The version the last committed run of `step` read.
pub fn saved_version(store: &WatermarkStore, run: &RunInfo, step: &str) -> Result<Option<i64>> {
    saved_in(store, &run.pipeline, run.country.as_deref(), step)
}

/// The saved version of a pipeline's (and country's) step, for `bridge plan`.
pub fn saved_in(
    store: &WatermarkStore,
    pipeline: &str,
    country: Option<&str>,
    step: &str,
) -> Result<Option<i64>> {
    match store.get(pipeline, country, &ChangeTracking::state_key(step))? {
        None => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| {
            Error::step_from(step, ChangeTrackingError::BadSavedVersion { value: text })
        }),
    }
}

/// How one scan reads in a snapshot transaction.
#[derive(Debug, Clone)]
pub struct SnapshotRead {
    database: String,
    table: String,
    version: Arc<Mutex<Option<i64>>>,
}

impl SnapshotRead {
    /// Starts the snapshot transaction on `conn` and reads its current version (recorded as
    /// the run's, when lower than another scan's).
    pub async fn begin(&self, conn: &mut PooledClient, target: &str) -> Result<(), BeginError> {
        conn.simple_query("SET TRANSACTION ISOLATION LEVEL SNAPSHOT; BEGIN TRANSACTION")
            .await
            .map_err(|e| self.failed(target, &e))?
            .into_results()
            .await
            .map_err(|e| self.failed(target, &e))?;
        let version = async {
            conn.simple_query("SELECT CAST(CHANGE_TRACKING_CURRENT_VERSION() AS bigint)")
                .await?
                .into_row()
                .await
        }
        .await
        .map_err(|e| self.failed(target, &e))?
        .and_then(|row| row.get::<i64, _>(0))
        .unwrap_or(0);
        let mut read = self.version.lock().expect("version lock");
        *read = Some(read.map_or(version, |v| v.min(version)));
        Ok(())
    }

    /// Ends the snapshot transaction (a read-only one: nothing to keep) and goes back to the
    /// connection's default isolation, so the pooled connection is as it was.
    pub async fn end(&self, conn: &mut PooledClient, target: &str) -> Result<(), BeginError> {
        conn.simple_query("COMMIT TRANSACTION; SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            .await
            .map_err(|e| self.failed(target, &e))?
            .into_results()
            .await
            .map_err(|e| self.failed(target, &e))?;
        Ok(())
    }

    fn failed(&self, target: &str, e: &tiberius::error::Error) -> BeginError {
        let e = MssqlError::from_tiberius(Phase::Query, target, e);
        if e.code == Some(SNAPSHOT_NOT_ALLOWED) {
            BeginError::ChangeTracking(ChangeTrackingError::SnapshotNotAllowed {
                database: self.database.clone(),
                table: self.table.clone(),
            })
        } else {
            BeginError::Server(e)
        }
    }
}

/// Why a snapshot transaction could not start or end.
#[derive(Debug, thiserror::Error)]
pub enum BeginError {
    #[error(transparent)]
    ChangeTracking(ChangeTrackingError),
    #[error(transparent)]
    Server(MssqlError),
}

/// `[name]` with `]` doubled: a column name as SQL Server described it, quoted.
fn bracket(name: &str) -> String {
    format!("[{}]", name.replace(']', "]]"))
}

/// The first column of the first row of a query, as text.
async fn scalar_text(
    conn: &mut PooledClient,
    target: &str,
    sql: &str,
    params: &[SqlValue],
) -> std::result::Result<Option<String>, MssqlError> {
    let row = first_row(conn, target, sql, params).await?;
    Ok(row.and_then(|r| r.get::<&str, _>(0).map(str::to_string)))
}

/// The first column of the first row of a query, as a bigint.
async fn scalar_i64(
    conn: &mut PooledClient,
    target: &str,
    sql: &str,
    params: &[SqlValue],
) -> std::result::Result<Option<i64>, MssqlError> {
    let row = first_row(conn, target, sql, params).await?;
    Ok(row.and_then(|r| r.get::<i64, _>(0)))
}

async fn first_row(
    conn: &mut PooledClient,
    target: &str,
    sql: &str,
    params: &[SqlValue],
) -> std::result::Result<Option<tiberius::Row>, MssqlError> {
    let mut query = tiberius::Query::new(sql.to_string());
    for p in params {
        crate::mssql::bind(&mut query, p);
    }
    async { query.query(&mut conn.client).await?.into_row().await }
        .await
        .map_err(|e| MssqlError::from_tiberius(Phase::Query, target, &e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::sqlserver::config::IncrementalMode;

    fn tracking(keys: &[&str]) -> ChangeTracking {
        let spec = IncrementalSpec {
            mode: IncrementalMode::ChangeTracking,
            column: None,
            initial: None,
            keys: keys.iter().map(ToString::to_string).collect(),
            on_expired: OnExpired::Fail,
        };
        let run = RunInfo {
            run_id: "r".into(),
            pipeline: "p".into(),
            country: None,
            truncations: Arc::new(crate::output_types::Truncations::new(Default::default())),
            change_feeds: Arc::default(),
        };
        let store = WatermarkStore::for_project(std::path::Path::new("/nonexistent"));
        ChangeTracking::new("s", "dbo.Sales", &spec, store, &run).unwrap()
    }

    fn prepared(kind: ReadKind, keys: &[&str]) -> Prepared {
        Prepared {
            kind,
            keys: keys.iter().map(ToString::to_string).collect(),
            database: "db".into(),
        }
    }

    #[test]
    fn changes_take_keys_from_the_change_table_and_the_rest_from_the_row() {
        let ct = tracking(&[]);
        let sql = ct
            .query(
                &prepared(ReadKind::Changes { since: 7 }, &["id", "line"]),
                &["id".into(), "line".into(), "odd]name".into()],
            )
            .unwrap();
        assert_eq!(
            sql.text,
            "SELECT [ct].[id] AS [id], [ct].[line] AS [line], [t].[odd]]name] AS [odd]]name], \
             CASE [ct].[SYS_CHANGE_OPERATION] WHEN N'I' THEN N'insert' WHEN N'U' THEN N'update' ELSE N'delete' END AS [_change_op], \
             [ct].[SYS_CHANGE_VERSION] AS [_change_version] \
             FROM CHANGETABLE(CHANGES [dbo].[Sales], @P1) AS [ct] LEFT OUTER JOIN [dbo].[Sales] AS [t] \
             ON [t].[id] = [ct].[id] AND [t].[line] = [ct].[line]"
        );
        assert_eq!(sql.params, vec![SqlValue::Int(7)], "the version is bound");
    }

    #[test]
    fn a_snapshot_reads_every_row_as_an_insert_at_the_current_version() {
        let ct = tracking(&[]);
        let sql = ct
            .query(
                &prepared(ReadKind::Snapshot, &["id"]),
                &["id".into(), "v".into()],
            )
            .unwrap();
        assert_eq!(
            sql.text,
            "SELECT [t].[id] AS [id], [t].[v] AS [v], N'insert' AS [_change_op], \
             CAST(CHANGE_TRACKING_CURRENT_VERSION() AS bigint) AS [_change_version] FROM [dbo].[Sales] AS [t]"
        );
        assert!(sql.params.is_empty());
    }

    #[test]
    fn a_key_must_be_a_column_and_a_table_has_at_most_two_parts() {
        let ct = tracking(&["nope"]);
        let e = ct
            .query(&prepared(ReadKind::Snapshot, &["nope"]), &["id".into()])
            .unwrap_err();
        assert!(e.to_string().contains("`nope` is not a column"), "{e}");
        let spec = IncrementalSpec {
            mode: IncrementalMode::ChangeTracking,
            column: None,
            initial: None,
            keys: Vec::new(),
            on_expired: OnExpired::Fail,
        };
        let run = tracking(&[]).run;
        let store = WatermarkStore::for_project(std::path::Path::new("/nonexistent"));
        let e = ChangeTracking::new("s", "other.dbo.Sales", &spec, store, &run).unwrap_err();
        assert!(
            matches!(e, ChangeTrackingError::ThreePartName { .. }),
            "{e}"
        );
    }
}
