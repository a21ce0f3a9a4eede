//! Sync events end to end, in process: a real Delta events table and Delta sources in temp
//! folders, SQL Server played by the TDS test server. Checks exact table contents, rows
//! affected, refusals that change nothing, and exactly-once application under crashes, repeats
//! and competing pollers.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bridge::pipeline::{Plan, Project};
use bridge::sync::event::Outcome;
use bridge::sync::local::EVENT_COLUMNS;
use bridge::sync::{
    AllowAll, ApplyLimits, Event, EventStatus, EventStore, LocalDeltaEvents, NewEvent, Operation,
    Poller, PollerHooks, PollerOptions, SourceCatalog, SqliteEvents, apply_event,
};
use deltalake::DeltaTable;
use deltalake::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use tds_test_server::{TdsServer, TdsServerConfig};
use tokio_util::sync::CancellationToken;

/// The target every test starts from (three rows).
const TARGET: &str = "CREATE TABLE dbo.Target (
    id INT NOT NULL PRIMARY KEY, name NVARCHAR(50) NULL, amount DECIMAL(18,2) NULL)";
const SEED: &str = "INSERT INTO dbo.Target (id, name, amount) VALUES
    (1, N'one', 1.25), (2, N'two', 2.75), (3, N'three', 3.35)";
const TARGET_ROWS: &str = "SELECT id, name, amount FROM Target ORDER BY id";
const SEEDED: [&str; 3] = ["1|one|1.25", "2|two|2.75", "3|three|3.35"];

/// A TDS test server, a project whose `config/` points at it, and an events table.
struct Fixture {
    server: TdsServer,
    dir: tempfile::TempDir,
    project: Project,
}

impl Fixture {
    async fn new() -> Fixture {
        let server = TdsServer::start(TdsServerConfig::default())
            .await
            .expect("test server starts");
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "params:\n  lakehouse_root: lake\nsqlserver:\n  host: 127.0.0.1\n  port: {}\n  username: sa\n  password_env: PATH\n  encrypt: danger_plaintext\n",
            server.addr().port()
        );
        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        std::fs::write(dir.path().join("config/defaults.yaml"), config).unwrap();
        let project = Project::new(dir.path());
        let f = Fixture {
            server,
            dir,
            project,
        };
        f.tsql(TARGET).await;
        f.tsql(SEED).await;
        f
    }

    /// Runs T-SQL through the bridge's own connection code.
    async fn tsql(&self, sql: &str) {
        common::tds::tsql(&self.server, sql).await;
    }

    fn rows(&self, sql: &str) -> Vec<String> {
        self.server
            .query_sqlite(sql)
            .unwrap()
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|v| v.unwrap_or_else(|| "NULL".into()))
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect()
    }

    /// Keys recorded in `dbo.bridge_applied_keys`, with their rows.
    fn applied_keys(&self) -> BTreeMap<String, i64> {
        let exists =
            self.rows("SELECT COUNT(*) FROM sqlite_master WHERE name = 'bridge_applied_keys'");
        if exists == ["0"] {
            return BTreeMap::new();
        }
        self.rows("SELECT \"key\", rows_affected FROM bridge_applied_keys")
            .into_iter()
            .map(|l| {
                let (k, n) = l.split_once('|').unwrap();
                (k.to_string(), n.parse().unwrap())
            })
            .collect()
    }

    /// Writes a Delta table `lake/{parts}` with `(id, name, amount)` rows.
    async fn source(&self, table: &str, rows: &[(i64, &str, f64)]) {
        let path = self.dir.path().join("lake").join(table.replace('.', "/"));
        write_delta(&path, rows).await;
    }

    async fn store(&self) -> Arc<LocalDeltaEvents> {
        Arc::new(
            LocalDeltaEvents::open(self.dir.path().join("events"))
                .await
                .unwrap(),
        )
    }

    /// The events store as `bridge serve` opens it by default (a SQLite file).
    fn sqlite_store(&self) -> Arc<SqliteEvents> {
        Arc::new(SqliteEvents::open(self.dir.path().join(".bridge").join("events.db")).unwrap())
    }

    fn poller(&self, store: Arc<dyn EventStore>, worker: &str, lease: Duration) -> Poller {
        self.poller_with(store, worker, lease, Arc::new(AllowAll))
    }

    fn poller_with(
        &self,
        store: Arc<dyn EventStore>,
        worker: &str,
        lease: Duration,
        hooks: Arc<dyn PollerHooks>,
    ) -> Poller {
        let project = self.project.clone();
        Poller::new(
            store,
            move || project.clone(),
            hooks,
            PollerOptions {
                interval: Duration::from_millis(50),
                lease,
                worker_id: worker.into(),
                max_concurrent: 2,
                shutdown_grace: Duration::from_secs(10),
                retention: None,
            },
        )
    }
}

async fn write_delta(path: &Path, rows: &[(i64, &str, f64)]) {
    std::fs::create_dir_all(path).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
    ];
    let batch = RecordBatch::try_new(schema, columns).unwrap();
    let url = deltalake::ensure_table_uri(path.display().to_string()).unwrap();
    DeltaTable::try_from_url(url)
        .await
        .unwrap()
        .write(vec![batch])
        .await
        .unwrap();
}

