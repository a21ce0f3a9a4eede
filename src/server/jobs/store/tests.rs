//! Tests of the job store: statuses, filters and pages, owners and their leases, migration.

use serde_json::json;

use super::super::schema::{SCHEMA, SCHEMA_VERSION};
use super::*;

fn new_job(pipeline: &str) -> NewJob {
    NewJob {
        kind: "run".into(),
        pipeline: pipeline.into(),
        pipeline_file: Some(format!("pipelines/{pipeline}.yaml")),
        country: Some("co".into()),
        params: json!({"period": "202401"}),
        submitted_by: Some("calibration-team".into()),
        request: json!({"pipeline": pipeline, "country": "co"}),
        tables: vec!["dbo.Sales".into()],
    }
}

fn db(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join(".bridge").join("server.db")
}

fn store_as(dir: &tempfile::TempDir, owner: &str, lease: Duration) -> JobStore {
    JobStore::open(&db(dir), owner, lease).unwrap()
}

fn store(dir: &tempfile::TempDir) -> JobStore {
    store_as(
        dir,
        &uuid::Uuid::new_v4().to_string(),
        crate::server::ServeOptions::SERVER_LEASE.default,
    )
}

#[test]
fn two_servers_storing_one_id_store_one_job() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (store(&dir), store(&dir));
    let id = crate::server::jobs::derived_id("schedule/demo/co/1700000000000");
    let first = a.insert_as(&id, &new_job("demo")).unwrap().unwrap();
    assert_eq!(first.id, id);
    assert!(b.insert_as(&id, &new_job("demo")).unwrap().is_none());
    assert!(a.insert_as(&id, &new_job("other")).unwrap().is_none());
    assert_eq!(b.get(&id).unwrap().unwrap().pipeline, "demo");
    assert_ne!(
        id,
        crate::server::jobs::derived_id("schedule/demo/co/1700000060000")
    );
}

#[test]
fn insert_and_get() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    assert_eq!(s.reclaimed_on_open(), &Reclaimed::default());
    let job = s.insert(&new_job("sales")).unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.owner.as_deref(), Some(s.owner()));
    assert_eq!(job.tables, ["dbo.Sales"]);
    assert!(uuid::Uuid::parse_str(&job.id).is_ok());
    assert!(chrono::DateTime::parse_from_rfc3339(&job.created_at).is_ok());
    assert_eq!(job.started_at, None);
    assert_eq!(job.params, json!({"period": "202401"}));
    assert_eq!(s.get(&job.id).unwrap(), Some(job.clone()));
    assert_eq!(s.get("nope").unwrap(), None);

    assert!(s.mark_running(&job.id).unwrap());
    let summary = json!({"steps": [{"id": "load", "rows": 10}]});
    assert!(
        s.finish(&job.id, JobStatus::Succeeded, Some(summary.clone()), None)
            .unwrap()
    );
    let done = s.get(&job.id).unwrap().unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(done.summary, Some(summary));
    assert!(done.started_at.is_some() && done.finished_at.is_some());
    let json = serde_json::to_value(&done).unwrap();
    assert_eq!(json["status"], "succeeded");
}

#[test]
fn terminal_states_are_final() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    let job = s.insert(&new_job("sales")).unwrap();
    assert!(
        s.finish(
            &job.id,
            JobStatus::Cancelled,
            None,
            Some("cancelled".into())
        )
        .unwrap()
    );
    assert!(!s.mark_running(&job.id).unwrap());
    assert!(!s.finish(&job.id, JobStatus::Succeeded, None, None).unwrap());
    assert!(!s.finish(&job.id, JobStatus::Failed, None, None).unwrap());
    let j = s.get(&job.id).unwrap().unwrap();
    assert_eq!(j.status, JobStatus::Cancelled);
    assert_eq!(j.error.as_deref(), Some("cancelled"));

    let other = s.insert(&new_job("sales")).unwrap();
    assert!(!s.finish(&other.id, JobStatus::Running, None, None).unwrap());
    assert!(s.mark_running(&other.id).unwrap());
    assert!(!s.mark_running(&other.id).unwrap());
    assert!(!s.finish("unknown", JobStatus::Failed, None, None).unwrap());
}