/// An event as a poller would see it after claiming.
fn event(operation: Operation, source: &str, keys: &[&str], filter: Option<&str>) -> Event {
    Event {
        event_id: uuid::Uuid::new_v4().to_string(),
        operation,
        source_table: source.into(),
        target_table: "dbo.Target".into(),
        primary_keys: keys.iter().map(std::string::ToString::to_string).collect(),
        filter: filter.map(str::to_string),
        status: EventStatus::Running,
        rows_affected: None,
        error_message: None,
        created_at: chrono::Utc::now(),
        started_at: Some(chrono::Utc::now()),
        completed_at: None,
        created_by: Some("test".into()),
        claimed_by: Some("test".into()),
        pipeline: None,
        country: None,
        params: None,
        job_id: None,
    }
}

fn request(operation: Operation, source: &str, keys: &[&str], filter: Option<&str>) -> NewEvent {
    event(operation, source, keys, filter).request()
}

async fn apply(f: &Fixture, e: &Event) -> bridge::sync::Result<bridge::sync::AppliedEvent> {
    apply_event(
        &f.project,
        e,
        &ApplyLimits::default(),
        SourceCatalog::LocalDelta,
        &CancellationToken::new(),
    )
    .await
}

#[tokio::test]
async fn local_events_table_has_the_columns_of_the_ddl() {
    let ddl = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/bridge_events.sql"),
    )
    .unwrap();
    let body = ddl
        .split_once("CREATE TABLE IF NOT EXISTS bridge.events.bridge_events (")
        .expect("the DDL creates bridge.events.bridge_events")
        .1;
    let body = &body[..body.find("\n)").unwrap()];
    // (name, type, NOT NULL, comment) of each column line.
    let declared: Vec<(String, String, bool, String)> = body
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let (def, comment) = line
                .split_once(" COMMENT '")
                .expect("every column has a comment");
            let mut words = def.split_whitespace();
            let name = words.next().unwrap().to_string();
            let ty = words.next().unwrap().to_string();
            let not_null = def.contains("NOT NULL");
            let comment = comment
                .trim_end_matches(',')
                .strip_suffix('\'')
                .unwrap()
                .replace("''", "'");
            (name, ty, not_null, comment)
        })
        .collect();
    assert_eq!(declared.len(), 18, "{declared:?}");

    let dir = tempfile::tempdir().unwrap();
    LocalDeltaEvents::open(dir.path()).await.unwrap();
    let url = deltalake::ensure_table_uri(dir.path().display().to_string()).unwrap();
    let table = deltalake::open_table(url).await.unwrap();
    let schema = table.snapshot().unwrap().snapshot().arrow_schema();
    let actual: Vec<(String, String, bool)> = schema
        .fields()
        .iter()
        .map(|f| {
            let ty = match f.data_type() {
                DataType::Utf8 => "STRING".to_string(),
                DataType::Int64 => "BIGINT".to_string(),
                DataType::Timestamp(
                    deltalake::arrow::datatypes::TimeUnit::Microsecond,
                    Some(tz),
                ) if tz.as_ref() == "UTC" => "TIMESTAMP".to_string(),
                DataType::List(item) if item.data_type() == &DataType::Utf8 => {
                    "ARRAY<STRING>".to_string()
                }
                other => format!("unexpected {other}"),
            };
            (f.name().clone(), ty, !f.is_nullable())
        })
        .collect();
    let expected: Vec<(String, String, bool)> = declared
        .iter()
        .map(|(n, t, nn, _)| (n.clone(), t.clone(), *nn))
        .collect();
    assert_eq!(actual, expected);
    // The comments are the library's too.
    for ((name, _, _, comment), column) in declared.iter().zip(EVENT_COLUMNS.iter()) {
        assert_eq!(
            (name.as_str(), comment.as_str()),
            (column.name, column.comment)
        );
    }
}