#[test]
fn list_filters_and_pages_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    let mut ids = Vec::new();
    for i in 0..7 {
        let job = s
            .insert(&new_job(if i % 2 == 0 { "sales" } else { "stock" }))
            .unwrap();
        ids.push(job.id);
    }
    s.mark_running(&ids[6]).unwrap();
    s.finish(&ids[4], JobStatus::Failed, None, Some("boom".into()))
        .unwrap();

    let all = s.list(&JobFilter::default()).unwrap();
    assert_eq!(all.total, 7);
    assert_eq!(all.next_offset, None);
    let listed: Vec<&str> = all.items.iter().map(|j| j.id.as_str()).collect();
    let expected: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(listed, expected);

    let page = s
        .list(&JobFilter {
            limit: 3,
            ..JobFilter::default()
        })
        .unwrap();
    assert_eq!(page.items.len(), 3);
    assert_eq!(page.next_offset, Some(3));
    let last = s
        .list(&JobFilter {
            limit: 3,
            offset: 6,
            ..JobFilter::default()
        })
        .unwrap();
    assert_eq!(last.items.len(), 1);
    assert_eq!(last.items[0].id, ids[0]);
    assert_eq!(last.next_offset, None);
    let beyond = s
        .list(&JobFilter {
            offset: 100,
            ..JobFilter::default()
        })
        .unwrap();
    assert!(beyond.items.is_empty());
    assert_eq!(beyond.total, 7);

    let sales = s
        .list(&JobFilter {
            pipeline: Some("sales".into()),
            ..JobFilter::default()
        })
        .unwrap();
    assert_eq!(sales.total, 4);
    assert!(sales.items.iter().all(|j| j.pipeline == "sales"));
    let failed_sales = s
        .list(&JobFilter {
            pipeline: Some("sales".into()),
            status: Some(JobStatus::Failed),
            ..JobFilter::default()
        })
        .unwrap();
    assert_eq!(failed_sales.total, 1);
    assert_eq!(failed_sales.items[0].id, ids[4]);
    let queued = s
        .list(&JobFilter {
            status: Some(JobStatus::Queued),
            limit: 0,
            ..JobFilter::default()
        })
        .unwrap();
    assert_eq!(queued.total, 5);
    assert_eq!(queued.items.len(), 1, "a limit of 0 is raised to 1");
    assert_eq!(queued.next_offset, Some(1));
    // Values are bound, never spliced into SQL.
    let odd = s
        .list(&JobFilter {
            pipeline: Some("x' OR '1'='1".into()),
            ..JobFilter::default()
        })
        .unwrap();
    assert_eq!(odd.total, 0);
}

#[test]
fn a_live_servers_jobs_are_left_alone_and_a_dead_ones_are_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    // Long enough that a loaded machine (CI compiling next to it) does not let it lapse
    // between two steps that expect the first server alive.
    let lease = Duration::from_secs(3);
    let a = store_as(&dir, "server-a", lease);
    let queued = a.insert(&new_job("a")).unwrap().id;
    let running = a.insert(&new_job("b")).unwrap().id;
    a.mark_running(&running).unwrap();
    let done = a.insert(&new_job("c")).unwrap().id;
    a.finish(&done, JobStatus::Succeeded, Some(json!({})), None)
        .unwrap();

    // A second server while the first is alive: nothing of the first is touched.
    a.heartbeat().unwrap();
    let b = store_as(&dir, "server-b", lease);
    assert_eq!(b.reclaimed_on_open(), &Reclaimed::default());
    assert_eq!(b.live_owners().unwrap(), ["server-a", "server-b"]);
    std::thread::sleep(lease / 2);
    a.heartbeat().unwrap();
    std::thread::sleep(lease / 2);
    assert_eq!(b.heartbeat().unwrap(), Reclaimed::default());
    assert_eq!(b.get(&running).unwrap().unwrap().status, JobStatus::Running);

    // The first dies (no deregistration, no more heartbeats): once its lease has passed the
    // next heartbeat of another server interrupts its unfinished jobs and drops its row.
    drop(a);
    std::thread::sleep(lease + Duration::from_millis(100));
    let reclaimed = b.heartbeat().unwrap();
    assert_eq!(reclaimed.jobs, 2);
    assert_eq!(reclaimed.dead_owners, ["server-a"]);
    for id in [&queued, &running] {
        let j = b.get(id).unwrap().unwrap();
        assert_eq!(j.status, JobStatus::Interrupted);
        assert_eq!(j.error.as_deref(), Some(INTERRUPTED_ERROR));
        assert!(j.finished_at.is_some());
        assert_eq!(j.request["pipeline"], j.pipeline);
        assert_eq!(j.owner.as_deref(), Some("server-a"));
    }
    assert_eq!(b.get(&done).unwrap().unwrap().status, JobStatus::Succeeded);
    assert!(
        !b.finish(&running, JobStatus::Succeeded, None, None)
            .unwrap()
    );
    assert_eq!(b.live_owners().unwrap(), ["server-b"]);
    assert_eq!(b.heartbeat().unwrap(), Reclaimed::default());

    // A clean stop removes the row; a server opening later finds nobody to reclaim.
    let own = b.insert(&new_job("d")).unwrap().id;
    b.finish(&own, JobStatus::Cancelled, None, None).unwrap();
    b.deregister().unwrap();
    drop(b);
    let c = store_as(&dir, "server-c", lease);
    assert_eq!(c.reclaimed_on_open(), &Reclaimed::default());
    assert_eq!(c.live_owners().unwrap(), ["server-c"]);
    assert_eq!(c.list(&JobFilter::default()).unwrap().total, 4);
}

#[test]
fn startup_reclaims_the_jobs_of_a_server_dead_for_its_own_lease() {
    let dir = tempfile::tempdir().unwrap();
    // A short lease of its own: the dead server is judged by it, not by the newcomer's.
    let a = store_as(&dir, "server-a", Duration::from_millis(100));
    let running = a.insert(&new_job("a")).unwrap().id;
    a.mark_running(&running).unwrap();
    drop(a);
    std::thread::sleep(Duration::from_millis(200));
    let b = store_as(&dir, "server-b", Duration::from_secs(60));
    assert_eq!(b.reclaimed_on_open().jobs, 1);
    assert_eq!(b.reclaimed_on_open().dead_owners, ["server-a"]);
    assert_eq!(
        b.get(&running).unwrap().unwrap().status,
        JobStatus::Interrupted
    );
}

#[test]
fn a_schema_1_database_is_migrated_and_its_jobs_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(db(&dir).parent().unwrap()).unwrap();
    {
        let conn = Connection::open(db(&dir)).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        for (id, status) in [("old-done", "succeeded"), ("old-running", "running")] {
            conn.execute(
                "INSERT INTO jobs (id, kind, pipeline, params, status, submitted_by, created_at, request)
                 VALUES (?1, 'run', 'sales', '{}', ?2, 'alice', '2025-01-01T00:00:00.000000Z', '{}')",
                params![id, status],
            )
            .unwrap();
        }
    }
    let s = store(&dir);
    // A job of a server older than owners has no heartbeat to wait for: interrupted.
    assert_eq!(s.reclaimed_on_open().jobs, 1);
    let old = s.get("old-done").unwrap().unwrap();
    assert_eq!(old.status, JobStatus::Succeeded);
    assert_eq!((old.owner, old.tables), (None, Vec::<String>::new()));
    assert_eq!(
        s.get("old-running").unwrap().unwrap().status,
        JobStatus::Interrupted
    );
    let version: i64 = s
        .lock()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    s.insert(&new_job("sales")).unwrap();
    drop(s);
    // Opening again does not migrate twice.
    assert_eq!(store(&dir).list(&JobFilter::default()).unwrap().total, 3);

    // A newer schema is refused, naming the file and what to do.
    {
        let conn = Connection::open(db(&dir)).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let e = JobStore::open(
        &db(&dir),
        "x",
        crate::server::ServeOptions::SERVER_LEASE.default,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("server.db") && e.to_string().contains("newer bridge"),
        "{e}"
    );
}