/// A local events table made before RUN events gains their four columns when a server opens it;
/// its rows read them as NULL and keep everything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_local_events_table_gains_the_run_columns() {
    use deltalake::kernel::StructField;
    let dir = tempfile::tempdir().unwrap();
    let url = deltalake::ensure_table_uri(dir.path().display().to_string()).unwrap();
    let old = &EVENT_COLUMNS[..14];
    assert_eq!(old.last().unwrap().name, "claimed_by");
    let table = DeltaTable::try_from_url(url.clone())
        .await
        .unwrap()
        .create()
        .with_columns(
            old.iter()
                .map(|c| StructField::new(c.name, c.ty.delta(), c.nullable)),
        )
        .await
        .unwrap();
    let id = "0b9e8c1e-3f7a-4d0e-9d7e-1c2b3a4d5e6f";
    let ctx = deltalake::datafusion::prelude::SessionContext::new();
    let row = ctx
        .sql(&format!(
            "SELECT '{id}' AS event_id, 'INSERT' AS operation, 'main.s.t' AS source_table, 'dbo.T' AS target_table, \
             CAST(NULL AS ARRAY<VARCHAR>) AS primary_keys, CAST(NULL AS VARCHAR) AS filter, 'completed' AS status, \
             CAST(3 AS BIGINT) AS rows_affected, CAST(NULL AS VARCHAR) AS error_message, \
             CAST('2024-01-01T00:00:00Z' AS TIMESTAMP) AT TIME ZONE 'UTC' AS created_at, \
             CAST(NULL AS TIMESTAMP) AT TIME ZONE 'UTC' AS started_at, CAST(NULL AS TIMESTAMP) AT TIME ZONE 'UTC' AS completed_at, \
             'alice' AS created_by, CAST(NULL AS VARCHAR) AS claimed_by"
        ))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    table.write(row).await.unwrap();

    let store = LocalDeltaEvents::open(dir.path()).await.unwrap();
    let event = store.get(id).await.unwrap().expect("the old row is kept");
    assert_eq!(
        (event.source_table.as_str(), event.rows_affected),
        ("main.s.t", Some(3))
    );
    assert!(event.pipeline.is_none() && event.job_id.is_none());
    let table = deltalake::open_table(url).await.unwrap();
    let names: Vec<String> = table
        .snapshot()
        .unwrap()
        .snapshot()
        .arrow_schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let expected: Vec<&str> = EVENT_COLUMNS.iter().map(|c| c.name).collect();
    assert_eq!(names, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_adds_the_source_rows() {
    let f = Fixture::new().await;
    f.source("main.sales.new", &[(4, "four", 4.5), (5, "five", 5.0)])
        .await;
    let applied = apply(&f, &event(Operation::Insert, "main.sales.new", &[], None))
        .await
        .unwrap();
    assert_eq!((applied.rows_affected, applied.already_applied), (2, false));
    assert_eq!(
        f.rows(TARGET_ROWS),
        [&SEEDED[..], &["4|four|4.50", "5|five|5.00"]].concat()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_updates_matches_and_inserts_the_rest() {
    let f = Fixture::new().await;
    f.source("main.sales.changes", &[(2, "TWO", 22.5), (4, "four", 4.0)])
        .await;
    let applied = apply(
        &f,
        &event(Operation::Upsert, "main.sales.changes", &["id"], None),
    )
    .await
    .unwrap();
    assert_eq!(applied.rows_affected, 2);
    assert_eq!(
        f.rows(TARGET_ROWS),
        ["1|one|1.25", "2|TWO|22.50", "3|three|3.35", "4|four|4.00"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_changes_matching_rows_and_ignores_the_others() {
    let f = Fixture::new().await;
    f.source(
        "main.sales.changes",
        &[(2, "TWO", 22.5), (3, "THREE", 33.0), (9, "nine", 9.0)],
    )
    .await;
    let applied = apply(
        &f,
        &event(Operation::Update, "main.sales.changes", &["id"], None),
    )
    .await
    .unwrap();
    assert_eq!(applied.rows_affected, 2, "row 9 matches nothing");
    assert_eq!(
        f.rows(TARGET_ROWS),
        ["1|one|1.25", "2|TWO|22.50", "3|THREE|33.00"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_matching_keys_within_the_limit() {
    let f = Fixture::new().await;
    f.source(
        "main.sales.gone",
        &[(1, "x", 0.0), (3, "y", 0.0), (9, "z", 0.0)],
    )
    .await;
    let limits = ApplyLimits {
        max_delete_rows: Some(2),
    };
    let e = event(Operation::Delete, "main.sales.gone", &["id"], None);
    let applied = apply_event(
        &f.project,
        &e,
        &limits,
        SourceCatalog::LocalDelta,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(applied.rows_affected, 2);
    assert_eq!(f.rows(TARGET_ROWS), ["2|two|2.75"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_over_the_limit_fails_and_changes_nothing() {
    let f = Fixture::new().await;
    f.source(
        "main.sales.gone",
        &[(1, "x", 0.0), (2, "y", 0.0), (3, "z", 0.0)],
    )
    .await;
    let limits = ApplyLimits {
        max_delete_rows: Some(2),
    };
    let e = event(Operation::Delete, "main.sales.gone", &["id"], None);
    let err = apply_event(
        &f.project,
        &e,
        &limits,
        SourceCatalog::LocalDelta,
        &CancellationToken::new(),
    )
    .await
    .unwrap_err();
    // A refusal by type, which the server audits as `refused`.
    assert!(
        matches!(
            err.refusal(),
            Some(bridge::error::Refusal::DeleteCap {
                deleted: 3,
                limit: 2,
                ..
            })
        ),
        "{err}"
    );
    let err = err.to_string();
    assert!(
        err.contains("would delete 3 rows from dbo.Target, over max_delete_rows 2"),
        "{err}"
    );
    assert_eq!(f.rows(TARGET_ROWS), SEEDED);
    assert!(
        f.applied_keys().is_empty(),
        "a refused write records no key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_selects_the_rows_written() {
    let f = Fixture::new().await;
    f.source(
        "main.sales.new",
        &[
            (4, "four", 4.0),
            (5, "five", 5.0),
            (6, "six", 6.0),
            (7, "seven", 7.0),
        ],
    )
    .await;
    let e = event(
        Operation::Insert,
        "main.sales.new",
        &[],
        Some("amount >= 5 AND name <> 'six' -- a comment"),
    );
    let applied = apply(&f, &e).await.unwrap();
    assert_eq!(applied.rows_affected, 2);
    assert_eq!(
        f.rows(TARGET_ROWS),
        [&SEEDED[..], &["5|five|5.00", "7|seven|7.00"]].concat()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_events_fail_naming_the_field_and_change_nothing() {
    let f = Fixture::new().await;
    f.source("main.sales.new", &[(4, "four", 4.0)]).await;
    let cases = [
        (
            event(
                Operation::Insert,
                "main.sales.new",
                &[],
                Some("1=1; DROP TABLE Target"),
            ),
            "filter: must be one SQL expression, but `;` follows it",
        ),
        (
            event(Operation::Insert, "main.sales.new", &[], Some("nope > 1")),
            "filter: ",
        ),
        (
            event(Operation::Insert, "main.sales.new", &[], Some("amount + 1")),
            "filter: ",
        ),
        (
            event(Operation::Insert, "main.sales.missing", &[], None),
            "source_table: `main.sales.missing` not found: no Delta table at lake/main/sales/missing",
        ),
        (
            event(Operation::Insert, "main.sales.new;drop", &[], None),
            "source_table: `main.sales.new;drop` is not a table name",
        ),
        (
            Event {
                target_table: "x;drop".into(),
                ..event(Operation::Insert, "main.sales.new", &[], None)
            },
            "target_table: `x;drop` is not a table name",
        ),
        (
            event(Operation::Upsert, "main.sales.new", &[], None),
            "primary_keys: UPSERT needs at least one key",
        ),
        (
            Event {
                event_id: "1' OR '1'='1".into(),
                ..event(Operation::Insert, "main.sales.new", &[], None)
            },
            "event_id: ",
        ),
    ];
    for (e, expected) in cases {
        let err = apply(&f, &e).await.unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with(expected),
            "{:?}: `{message}` should start with `{expected}`",
            e.filter
        );
        assert!(err.field().is_some(), "{message}");
    }
    assert_eq!(f.rows(TARGET_ROWS), SEEDED);
    assert!(f.applied_keys().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_events_row_whose_filter_calls_an_unbounded_function_fails_naming_it() {
    let f = Fixture::new().await;
    f.source("main.sales.new", &[(4, "four", 4.0), (5, "five", 5.0)])
        .await;
    // Rows written straight into the events table (as a Databricks job does) are not validated
    // on the way in; the poller finds the bad filter when it applies the claimed event, and
    // records this error as the event's error_message.
    let e = event(
        Operation::Insert,
        "main.sales.new",
        &[],
        Some("length(repeat(name, 1000000000)) > 0"),
    );
    let err = apply(&f, &e).await.unwrap_err();
    assert_eq!(err.field(), Some("filter"), "{err}");
    assert!(
        err.to_string()
            .starts_with("filter: function `repeat` is not allowed in a filter"),
        "{err}"
    );
    assert_eq!(f.rows(TARGET_ROWS), SEEDED);
    assert!(f.applied_keys().is_empty());
    // The same event with a bounded filter is applied.
    let e = event(
        Operation::Insert,
        "main.sales.new",
        &[],
        Some("upper(substr(name, 1, 2)) = 'FI' AND abs(amount) >= 5"),
    );
    assert_eq!(apply(&f, &e).await.unwrap().rows_affected, 1);
    assert_eq!(
        f.rows(TARGET_ROWS),
        [&SEEDED[..], &["5|five|5.00"]].concat()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_in_a_filter_are_not_rendered() {
    let f = Fixture::new().await;
    // If the filter were rendered, `{{ env("PATH") }}` would become the value of PATH.
    let path = std::env::var("PATH").unwrap();
    let literal = "{{ env(\"PATH\") }}";
    f.source(
        "main.sales.tricky",
        &[(4, literal, 4.0), (5, path.as_str(), 5.0)],
    )
    .await;
    let e = event(
        Operation::Insert,
        "main.sales.tricky",
        &[],
        Some("name = '{{ env(\"PATH\") }}'"),
    );
    let applied = apply(&f, &e).await.unwrap();
    assert_eq!(applied.rows_affected, 1);
    assert_eq!(
        f.rows("SELECT id, name FROM Target WHERE id > 3"),
        [format!("4|{literal}")]
    );
    // Block syntax is not run either: it is not an expression at all.
    let e = event(
        Operation::Insert,
        "main.sales.tricky",
        &[],
        Some("{% for x in range(3) %}1{% endfor %} = 1"),
    );
    let err = apply(&f, &e).await.unwrap_err().to_string();
    assert!(err.starts_with("filter: "), "{err}");
    assert!(!err.contains(&path), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applying_an_event_twice_changes_nothing_the_second_time() {
    let f = Fixture::new().await;
    f.source("main.sales.changes", &[(2, "TWO", 22.5), (4, "four", 4.0)])
        .await;
    let e = event(Operation::Upsert, "main.sales.changes", &["id"], None);
    let first = apply(&f, &e).await.unwrap();
    assert_eq!((first.rows_affected, first.already_applied), (2, false));
    let after_first = f.rows(TARGET_ROWS);
    // The source changes in between: a re-apply must still write nothing.
    f.source("main.sales.changes", &[(1, "ONE", 11.0)]).await;
    let second = apply(&f, &e).await.unwrap();
    assert_eq!((second.rows_affected, second.already_applied), (2, true));
    assert_eq!(f.rows(TARGET_ROWS), after_first);
    assert_eq!(f.applied_keys(), BTreeMap::from([(e.event_id.clone(), 2)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_appliers_of_one_event_write_once() {
    let f = Fixture::new().await;
    let rows: Vec<(i64, String, f64)> = (10..60).map(|i| (i, format!("n{i}"), i as f64)).collect();
    let rows: Vec<(i64, &str, f64)> = rows.iter().map(|(i, n, a)| (*i, n.as_str(), *a)).collect();
    f.source("main.sales.bulk", &rows).await;
    let e = event(Operation::Insert, "main.sales.bulk", &[], None);
    let (a, b) = tokio::join!(apply(&f, &e), apply(&f, &e));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((a.rows_affected, b.rows_affected), (50, 50));
    assert!(
        a.already_applied != b.already_applied,
        "exactly one applies: {a:?} {b:?}"
    );
    assert_eq!(f.rows("SELECT COUNT(*) FROM Target"), ["53"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_apply_commits_nothing() {
    let f = Fixture::new().await;
    f.source("main.sales.new", &[(4, "four", 4.0)]).await;
    let cancel = CancellationToken::new();
    cancel.cancel();
    let e = event(Operation::Insert, "main.sales.new", &[], None);
    let err = apply_event(
        &f.project,
        &e,
        &ApplyLimits::default(),
        SourceCatalog::LocalDelta,
        &cancel,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            bridge::sync::SyncError::Apply(bridge::Error::Cancelled)
        ),
        "{err}"
    );
    assert_eq!(f.rows(TARGET_ROWS), SEEDED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_apply_and_finish_is_recovered_with_the_first_rows() {
    let f = Fixture::new().await;
    f.source("main.sales.new", &[(4, "four", 4.0), (5, "five", 5.0)])
        .await;
    let store = f.store().await;
    let submitted = store
        .submit(request(Operation::Insert, "main.sales.new", &[], None))
        .await
        .unwrap();
    // The crashed server: claimed, applied (committed), then died before `finish`.
    let claimed = store.claim_next("crashed").await.unwrap().unwrap();
    assert_eq!(claimed.event_id, submitted.event_id);
    let applied = apply(&f, &claimed).await.unwrap();
    assert_eq!(applied.rows_affected, 2);
    let after_crash = f.rows(TARGET_ROWS);

    // A poller with the default lease leaves it alone.
    let patient = f.poller(store.clone(), "patient", Duration::from_secs(600));
    assert_eq!(patient.poll_once().await.unwrap(), 0);
    // One with a short lease takes it over and completes it with the first application's rows.
    tokio::time::sleep(Duration::from_millis(60)).await;
    let recovering = f.poller(store.clone(), "recovering", Duration::from_millis(50));
    assert_eq!(recovering.poll_once().await.unwrap(), 1);
    let done = store.get(&submitted.event_id).await.unwrap().unwrap();
    assert_eq!(done.status, EventStatus::Completed);
    assert_eq!(done.rows_affected, Some(2));
    assert_eq!(done.claimed_by.as_deref(), Some("recovering"));
    assert_eq!(f.rows(TARGET_ROWS), after_crash);
    assert_eq!(
        f.applied_keys(),
        BTreeMap::from([(submitted.event_id.clone(), 2)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_commit_is_recovered_by_applying_once() {
    let f = Fixture::new().await;
    f.source("main.sales.new", &[(4, "four", 4.0)]).await;
    let store = f.store().await;
    let submitted = store
        .submit(request(Operation::Insert, "main.sales.new", &[], None))
        .await
        .unwrap();
    // The crashed server claimed it and died before writing anything.
    store.claim_next("crashed").await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    let recovering = f.poller(store.clone(), "recovering", Duration::from_millis(50));
    assert_eq!(recovering.poll_once().await.unwrap(), 1);
    let done = store.get(&submitted.event_id).await.unwrap().unwrap();
    assert_eq!(
        (done.status, done.rows_affected),
        (EventStatus::Completed, Some(1))
    );
    assert_eq!(
        f.rows(TARGET_ROWS),
        [&SEEDED[..], &["4|four|4.00"]].concat()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poller_shut_down_mid_apply_leaves_the_event_for_recovery() {
    let f = Fixture::new().await;
    let rows: Vec<(i64, String, f64)> = (10..2010).map(|i| (i, format!("n{i}"), 1.0)).collect();
    let rows: Vec<(i64, &str, f64)> = rows.iter().map(|(i, n, a)| (*i, n.as_str(), *a)).collect();
    f.source("main.sales.bulk", &rows).await;
    let store = f.store().await;
    let submitted = store
        .submit(request(Operation::Insert, "main.sales.bulk", &[], None))
        .await
        .unwrap();
    // Shut down as soon as the event is claimed, with no grace: the apply is cancelled.
    let shutdown = CancellationToken::new();
    struct CancelOnClaim(CancellationToken);
    #[async_trait]
    impl PollerHooks for CancelOnClaim {
        async fn authorize(
            &self,
            _event: &Event,
            _plan: &Plan,
        ) -> Result<ApplyLimits, bridge::error::BoxError> {
            Ok(ApplyLimits::default())
        }
        async fn on_claimed(&self, _event: &Event) {
            self.0.cancel();
        }
    }
    let poller = Poller::new(
        store.clone(),
        {
            let project = f.project.clone();
            move || project.clone()
        },
        Arc::new(CancelOnClaim(shutdown.clone())),
        PollerOptions {
            interval: Duration::from_millis(50),
            lease: Duration::from_secs(600),
            worker_id: "stopping".into(),
            max_concurrent: 1,
            // No grace: in-flight applies are cancelled at once.
            shutdown_grace: Duration::ZERO,
            retention: None,
        },
    );
    poller.run(shutdown).await;
    let left = store.get(&submitted.event_id).await.unwrap().unwrap();
    assert_eq!(left.status, EventStatus::Running, "left for recovery");
    assert_eq!(f.rows(TARGET_ROWS), SEEDED, "nothing committed");
    assert!(f.applied_keys().is_empty());

    tokio::time::sleep(Duration::from_millis(60)).await;
    let recovering = f.poller(store.clone(), "recovering", Duration::from_millis(50));
    assert_eq!(recovering.poll_once().await.unwrap(), 1);
    let done = store.get(&submitted.event_id).await.unwrap().unwrap();
    assert_eq!(
        (done.status, done.rows_affected),
        (EventStatus::Completed, Some(2000))
    );
    assert_eq!(f.rows("SELECT COUNT(*) FROM Target"), ["2003"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_records_failures_and_refusals() {
    let f = Fixture::new().await;
    f.source("main.sales.new", &[(4, "four", 4.0)]).await;
    f.source("main.sales.gone", &[(1, "x", 0.0)]).await;
    let store = f.store().await;
    let missing = store
        .submit(request(Operation::Insert, "main.sales.missing", &[], None))
        .await
        .unwrap();
    let mut refused = request(Operation::Delete, "main.sales.gone", &["id"], None);
    refused.created_by = Some("intruder".into());
    let refused = store.submit(refused).await.unwrap();
    let allowed = store
        .submit(request(Operation::Insert, "main.sales.new", &[], None))
        .await
        .unwrap();

    /// Refuses events of `intruder`; remembers every outcome it is told about.
    #[derive(Default)]
    struct Hooks {
        finished: std::sync::Mutex<Vec<(String, EventStatus, Outcome)>>,
    }
    #[async_trait]
    impl PollerHooks for Hooks {
        async fn authorize(
            &self,
            event: &Event,
            _plan: &Plan,
        ) -> Result<ApplyLimits, bridge::error::BoxError> {
            match event.created_by.as_deref() {
                Some("intruder") => Err("intruder may not write dbo.Target".into()),
                _ => Ok(ApplyLimits::default()),
            }
        }
        async fn on_finished(&self, event: &Event, outcome: &Outcome, _duration: Duration) {
            self.finished.lock().unwrap().push((
                event.event_id.clone(),
                event.status,
                outcome.clone(),
            ));
        }
    }
    let hooks = Arc::new(Hooks::default());
    let poller = f.poller_with(store.clone(), "w1", Duration::from_secs(600), hooks.clone());
    assert_eq!(poller.poll_once().await.unwrap(), 3);

    let missing = store.get(&missing.event_id).await.unwrap().unwrap();
    assert_eq!(missing.status, EventStatus::Failed);
    assert!(
        missing
            .error_message
            .as_deref()
            .unwrap()
            .starts_with("source_table: `main.sales.missing` not found"),
        "{missing:?}"
    );
    let refused = store.get(&refused.event_id).await.unwrap().unwrap();
    assert_eq!(
        (refused.status, refused.error_message.as_deref()),
        (
            EventStatus::Failed,
            Some("intruder may not write dbo.Target")
        )
    );
    let allowed = store.get(&allowed.event_id).await.unwrap().unwrap();
    assert_eq!(
        (allowed.status, allowed.rows_affected),
        (EventStatus::Completed, Some(1))
    );
    // The refused DELETE removed nothing; only the allowed insert was applied.
    assert_eq!(
        f.rows(TARGET_ROWS),
        [&SEEDED[..], &["4|four|4.00"]].concat()
    );
    assert_eq!(
        f.applied_keys().into_keys().collect::<Vec<_>>(),
        std::slice::from_ref(&allowed.event_id)
    );
    let finished = hooks.finished.lock().unwrap();
    assert_eq!(finished.len(), 3);
    assert!(
        finished
            .iter()
            .any(|(id, status, outcome)| id == &allowed.event_id
                && *status == EventStatus::Completed
                && *outcome == Outcome::completed(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_claiming_concurrently_claim_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = Arc::new(LocalDeltaEvents::open(dir.path()).await.unwrap());
    let b = Arc::new(LocalDeltaEvents::open(dir.path()).await.unwrap());
    const EVENTS: usize = 30;
    let mut submitted = BTreeSet::new();
    for i in 0..EVENTS {
        let store = if i % 2 == 0 { &a } else { &b };
        // Each its own target: the syncs of one target are claimed one at a time.
        let e = store
            .submit(NewEvent {
                target_table: format!("dbo.Target{i}"),
                ..request(Operation::Insert, "main.sales.new", &[], None)
            })
            .await
            .unwrap();
        submitted.insert(e.event_id);
    }
    // Four claimers (two per store), each claiming until nothing is left.
    let mut tasks = tokio::task::JoinSet::new();
    for (n, store) in [&a, &b, &a, &b].into_iter().enumerate() {
        let store = Arc::clone(store);
        tasks.spawn(async move {
            let worker = format!("w{n}");
            let mut claimed = Vec::new();
            let mut latencies = Vec::new();
            loop {
                let t = Instant::now();
                match store.claim_next(&worker).await.unwrap() {
                    Some(e) => {
                        latencies.push(t.elapsed());
                        assert_eq!(e.claimed_by.as_deref(), Some(worker.as_str()));
                        claimed.push(e.event_id);
                    }
                    None => break,
                }
            }
            (worker, claimed, latencies)
        });
    }
    let mut all = Vec::new();
    let mut latencies = Vec::new();
    let mut per_worker = BTreeMap::new();
    while let Some(result) = tasks.join_next().await {
        let (worker, claimed, l) = result.unwrap();
        per_worker.insert(worker, claimed.len());
        all.extend(claimed);
        latencies.extend(l);
    }
    let unique: BTreeSet<String> = all.iter().cloned().collect();
    assert_eq!(all.len(), EVENTS, "claimed twice: {per_worker:?}");
    assert_eq!(unique, submitted);
    // The table agrees: every event running, claimed by the worker that got it.
    for e in a.list(None, 100).await.unwrap() {
        assert_eq!(e.status, EventStatus::Running);
    }
    latencies.sort();
    eprintln!(
        "claims per worker: {per_worker:?}; claim latency under contention: median {:?}, max {:?}",
        latencies[latencies.len() / 2],
        latencies.last().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pollers_apply_many_events_exactly_once() {
    let f = Fixture::new().await;
    let (a, b) = (f.store().await, f.store().await);
    two_pollers_apply_exactly_once(&f, a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pollers_on_one_sqlite_file_apply_many_events_exactly_once() {
    let f = Fixture::new().await;
    let (a, b) = (f.sqlite_store(), f.sqlite_store());
    two_pollers_apply_exactly_once(&f, a, b).await;
}

/// Two pollers, each with its own store instance on the same events table, apply 20 events into
/// a keyless table: each once.
async fn two_pollers_apply_exactly_once(
    f: &Fixture,
    store_a: Arc<dyn EventStore>,
    store_b: Arc<dyn EventStore>,
) {
    // A target without a key, so a second application would show as duplicate rows.
    f.tsql(
        "CREATE TABLE dbo.Log (id INT NOT NULL, name NVARCHAR(50) NULL, amount DECIMAL(18,2) NULL)",
    )
    .await;
    let rows: Vec<(i64, String, f64)> = (0..100).map(|i| (i, format!("n{i}"), 1.5)).collect();
    let rows: Vec<(i64, &str, f64)> = rows.iter().map(|(i, n, a)| (*i, n.as_str(), *a)).collect();
    f.source("main.sales.bulk", &rows).await;
    const EVENTS: i64 = 20;
    let mut ids = Vec::new();
    for k in 0..EVENTS {
        let filter = format!("id >= {} AND id < {}", k * 5, k * 5 + 5);
        let mut e = request(Operation::Insert, "main.sales.bulk", &[], Some(&filter));
        e.target_table = "dbo.Log".into();
        ids.push(store_a.submit(e).await.unwrap().event_id);
    }
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let a = tokio::spawn(
        f.poller(store_a.clone(), "server-a", Duration::from_secs(600))
            .run(shutdown.clone()),
    );
    let b = tokio::spawn(
        f.poller(store_b.clone(), "server-b", Duration::from_secs(600))
            .run(shutdown.clone()),
    );
    loop {
        let done = store_a
            .list(None, 100)
            .await
            .unwrap()
            .iter()
            .filter(|e| matches!(e.status, EventStatus::Completed | EventStatus::Failed))
            .count();
        if done == ids.len() || started.elapsed() > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    a.await.unwrap();
    b.await.unwrap();
    let events = store_a.list(None, 100).await.unwrap();
    let mut by_worker: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        assert_eq!(
            (e.status, e.rows_affected),
            (EventStatus::Completed, Some(5)),
            "{e:?}"
        );
        *by_worker.entry(e.claimed_by.clone().unwrap()).or_default() += 1;
    }
    eprintln!(
        "{EVENTS} events applied in {:?}; per poller: {by_worker:?}",
        started.elapsed()
    );
    assert_eq!(
        f.rows("SELECT COUNT(*), COUNT(DISTINCT id), MIN(id), MAX(id) FROM Log"),
        ["100|100|0|99"]
    );
    let keys = f.applied_keys();
    assert_eq!(keys.len(), ids.len());
    assert!(keys.values().all(|n| *n == 5), "{keys:?}");
    assert_eq!(
        keys.keys().cloned().collect::<BTreeSet<_>>(),
        ids.into_iter().collect()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_can_use_update_mode_and_idempotency_keys() {
    let f = Fixture::new().await;
    f.source("main.sales.changes", &[(2, "TWO", 22.5), (9, "nine", 9.0)])
        .await;
    let yaml = "name: t
steps:
  - id: src
    source: {type: delta, path: lake/main/sales/changes}
  - id: out
    sink:
      type: sqlserver
      from: src
      table: dbo.Target
      mode: update
      primary_keys: [id]
      idempotency_key: nightly-2024-06-01
";
    let plan = bridge::pipeline::Plan::from_text(
        &f.project,
        Path::new("p.yaml"),
        yaml,
        &Default::default(),
    )
    .unwrap();
    let run = |plan| {
        let project = f.project.clone();
        async move {
            bridge::pipeline::run(&project, &plan, &Default::default())
                .await
                .unwrap()
        }
    };
    let first = run(plan.clone()).await;
    let out = first.steps.iter().find(|s| s.id == "out").unwrap();
    assert_eq!(out.rows, 1);
    assert_eq!(out.outputs, ["dbo.Target (update: 1 row)"]);
    let second = run(plan).await;
    let out = second.steps.iter().find(|s| s.id == "out").unwrap();
    assert_eq!(out.rows, 1);
    assert_eq!(
        out.outputs,
        [
            "dbo.Target (update: already applied under idempotency key `nightly-2024-06-01` with 1 row; nothing written)"
        ]
    );
    assert_eq!(
        f.rows(TARGET_ROWS),
        ["1|one|1.25", "2|TWO|22.50", "3|three|3.35"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_its_memory_limit_fails_and_writes_nothing() {
    let f = Fixture::new().await;
    f.source("main.sales.new", &[(4, "four", 4.0), (5, "five", 5.0)])
        .await;
    // A hash join must hold its build side in memory, tracked by DataFusion's memory pool.
    let yaml = "name: t
steps:
  - id: src
    source: {type: delta, path: lake/main/sales/new}
  - id: joined
    transform:
      sql: SELECT a.id, a.name, b.amount FROM src a JOIN src b ON a.id = b.id
  - id: out
    sink: {type: sqlserver, from: joined, table: dbo.Target, mode: insert}
";
    let plan = bridge::pipeline::Plan::from_text(
        &f.project,
        Path::new("p.yaml"),
        yaml,
        &Default::default(),
    )
    .unwrap();
    let limited = bridge::pipeline::RunOptions {
        memory_limit: Some(16),
        ..Default::default()
    };
    let err = bridge::pipeline::run(&f.project, &plan, &limited)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Resources exhausted"), "{err}");
    assert_eq!(f.rows(TARGET_ROWS), SEEDED);
    // With room enough, the same run writes both rows.
    let roomy = bridge::pipeline::RunOptions {
        memory_limit: Some(64 * 1024 * 1024),
        ..Default::default()
    };
    bridge::pipeline::run(&f.project, &plan, &roomy)
        .await
        .unwrap();
    assert_eq!(
        f.rows(TARGET_ROWS),
        [&SEEDED[..], &["4|four|4.00", "5|five|5.00"]].concat()
    );
}

/// Latency of the events table operations (`cargo test --release --test sync_events
/// claim_latency -- --ignored --nocapture`); prints median and 90th percentile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run it in release mode"]
async fn claim_latency() {
    fn stats(name: &str, mut d: Vec<Duration>) {
        d.sort();
        eprintln!(
            "{name}: n={} median {:?} p90 {:?} max {:?}",
            d.len(),
            d[d.len() / 2],
            d[d.len() * 9 / 10],
            d[d.len() - 1]
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let a = Arc::new(LocalDeltaEvents::open(dir.path()).await.unwrap());
    let b = Arc::new(LocalDeltaEvents::open(dir.path()).await.unwrap());
    const EVENTS: usize = 60;
    let mut submits = Vec::new();
    for _ in 0..EVENTS {
        let t = Instant::now();
        a.submit(request(Operation::Insert, "main.sales.new", &[], None))
            .await
            .unwrap();
        submits.push(t.elapsed());
    }
    stats("submit", submits);
    // One claimer, 30 pending events left behind it.
    let (mut claims, mut finishes) = (Vec::new(), Vec::new());
    for _ in 0..EVENTS / 2 {
        let t = Instant::now();
        let e = a.claim_next("solo").await.unwrap().unwrap();
        claims.push(t.elapsed());
        let t = Instant::now();
        a.finish(&e.event_id, "solo", &Outcome::completed(1))
            .await
            .unwrap();
        finishes.push(t.elapsed());
    }
    stats("claim (one claimer)", claims);
    stats("finish", finishes);
    // Two stores claiming the rest at the same time.
    let claim_all = |store: Arc<LocalDeltaEvents>, worker: &'static str| async move {
        let mut d = Vec::new();
        loop {
            let t = Instant::now();
            match store.claim_next(worker).await.unwrap() {
                Some(_) => d.push(t.elapsed()),
                None => return d,
            }
        }
    };
    let (x, y) = tokio::join!(claim_all(a.clone(), "x"), claim_all(b.clone(), "y"));
    stats("claim (two claimers racing)", [x, y].concat());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_wakes_when_an_event_arrives() {
    let f = Fixture::new().await;
    f.source("main.sales.new", &[(4, "four", 4.0)]).await;
    let store = f.store().await;
    let project = f.project.clone();
    let poller = Poller::new(
        store.clone(),
        move || project.clone(),
        Arc::new(AllowAll),
        PollerOptions {
            // Far longer than the test: only the watch on the table can wake it.
            interval: Duration::from_secs(600),
            worker_id: "watcher".into(),
            ..PollerOptions::default()
        },
    );
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(poller.run(shutdown.clone()));
    // Let the first (empty) poll happen.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let submitted = Instant::now();
    let event = store
        .submit(request(Operation::Insert, "main.sales.new", &[], None))
        .await
        .unwrap();
    let done = loop {
        let e = store.get(&event.event_id).await.unwrap().unwrap();
        if e.status == EventStatus::Completed || submitted.elapsed() > Duration::from_secs(60) {
            break e;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("submitted to completed: {:?}", submitted.elapsed());
    assert_eq!(
        (done.status, done.rows_affected),
        (EventStatus::Completed, Some(1))
    );
    shutdown.cancel();
    running.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_to_the_sqlite_store_wakes_the_poller_at_once() {
    let f = Fixture::new().await;
    f.tsql("CREATE TABLE dbo.Woken (id INT NOT NULL, name NVARCHAR(50) NULL, amount DECIMAL(18,2) NULL)")
        .await;
    f.source("main.sales.woken", &[(1, "a", 1.0), (2, "b", 2.0)])
        .await;
    let store = f.sqlite_store();
    // Noise in the same folder does not matter; the database's own files do.
    std::fs::write(f.dir.path().join(".bridge").join("other.log"), "x").unwrap();
    let project = f.project.clone();
    let poller = Poller::new(
        store.clone(),
        move || project.clone(),
        Arc::new(AllowAll),
        PollerOptions {
            // Never by the clock within the test: only a wake-up applies the event in time.
            interval: Duration::from_secs(3600),
            lease: Duration::from_secs(600),
            worker_id: "woken".into(),
            max_concurrent: 1,
            shutdown_grace: Duration::from_secs(10),
            retention: None,
        },
    );
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(poller.run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Another process's connection writes the event.
    let writer = SqliteEvents::open(f.dir.path().join(".bridge").join("events.db")).unwrap();
    let mut e = request(Operation::Insert, "main.sales.woken", &[], None);
    e.target_table = "dbo.Woken".into();
    let id = writer.submit(e).await.unwrap().event_id;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = store.get(&id).await.unwrap().unwrap().status;
        if matches!(status, EventStatus::Completed | EventStatus::Failed)
            || Instant::now() > deadline
        {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    shutdown.cancel();
    running.await.unwrap();
    assert_eq!(status, EventStatus::Completed, "the poller was not woken");
    assert_eq!(f.rows("SELECT COUNT(*) FROM Woken"), ["2"]);
}

#[tokio::test]
async fn the_sqlite_store_keeps_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = bridge::sync::SqliteEvents::open(dir.path().join("events.db")).unwrap();
    common::store_contract::check(&store, Duration::from_millis(500)).await;
}

#[tokio::test]
async fn the_local_delta_store_keeps_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalDeltaEvents::open(dir.path().join("bridge_events"))
        .await
        .unwrap();
    common::store_contract::check(&store, Duration::from_millis(1500)).await;
}