#[test]
fn list_visible_counts_and_pages_only_visible_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    let mut mine = Vec::new();
    for i in 0..9 {
        let job = NewJob {
            submitted_by: Some(if i % 3 == 0 { "me" } else { "other" }.into()),
            tables: if i % 3 == 1 {
                vec!["dbo.Open".into()]
            } else {
                vec!["dbo.Secret".into()]
            },
            ..new_job(if i < 6 { "sales" } else { "stock" })
        };
        let id = s.insert(&job).unwrap().id;
        if i % 3 != 2 {
            mine.push(id);
        }
    }
    mine.reverse();
    let visible = |a: &JobAccess| {
        a.submitted_by.as_deref() == Some("me") || a.tables == ["dbo.Open".to_string()]
    };
    let all = s.list_visible(&JobFilter::default(), &visible).unwrap();
    assert_eq!(all.total, 6);
    let ids: Vec<&str> = all.items.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(ids, mine.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(all.next_offset, None);
    let second = s
        .list_visible(
            &JobFilter {
                limit: 4,
                offset: 4,
                ..JobFilter::default()
            },
            &visible,
        )
        .unwrap();
    assert_eq!(second.total, 6);
    assert_eq!(second.items.len(), 2);
    assert_eq!(second.items[0].id, mine[4]);
    assert_eq!(second.next_offset, None);
    let first = s
        .list_visible(
            &JobFilter {
                limit: 4,
                ..JobFilter::default()
            },
            &visible,
        )
        .unwrap();
    assert_eq!(first.next_offset, Some(4));
    let stock = s
        .list_visible(
            &JobFilter {
                pipeline: Some("stock".into()),
                ..JobFilter::default()
            },
            &visible,
        )
        .unwrap();
    assert_eq!(stock.total, 2);
    let none = s.list_visible(&JobFilter::default(), &|_| false).unwrap();
    assert_eq!((none.total, none.items.len()), (0, 0));
}

#[test]
fn scheduled_runs_are_busy_per_pipeline_and_country() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    let scheduled = |country: Option<&str>| NewJob {
        kind: "schedule".into(),
        country: country.map(str::to_string),
        submitted_by: None,
        ..new_job("sales")
    };
    let a = s.insert(&scheduled(Some("colombia"))).unwrap().id;
    assert!(s.scheduled_active("sales", Some("colombia")).unwrap());
    assert!(!s.scheduled_active("sales", Some("mexico")).unwrap());
    assert!(!s.scheduled_active("sales", None).unwrap());
    assert!(!s.scheduled_active("stock", Some("colombia")).unwrap());
    // A run submitted over the API does not hold off the schedule.
    s.insert(&new_job("sales")).unwrap();
    assert!(!s.scheduled_active("sales", Some("co")).unwrap());
    s.insert(&scheduled(None)).unwrap();
    assert!(s.scheduled_active("sales", None).unwrap());
    s.mark_running(&a).unwrap();
    assert!(s.scheduled_active("sales", Some("colombia")).unwrap());
    s.finish(&a, JobStatus::Succeeded, None, None).unwrap();
    assert!(!s.scheduled_active("sales", Some("colombia")).unwrap());
}

#[test]
fn counts_every_status() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    let a = s.insert(&new_job("a")).unwrap().id;
    let b = s.insert(&new_job("a")).unwrap().id;
    s.insert(&new_job("a")).unwrap();
    s.mark_running(&a).unwrap();
    s.finish(&b, JobStatus::Cancelled, None, None).unwrap();
    let counts = s.counts_by_status().unwrap();
    assert_eq!(
        counts,
        vec![
            (JobStatus::Queued, 1),
            (JobStatus::Running, 1),
            (JobStatus::Succeeded, 0),
            (JobStatus::Failed, 0),
            (JobStatus::Cancelled, 1),
            (JobStatus::Interrupted, 0),
        ]
    );
}

#[test]
fn status_names() {
    for status in JobStatus::ALL {
        assert_eq!(status.to_string().parse::<JobStatus>(), Ok(status));
        assert_eq!(
            serde_json::to_value(status).unwrap(),
            json!(status.as_str())
        );
    }
    let e = "done".parse::<JobStatus>().unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown job status `done`; expected one of queued, running, succeeded, failed, cancelled, interrupted"
    );
}

#[test]
fn wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir);
    let mode: String = s
        .lock()
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}
