//! `bridge serve` driven over HTTP: the real binary on 127.0.0.1:0, a scratch project, and the
//! audit log, job history and outputs checked after each request.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Scratch;
use serde_json::{Value, json};

const READER: &str = "reader-token-0123456789";
const WRITER: &str = "writer-token-9876543210";

/// A running `bridge serve`.
struct Server {
    child: Child,
    base: String,
    client: reqwest::Client,
}

impl Server {
    fn start(scratch: &Scratch, extra: &[&str]) -> Server {
        Server::start_env(scratch, extra, &[])
    }

    fn start_env(scratch: &Scratch, extra: &[&str], env: &[(&str, String)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_bridge"));
        command
            .arg("--root")
            .arg(scratch.root())
            .args(["serve", "--listen", "127.0.0.1:0", "--poll-interval", "0.2"])
            .args(extra)
            .env_remove("RUST_LOG")
            .env_remove("SQLSERVER_HOST")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("bridge serve starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("server prints its address");
        let base = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_string();
        Server {
            child,
            base,
            client: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, token, None).await
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    async fn delete(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, token, None).await
    }

    /// Polls a job until `done` holds for it.
    async fn wait_job(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (status, job) = self.get(&format!("/jobs/{id}"), Some(READER)).await;
            assert_eq!(status, 200, "{job}");
            if done(&job) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job never reached the state: {job}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_finished(&self, id: &str) -> Value {
        self.wait_job(id, |j| {
            !matches!(j["status"].as_str(), Some("queued" | "running"))
        })
        .await
    }

    /// Polls `GET /events/{id}` until the event is completed or failed.
    async fn wait_event(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let (status, event) = self.get(&format!("/events/{id}"), Some(READER)).await;
            assert_eq!(status, 200, "{event}");
            if matches!(event["status"].as_str(), Some("completed" | "failed")) {
                return event;
            }
            assert!(Instant::now() < deadline, "event never finished: {event}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then waits for the process to exit; returns whether it exited successfully.
    fn terminate(mut self) -> bool {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.success();
            }
            assert!(Instant::now() < deadline, "server ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: the server dies without cleaning up.
    fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch copy of the project with a permissions file: `reader` (plain token) may read every
/// SQL Server table and read and write lakehouse tables (the demo writes one); `writer` (hashed
/// token) may write dbo.Results, delete at most 2 rows, and read the `main` catalog.
fn project() -> Scratch {
    let scratch = Scratch::new();
    scratch.write(
        "config/permissions.yaml",
        &format!(
            r#"users:
  - name: reader
    token: "{READER}"
    permissions:
      - table: "*"
        access: read
      - lakehouse_table: "*"
        access: read_write
  - name: writer
    token_sha256: "{}"
    permissions:
      - table: dbo.Results
        access: read_write
        max_delete_rows: 2
      - lakehouse_table: "main.*"
        access: read
"#,
            bridge::auth::hash_token(WRITER)
        ),
    );
    scratch.write(
        "config/slow_seed.sql",
        "CREATE TABLE IF NOT EXISTS unused (x INTEGER);\n",
    );
    // A run long enough to cancel or interrupt: a few hundred million generated rows.
    scratch.write(
        "pipelines/slow.yaml",
        r#"name: slow
steps:
  - id: numbers
    source:
      type: sqlite
      database: output/slow.db
      seed: config/slow_seed.sql
      sql: "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 500000000) SELECT x, x * 2 AS y FROM n"
  - id: out
    sink:
      type: volume
      from: numbers
      destination: output/slow
      path: numbers
"#,
    );
    scratch
}

fn audit_lines(scratch: &Scratch) -> Vec<Value> {
    std::fs::read_to_string(scratch.path(".bridge/audit.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line `{l}`: {e}")))
        .collect()
}

/// The last audit line matching `pred`; panics with `what` when there is none.
fn last_audit(scratch: &Scratch, pred: impl Fn(&Value) -> bool, what: &str) -> Value {
    audit_lines(scratch)
        .into_iter()
        .rfind(|l| pred(l))
        .unwrap_or_else(|| panic!("no {what}"))
}

fn files_under(scratch: &Scratch, rel: &str) -> Vec<String> {
    common::list_files(&scratch.path(rel))
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_matrix_with_audit_lines() {
    let scratch = project();
    let server = Server::start(&scratch, &["--no-schedules"]);

    // No token, wrong token: 401, and a security line in the audit log without the token.
    let (status, body) = server.get("/jobs", None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "unauthorized");
    let (status, _) = server.get("/jobs", Some("not-a-token-of-anyone")).await;
    assert_eq!(status, 401);
    let audit = audit_lines(&scratch);
    let refused: Vec<&Value> = audit.iter().filter(|l| l["action"] == "auth").collect();
    assert_eq!(refused.len(), 2, "{audit:?}");
    assert!(refused.iter().all(|l| l["result"] == "refused"));
    assert!(
        refused[0]["error"]
            .as_str()
            .unwrap()
            .contains("no bearer token")
    );
    assert!(
        refused[1]["error"]
            .as_str()
            .unwrap()
            .contains("unknown token")
    );
    let raw = std::fs::read_to_string(scratch.path(".bridge/audit.log")).unwrap();
    assert!(!raw.contains("not-a-token-of-anyone") && !raw.contains(READER));

    // Plain and hashed tokens are accepted.
    assert_eq!(server.get("/jobs", Some(READER)).await.0, 200);
    assert_eq!(server.get("/jobs", Some(WRITER)).await.0, 200);
    // The scheme is case-insensitive (RFC 7235).
    for scheme in ["bearer", "BEARER"] {
        let response = server
            .client
            .get(format!("{}/jobs", server.base))
            .header("Authorization", format!("{scheme} {READER}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{scheme}");
    }

    // A read-only caller asking to write: 403 naming the table and the missing right.
    let sync = json!({"operation": "UPSERT", "source_table": "main.calibration.results",
                      "target_table": "dbo.Results", "primary_keys": ["id"]});
    let (status, body) = server.post("/sync", Some(READER), sync.clone()).await;
    assert_eq!(status, 403, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("reader") && detail.contains("dbo.Results") && detail.contains("write"),
        "{detail}"
    );
    // The writer may; a table it has no grant on is refused.
    let (status, body) = server.post("/sync", Some(WRITER), sync.clone()).await;
    assert_eq!(status, 202, "{body}");
    let mut other = sync.clone();
    other["target_table"] = json!("dbo.Sales");
    assert_eq!(server.post("/sync", Some(WRITER), other).await.0, 403);

    // Validation errors name the field.
    let (status, body) = server
        .post(
            "/runs",
            Some(READER),
            json!({"pipeline": "demo", "country": 7}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "country");
    // A missing or unknown field is named too, not reported as `body`.
    let (status, body) = server.post("/runs", Some(READER), json!({})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "pipeline", "{body}");
    let (status, body) = server
        .post("/runs", Some(READER), json!({"pipline": "demo"}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "pipline", "{body}");
    let (status, body) = server
        .post("/sync", Some(WRITER), json!({"operation": "INSERT"}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "source_table", "{body}");
    // Only the pipeline's own parameters may be set over the API, not config's output roots.
    let (status, body) = server
        .post(
            "/runs",
            Some(READER),
            json!({"pipeline": "demo", "params": {"volume_root": "/etc"}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "params.volume_root");
    assert!(
        body["detail"].as_str().unwrap().contains("start_date"),
        "{body}"
    );
    let (status, body) = server
        .post("/runs", Some(READER), json!({"pipeline": "nope"}))
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("demo"));

    let audit = audit_lines(&scratch);
    let syncs: Vec<&Value> = audit.iter().filter(|l| l["action"] == "sync").collect();
    assert_eq!(syncs.len(), 3, "{syncs:?}");
    assert_eq!(syncs[0]["result"], "refused");
    assert_eq!(syncs[0]["caller"], "reader");
    // Both sides of the sync: the lakehouse source and the SQL Server target.
    assert_eq!(
        syncs[0]["tables"],
        json!(["lakehouse table main.calibration.results", "dbo.Results"])
    );
    assert_eq!(syncs[1]["result"], "started");
    assert!(syncs[1]["event_id"].is_string());
    assert_eq!(syncs[2]["result"], "refused");
    assert!(
        !std::fs::read_to_string(scratch.path(".bridge/audit.log"))
            .unwrap()
            .contains(WRITER)
    );
}

/// `serve` refuses `flag 0` at once: exit 2, the flag named, never listening.
fn assert_zero_refused(flag: &str) {
    let scratch = project();
    let out = refused_serve(&scratch, &[flag, "0"]);
    let err = common::stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an invalid argument exits 2: {err}"
    );
    assert!(err.contains(flag) && err.contains("more than 0"), "{err}");
    assert!(common::stdout(&out).is_empty(), "it never listened");
}

#[test]
fn a_zero_poll_interval_is_refused() {
    assert_zero_refused("--poll-interval");
}

#[test]
fn a_zero_event_retention_is_refused() {
    assert_zero_refused("--event-retention-days");
}

/// `bridge serve` with `extra` arguments, which must exit on its own: one still serving after
/// 30 s is killed and fails the test (it accepted the arguments).
fn refused_serve(scratch: &Scratch, extra: &[&str]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bridge"))
        .arg("--root")
        .arg(scratch.root())
        .args(["serve", "--listen", "127.0.0.1:0", "--no-schedules"])
        .args(extra)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bridge serve starts");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "bridge serve {extra:?} was accepted: {}",
                common::stdout(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_zero_event_lease_is_refused() {
    let scratch = project();
    for lease in ["0", "0.0"] {
        let out = refused_serve(&scratch, &["--event-lease", lease]);
        assert!(!out.status.success(), "{lease}");
        let err = common::stderr(&out);
        assert!(
            err.contains("--event-lease") && err.contains("more than 0"),
            "{err}"
        );
        assert!(common::stdout(&out).is_empty(), "it never listened");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn run_job_reports_steps_and_survives_restart() {
    let scratch = project();
    let server = Server::start(&scratch, &["--no-schedules", "--server-lease", "2"]);
    let (status, body) = server
        .post(
            "/runs",
            Some(READER),
            json!({"pipeline": "demo", "country": "colombia"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let job = server.wait_finished(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let steps = job["summary"]["steps"].as_array().unwrap();
    assert!(
        steps
            .iter()
            .any(|s| s["kind"] == "sink" && s["rows"].as_u64().unwrap() > 0),
        "{job}"
    );
    assert!(steps.iter().all(|s| s["duration_ms"].is_u64()));
    assert_eq!(job["submitted_by"], "reader");
    let (_, list) = server
        .get("/jobs?status=succeeded&pipeline=demo", Some(READER))
        .await;
    assert_eq!(list["total"], 1, "{list}");
    let (status, body) = server.get("/jobs?status=sleeping", Some(READER)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "status");

    // A job running when the server dies is marked interrupted by the next one once the dead
    // server's lease has passed; history stays.
    let (_, slow) = server
        .post("/runs", Some(READER), json!({"pipeline": "slow"}))
        .await;
    let slow_id = slow["id"].as_str().unwrap().to_string();
    server
        .wait_job(&slow_id, |j| j["status"] == "running")
        .await;
    server.kill();
    let server = Server::start(&scratch, &["--no-schedules"]);
    let (_, job) = server.get(&format!("/jobs/{id}"), Some(READER)).await;
    assert_eq!(job["status"], "succeeded");
    assert_eq!(
        job["summary"]["steps"].as_array().unwrap().len(),
        steps.len()
    );
    let slow = server
        .wait_job(&slow_id, |j| j["status"] != "running")
        .await;
    assert_eq!(slow["status"], "interrupted", "{slow}");
    assert!(slow["error"].as_str().unwrap().contains("resubmit"));
    assert!(!scratch.path("output/slow/numbers/_SUCCESS").exists());
    assert!(server.terminate());
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_stops_the_job_and_commits_nothing() {
    let scratch = project();
    let server = Server::start(&scratch, &["--no-schedules"]);
    let (_, body) = server
        .post("/runs", Some(READER), json!({"pipeline": "slow"}))
        .await;
    let id = body["id"].as_str().unwrap().to_string();
    server.wait_job(&id, |j| j["status"] == "running").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = server.delete(&format!("/jobs/{id}"), Some(READER)).await;
    assert_eq!(status, 202, "{body}");
    let job = server.wait_finished(&id).await;
    assert_eq!(job["status"], "cancelled", "{job}");
    assert!(
        files_under(&scratch, "output/slow").is_empty(),
        "{:?}",
        files_under(&scratch, "output/slow")
    );
    // A finished job cannot be cancelled; an unknown one is 404.
    let (status, body) = server.delete(&format!("/jobs/{id}"), Some(READER)).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        server.delete("/jobs/no-such-job", Some(READER)).await.0,
        404
    );
    let audit = audit_lines(&scratch);
    let cancels: Vec<&Value> = audit.iter().filter(|l| l["action"] == "cancel").collect();
    assert_eq!(cancels.len(), 2);
    assert_eq!(cancels[0]["result"], "ok");
    assert_eq!(cancels[1]["result"], "refused");
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_submitter_or_a_writer_of_every_table_cancels() {
    let scratch = project();
    let text = std::fs::read_to_string(scratch.path("config/permissions.yaml")).unwrap();
    scratch.write(
        "config/permissions.yaml",
        &format!(
            "{text}  - name: nobody\n    token: nobody-token-123456\n    permissions: []\n  - name: ops\n    token: ops-token-123456\n    permissions:\n      - table: \"*\"\n        access: read_write\n"
        ),
    );
    let server = Server::start(&scratch, &["--no-schedules"]);
    let (_, body) = server
        .post("/runs", Some(READER), json!({"pipeline": "slow"}))
        .await;
    let id = body["id"].as_str().unwrap().to_string();
    server.wait_job(&id, |j| j["status"] == "running").await;
    // A caller without grants, and one with write access to a single table: 403, audited.
    for token in ["nobody-token-123456", WRITER] {
        let (status, body) = server.delete(&format!("/jobs/{id}"), Some(token)).await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["error"], "forbidden");
        assert!(
            body["detail"].as_str().unwrap().contains("may not cancel"),
            "{body}"
        );
    }
    let (_, job) = server.get(&format!("/jobs/{id}"), Some(READER)).await;
    assert_eq!(job["status"], "running", "the job goes on: {job}");
    let audit = audit_lines(&scratch);
    let cancels: Vec<&Value> = audit.iter().filter(|l| l["action"] == "cancel").collect();
    assert_eq!(cancels.len(), 2, "{cancels:?}");
    assert!(cancels.iter().all(|l| l["result"] == "refused"));
    assert_eq!(cancels[0]["caller"], "nobody");
    assert_eq!(cancels[1]["caller"], "writer");
    // A caller who may write every table may.
    let (status, body) = server
        .delete(&format!("/jobs/{id}"), Some("ops-token-123456"))
        .await;
    assert_eq!(status, 202, "{body}");
    let job = server.wait_finished(&id).await;
    assert_eq!(job["status"], "cancelled", "{job}");
    let last = last_audit(&scratch, |l| l["action"] == "cancel", "cancel line");
    assert_eq!(
        (last["caller"].as_str(), last["result"].as_str()),
        (Some("ops"), Some("ok"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_interrupts_running_jobs_cleanly() {
    let scratch = project();
    let server = Server::start(&scratch, &["--no-schedules", "--shutdown-grace", "0.5"]);
    let (_, body) = server
        .post("/runs", Some(READER), json!({"pipeline": "slow"}))
        .await;
    let id = body["id"].as_str().unwrap().to_string();
    server.wait_job(&id, |j| j["status"] == "running").await;
    assert!(server.terminate(), "serve exits 0 on SIGTERM");
    // The stopping server recorded the interruption itself (a restart alone would mark the job
    // interrupted too, with its own text).
    let ended = last_audit(
        &scratch,
        |l| l["job_id"] == id.as_str(),
        "the job's end is audited before the server exits",
    );
    assert_eq!(
        ended["error"],
        bridge::server::runner::SHUTDOWN_ERROR,
        "{ended}"
    );
    let server = Server::start(&scratch, &["--no-schedules"]);
    let (_, job) = server.get(&format!("/jobs/{id}"), Some(READER)).await;
    assert_eq!(job["status"], "interrupted", "{job}");
    assert_eq!(
        job["error"],
        bridge::server::runner::SHUTDOWN_ERROR,
        "{job}"
    );
    assert_ne!(job["error"], bridge::server::jobs::INTERRUPTED_ERROR);
    assert!(files_under(&scratch, "output/slow").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn queued_runs_do_not_start_once_a_shutdown_began_and_the_next_server_runs_them() {
    let scratch = project();
    // A run of a few seconds: long enough to be running at SIGTERM, short enough for the grace.
    let slow = std::fs::read_to_string(scratch.path("pipelines/slow.yaml")).unwrap();
    scratch.write(
        "pipelines/medium.yaml",
        &slow
            .replacen("name: slow", "name: medium", 1)
            .replace("x < 500000000", "x < 3000000")
            .replace("output/slow", "output/medium"),
    );
    let server = Server::start(
        &scratch,
        &[
            "--no-schedules",
            "--max-jobs",
            "1",
            "--shutdown-grace",
            "120",
        ],
    );
    let (_, body) = server
        .post("/runs", Some(READER), json!({"pipeline": "medium"}))
        .await;
    let running = body["id"].as_str().unwrap().to_string();
    server
        .wait_job(&running, |j| j["status"] == "running")
        .await;
    let (_, body) = server
        .post(
            "/runs",
            Some(READER),
            json!({"pipeline": "demo", "country": "colombia"}),
        )
        .await;
    let queued = body["id"].as_str().unwrap().to_string();
    let (_, job) = server.get(&format!("/jobs/{queued}"), Some(READER)).await;
    assert_eq!(job["status"], "queued", "{job}");
    let (_, job) = server.get(&format!("/jobs/{running}"), Some(READER)).await;
    assert_eq!(
        job["status"], "running",
        "the first job must outlast the SIGTERM: {job}"
    );
    assert!(server.terminate(), "serve exits 0 on SIGTERM");
    assert!(
        files_under(&scratch, "output/volume").is_empty(),
        "the queued run never started there"
    );

    // The run stays in the queue: the next server claims it and runs it, as its submitter.
    let stopped = chrono::Utc::now();
    let server = Server::start(&scratch, &["--no-schedules"]);
    let (_, job) = server.get(&format!("/jobs/{running}"), Some(READER)).await;
    assert_eq!(
        job["status"], "succeeded",
        "running jobs finish within the grace: {job}"
    );
    let job = server.wait_finished(&queued).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["submitted_by"], "reader", "{job}");
    let started: chrono::DateTime<chrono::Utc> =
        job["started_at"].as_str().unwrap().parse().unwrap();
    assert!(started > stopped, "started by the next server: {job}");
    assert!(!files_under(&scratch, "output/volume").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn watcher_swaps_valid_edits_and_keeps_the_old_set_on_broken_ones() {
    let scratch = project();
    let server = Server::start(&scratch, &["--no-schedules"]);
    let (status, ready) = server.get("/health/ready", None).await;
    assert_eq!(status, 200, "{ready}");
    let first_version = ready["version"].clone();

    // A valid new pipeline becomes runnable without a restart.
    let demo = std::fs::read_to_string(scratch.path("pipelines/demo.yaml")).unwrap();
    scratch.write(
        "pipelines/demo2.yaml",
        &demo.replacen("name: demo", "name: demo2", 1),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = server
            .post(
                "/runs",
                Some(READER),
                json!({"pipeline": "demo2", "country": "colombia"}),
            )
            .await;
        if status == 202 {
            let job = server.wait_finished(body["id"].as_str().unwrap()).await;
            assert_eq!(job["status"], "succeeded", "{job}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new pipeline never picked up: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, ready) = server.get("/health/ready", None).await;
    assert_ne!(ready["version"], first_version);

    // A broken edit: ready reports it with file:line; the previous set keeps running.
    scratch.write(
        "pipelines/demo2.yaml",
        "name: demo2\nsteps:\n  - id: x\n    sourc: {}\n",
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        let (status, ready) = server.get("/health/ready", None).await;
        if status == 503 {
            break ready;
        }
        assert!(Instant::now() < deadline, "broken edit never reported");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let config = ready["checks"]["config"].as_str().unwrap();
    assert!(config.contains("pipelines/demo2.yaml:4"), "{config}");
    let (status, body) = server
        .post(
            "/runs",
            Some(READER),
            json!({"pipeline": "demo2", "country": "colombia"}),
        )
        .await;
    assert_eq!(status, 202, "old version still serves: {body}");
    server.wait_finished(body["id"].as_str().unwrap()).await;

    // Fixing it makes the server ready again.
    std::fs::remove_file(scratch.path("pipelines/demo2.yaml")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.get("/health/ready", None).await.0 != 200 {
        assert!(Instant::now() < deadline, "fix never picked up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, _) = server
        .post("/runs", Some(READER), json!({"pipeline": "demo2"}))
        .await;
    assert_eq!(status, 404);
}

/// Posts a run until the server takes it (the watcher reloads in the background).
async fn run_when_served(server: &Server, pipeline: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = server
            .post(
                "/runs",
                Some(READER),
                json!({"pipeline": pipeline, "country": "colombia"}),
            )
            .await;
        if status == 202 {
            return server.wait_finished(body["id"].as_str().unwrap()).await;
        }
        assert!(
            Instant::now() < deadline,
            "pipeline `{pipeline}` never picked up: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn watcher_follows_a_deleted_and_recreated_pipelines_folder() {
    let scratch = project();
    let server = Server::start(&scratch, &["--no-schedules"]);
    let demo = std::fs::read_to_string(scratch.path("pipelines/demo.yaml")).unwrap();
    let slow = std::fs::read_to_string(scratch.path("pipelines/slow.yaml")).unwrap();
    // `rm -rf pipelines && cp -r ...`, as a checkout of another branch does.
    std::fs::remove_dir_all(scratch.path("pipelines")).unwrap();
    scratch.write("pipelines/demo.yaml", &demo);
    scratch.write("pipelines/slow.yaml", &slow);
    scratch.write(
        "pipelines/recreated.yaml",
        &demo.replacen("name: demo", "name: recreated", 1),
    );
    let job = run_when_served(&server, "recreated").await;
    assert_eq!(job["status"], "succeeded", "{job}");
    // The new folder is watched: a later edit inside it is picked up too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    scratch.write(
        "pipelines/edited.yaml",
        &demo.replacen("name: demo", "name: edited", 1),
    );
    let job = run_when_served(&server, "edited").await;
    assert_eq!(job["status"], "succeeded", "{job}");
    // And again after a second replacement.
    std::fs::remove_dir_all(scratch.path("pipelines")).unwrap();
    scratch.write("pipelines/demo.yaml", &demo);
    tokio::time::sleep(Duration::from_millis(500)).await;
    scratch.write(
        "pipelines/again.yaml",
        &demo.replacen("name: demo", "name: again", 1),
    );
    let job = run_when_served(&server, "again").await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let (status, _) = server
        .post("/runs", Some(READER), json!({"pipeline": "edited"}))
        .await;
    assert_eq!(status, 404, "the removed folder's pipelines are gone");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_permissions_file_outside_config_reloads() {
    let scratch = project();
    let elsewhere = tempfile::tempdir().unwrap();
    let file = elsewhere.path().join("permissions.yaml");
    let text = std::fs::read_to_string(scratch.path("config/permissions.yaml")).unwrap();
    std::fs::write(&file, &text).unwrap();
    let server = Server::start(
        &scratch,
        &["--no-schedules", "--permissions", file.to_str().unwrap()],
    );
    assert_eq!(server.get("/jobs", Some(READER)).await.0, 200);
    assert_eq!(server.get("/jobs", Some("late-token-abcdef")).await.0, 401);
    // Written the way editors do: a temporary file renamed over the old one.
    let tmp = elsewhere.path().join("permissions.yaml.new");
    std::fs::write(
        &tmp,
        format!("{text}  - name: late\n    token: late-token-abcdef\n    permissions: []\n"),
    )
    .unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.get("/jobs", Some("late-token-abcdef")).await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "edit of {} never picked up",
            file.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Editing the copy under config/ changes nothing: the file in use is the other one.
    scratch.write("config/permissions.yaml", "users: []\n");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(server.get("/jobs", Some(READER)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn permissions_reload_and_broken_file_keeps_the_last_good_set() {
    let scratch = project();
    let server = Server::start(&scratch, &["--no-schedules"]);
    assert_eq!(server.get("/jobs", Some("late-token-abcdef")).await.0, 401);
    let text = std::fs::read_to_string(scratch.path("config/permissions.yaml")).unwrap();
    scratch.write(
        "config/permissions.yaml",
        &format!("{text}  - name: late\n    token: late-token-abcdef\n    permissions: []\n"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.get("/jobs", Some("late-token-abcdef")).await.0 != 200 {
        assert!(Instant::now() < deadline, "new user never picked up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    scratch.write("config/permissions.yaml", "users:\n  - name: broken\n");
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        let (status, ready) = server.get("/health/ready", None).await;
        if status == 503 {
            break ready;
        }
        assert!(
            Instant::now() < deadline,
            "broken permissions never reported"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        ready["checks"]["permissions"]
            .as_str()
            .unwrap()
            .contains("permissions.yaml"),
        "{ready}"
    );
    assert_eq!(server.get("/jobs", Some("late-token-abcdef")).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn schedules_run_while_serving() {
    let scratch = project();
    let demo = std::fs::read_to_string(scratch.path("pipelines/demo.yaml")).unwrap();
    let every_second = demo
        .replacen("name: demo", "name: ticking", 1)
        .replace("schedule: \"0 6 * * *\"", "schedule: \"* * * * * *\"")
        .replace("countries: [colombia, mexico]", "countries: [colombia]");
    assert!(every_second.contains("* * * * * *"));
    scratch.write("pipelines/ticking.yaml", &every_second);
    let server = Server::start(&scratch, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, list) = server
            .get("/jobs?pipeline=ticking&status=succeeded", Some(READER))
            .await;
        if list["total"].as_u64().unwrap_or(0) >= 1 {
            let job = &list["items"][0];
            assert_eq!(job["kind"], "schedule");
            assert_eq!(job["country"], "colombia");
            break;
        }
        assert!(Instant::now() < deadline, "no scheduled run: {list}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn health_metrics_and_openapi() {
    let scratch = project();
    let server = Server::start(&scratch, &["--no-schedules"]);
    assert_eq!(server.get("/health/live", None).await.0, 200);
    let (status, ready) = server.get("/health/ready", None).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["checks"]["sqlserver"], "not configured");
    let (_, body) = server
        .post(
            "/runs",
            Some(READER),
            json!({"pipeline": "demo", "country": "colombia"}),
        )
        .await;
    server.wait_finished(body["id"].as_str().unwrap()).await;
    let (status, metrics) = server.get("/metrics", None).await;
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(
        metrics.contains("bridge_jobs{status=\"succeeded\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("bridge_rows_moved_total{pipeline=\"demo\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("bridge_event_lag_seconds"), "{metrics}");
    let (status, doc) = server.get("/openapi.json", None).await;
    assert_eq!(status, 200);
    for path in [
        "/runs",
        "/extract",
        "/jobs",
        "/jobs/{id}",
        "/sync",
        "/events/{id}",
        "/health/ready",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"]["RunRequest"].is_object());
}

#[tokio::test(flavor = "multi_thread")]
async fn extract_with_the_original_request_body() {
    let scratch = project();
    let server = Server::start(&scratch, &["--no-schedules"]);
    let body = json!({"queries_path": "queries", "config_path": "config", "country": "Colombia",
                      "destination": "output/extract", "queries": ["sales"]});
    let (status, accepted) = server.post("/extract", Some(READER), body).await;
    assert_eq!(status, 202, "{accepted}");
    let job = server.wait_finished(accepted["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["kind"], "extract");
    let files = files_under(&scratch, "output/extract/colombia");
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("sales/") && f.ends_with(".parquet")),
        "{files:?}"
    );
    assert!(
        !files.iter().any(|f| f.starts_with("products/")),
        "only the asked query: {files:?}"
    );

    // Paths must stay in the project; unknown queries and countries are named.
    for (body, field) in [
        (
            json!({"country": "colombia", "destination": "output/x", "queries_path": "../../etc"}),
            "queries_path",
        ),
        (
            json!({"country": "colombia", "destination": "/etc/x"}),
            "destination",
        ),
        (
            json!({"country": "colombia", "destination": "output/x", "queries": ["nope"]}),
            "queries",
        ),
    ] {
        let (status, answer) = server.post("/extract", Some(READER), body).await;
        assert_eq!(
            (status, answer["field"].as_str()),
            (400, Some(field)),
            "{answer}"
        );
    }
    let (status, body) = server
        .post(
            "/runs",
            Some(READER),
            json!({"pipeline": "demo", "country": "atlantis"}),
        )
        .await;
    // Not one of the pipeline's `countries:`: the request field is named, with the choices.
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("country")),
        "{body}"
    );
    assert!(
        body["detail"].as_str().unwrap().contains("colombia"),
        "lists the pipeline's countries: {body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_servers_on_one_root_keep_each_others_jobs() {
    let scratch = project();
    let args = ["--no-schedules", "--server-lease", "2"];
    let first = Server::start(&scratch, &args);
    let (_, body) = first
        .post("/runs", Some(READER), json!({"pipeline": "slow"}))
        .await;
    let id = body["id"].as_str().unwrap().to_string();
    first.wait_job(&id, |j| j["status"] == "running").await;

    // A second server on the same root while the first is alive: the first's job goes on,
    // through several of the first's heartbeats and the second's looks for dead servers.
    let second = Server::start(&scratch, &args);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, job) = second.get(&format!("/jobs/{id}"), Some(READER)).await;
    assert_eq!(job["status"], "running", "a live server's job: {job}");
    let owner = job["owner"]
        .as_str()
        .expect("jobs carry their owner")
        .to_string();
    assert!(uuid::Uuid::parse_str(&owner).is_ok(), "{owner}");
    assert_ne!(owner, first.child.id().to_string());
    let versions = || files_under_dirs(&scratch.path(".bridge/versions"));
    assert!(versions().contains(&owner), "{:?}", versions());
    let (_, body) = second
        .post(
            "/runs",
            Some(READER),
            json!({"pipeline": "demo", "country": "colombia"}),
        )
        .await;
    let theirs = second.wait_finished(body["id"].as_str().unwrap()).await;
    assert_eq!(theirs["status"], "succeeded", "{theirs}");
    // Runs are items of the shared queue: whichever server claimed it ran it.
    assert!(theirs["owner"].as_str().is_some(), "{theirs}");
    assert_eq!(versions().len(), 2, "{:?}", versions());

    // The second stops cleanly: its copies go, the first's job is still untouched.
    assert!(second.terminate());
    assert_eq!(versions(), std::slice::from_ref(&owner));
    let (_, job) = first.get(&format!("/jobs/{id}"), Some(READER)).await;
    assert_eq!(job["status"], "running", "{job}");

    // The first dies without a word; once its lease has passed, the next server marks its job
    // interrupted as it starts, and removes its copies.
    first.kill();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let third = Server::start(&scratch, &args);
    let (_, job) = third.get(&format!("/jobs/{id}"), Some(READER)).await;
    assert_eq!(job["status"], "interrupted", "{job}");
    assert_eq!(job["error"], bridge::server::jobs::INTERRUPTED_ERROR);
    assert!(!versions().contains(&owner), "{:?}", versions());
    assert_eq!(versions().len(), 1, "{:?}", versions());
    // Nothing of the interrupted run was published (its staging waits for the next run there).
    let published: Vec<String> = files_under(&scratch, "output/slow")
        .into_iter()
        .filter(|f| !f.starts_with(".bridge-staging/"))
        .collect();
    assert!(published.is_empty(), "{published:?}");
    assert!(third.terminate());
    assert!(versions().is_empty(), "{:?}", versions());
}

/// The names of the folders directly under `dir`, sorted.
fn files_under_dirs(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schedule_runs_every_country_of_the_pipeline() {
    let scratch = project();
    let demo = std::fs::read_to_string(scratch.path("pipelines/demo.yaml")).unwrap();
    let every_second = demo
        .replacen("name: demo", "name: ticking", 1)
        .replace("schedule: \"0 6 * * *\"", "schedule: \"* * * * * *\"");
    assert!(every_second.contains("countries: [colombia, mexico]"));
    scratch.write("pipelines/ticking.yaml", &every_second);
    // One job at a time: both countries' runs share the demo's SQLite source.
    let server = Server::start(&scratch, &["--max-jobs", "1"]);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (_, list) = server
            .get(
                "/jobs?pipeline=ticking&status=succeeded&limit=500",
                Some(READER),
            )
            .await;
        let countries: std::collections::BTreeSet<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["kind"] == "schedule")
            .filter_map(|j| j["country"].as_str())
            .collect();
        if countries.len() == 2 {
            assert_eq!(countries, ["colombia", "mexico"].into());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every country ran on schedule: {countries:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_refused_requests_gives_a_bounded_audit_log() {
    let scratch = project();
    let server = Server::start(&scratch, &["--no-schedules"]);
    let requests = 300usize;
    let long = "x".repeat(4000);
    let started = Instant::now();
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..requests {
        let (client, url) = (
            server.client.clone(),
            format!("{}/jobs/{long}{i}", server.base),
        );
        burst.spawn(async move {
            let request = client.get(url);
            let request = if i % 2 == 0 {
                request.bearer_auth(format!("stolen-token-{i}"))
            } else {
                request
            };
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (i, status, body)
        });
    }
    while let Some(done) = burst.join_next().await {
        let (i, status, body) = done.unwrap();
        // The answer is the same whether the line was written or not.
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"], "unauthorized");
        let refusal = if i % 2 == 0 {
            "unknown token"
        } else {
            "no bearer token"
        };
        assert_eq!(
            body["detail"],
            format!(
                "{refusal}: send `Authorization: Bearer <token>` with a token from the permissions file"
            )
        );
    }
    let took = started.elapsed().as_secs_f64();
    // The summary of the suppressed ones is written within a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let raw = std::fs::read_to_string(scratch.path(".bridge/audit.log")).unwrap();
    assert!(!raw.contains("stolen-token"));
    let longest = raw.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 1024, "an audit line of {longest} bytes");
    let lines: Vec<Value> = audit_lines(&scratch)
        .into_iter()
        .filter(|l| l["action"] == "auth")
        .collect();
    let (summaries, single): (Vec<&Value>, Vec<&Value>) = lines
        .iter()
        .partition(|l| l["request_id"] == bridge::server::refusals::SUMMARY_REQUEST_ID);
    let suppressed: usize = summaries
        .iter()
        .map(|l| {
            let text = l["error"].as_str().unwrap();
            let (n, rest) = text.split_once(' ').unwrap();
            assert!(
                rest.starts_with("more refused requests suppressed"),
                "{text}"
            );
            n.parse::<usize>().unwrap()
        })
        .sum();
    assert_eq!(
        single.len() + suppressed,
        requests,
        "every refusal is a line or counted in a summary"
    );
    let allowed = 10.0 + 10.0 * (took + 1.5) + 1.0;
    assert!(
        (single.len() as f64) <= allowed,
        "{} lines in {took:.1} s",
        single.len()
    );
    assert!(!summaries.is_empty());
    for line in &single {
        let error = line["error"].as_str().unwrap();
        assert!(error.contains(" for GET /jobs/xxx"), "{error}");
        assert!(error.ends_with("more bytes)"), "{error}");
    }
    eprintln!(
        "{requests} refused requests in {took:.2} s: {} lines, {} summaries",
        single.len(),
        summaries.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn callers_see_only_their_own_jobs_and_events_or_those_of_tables_they_read() {
    let scratch = project();
    let text = std::fs::read_to_string(scratch.path("config/permissions.yaml")).unwrap();
    scratch.write(
        "config/permissions.yaml",
        &format!(
            "{text}  - name: alice\n    token: alice-token-123456\n    permissions:\n      - table: dbo.Results\n        access: read\n  - name: bob\n    token: bob-token-123456\n    permissions:\n      - lakehouse_table: colombia.*\n        access: read_write\n"
        ),
    );
    let (alice, bob) = ("alice-token-123456", "bob-token-123456");
    // Reads dbo.Results on SQL Server, which is not configured: the job fails, but it is stored
    // with the table it touches.
    scratch.write(
        "pipelines/from_results.yaml",
        r#"name: from_results
steps:
  - id: results
    source:
      type: sqlserver
      sql: "SELECT r.id FROM dbo.Results AS r"
  - id: out
    sink: {type: volume, from: results, destination: output/results, path: results}
"#,
    );
    let server = Server::start(&scratch, &["--no-schedules"]);
    let (status, body) = server
        .post(
            "/runs",
            Some(bob),
            json!({"pipeline": "demo", "country": "colombia"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let bobs = body["id"].as_str().unwrap().to_string();
    let (status, body) = server
        .post("/runs", Some(WRITER), json!({"pipeline": "from_results"}))
        .await;
    assert_eq!(status, 202, "{body}");
    let writers = body["id"].as_str().unwrap().to_string();
    server.wait_finished(&bobs).await;
    let job = server.wait_finished(&writers).await;
    assert_eq!(job["tables"], json!(["dbo.Results"]), "{job}");

    let listed = |token: &'static str| {
        let server = &server;
        async move {
            let (status, list) = server.get("/jobs", Some(token)).await;
            assert_eq!(status, 200, "{list}");
            let ids: Vec<String> = list["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_str().unwrap().to_string())
                .collect();
            (list["total"].as_u64().unwrap(), ids)
        }
    };
    // Its own job only (bob reads nothing); the job on dbo.Results for alice, who reads it,
    // and for writer, who submitted it; everything for the `*` reader.
    assert_eq!(listed(bob).await, (1, vec![bobs.clone()]));
    assert_eq!(listed(alice).await, (1, vec![writers.clone()]));
    assert_eq!(listed(WRITER).await, (1, vec![writers.clone()]));
    assert_eq!(
        listed(READER).await,
        (2, vec![writers.clone(), bobs.clone()])
    );
    let (_, page) = server.get("/jobs?limit=1", Some(bob)).await;
    assert_eq!(
        (page["total"].clone(), page["next_offset"].clone()),
        (json!(1), Value::Null)
    );
    let (_, page) = server.get("/jobs?limit=1", Some(READER)).await;
    assert_eq!(page["next_offset"], 1, "{page}");

    // Another caller's job is 404, word for word as an unknown one.
    let (status, body) = server.get(&format!("/jobs/{writers}"), Some(bob)).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["detail"], format!("no job `{writers}`"));
    let (status, unknown) = server.get("/jobs/no-such-job", Some(bob)).await;
    assert_eq!(
        (status, unknown["error"].clone()),
        (404, body["error"].clone())
    );
    assert_eq!(
        server.get(&format!("/jobs/{bobs}"), Some(alice)).await.0,
        404
    );
    assert_eq!(server.get(&format!("/jobs/{bobs}"), Some(bob)).await.0, 200);
    assert_eq!(
        server.get(&format!("/jobs/{writers}"), Some(alice)).await.0,
        200
    );

    // Events: seen by their creator and by readers of their target table.
    let (status, body) = server
        .post(
            "/sync",
            Some(WRITER),
            json!({"operation": "INSERT", "source_table": "main.calibration.results",
                   "target_table": "dbo.Results"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let event = body["href"].as_str().unwrap().to_string();
    for (token, expected) in [(WRITER, 200), (alice, 200), (READER, 200), (bob, 404)] {
        let (status, body) = server.get(&event, Some(token)).await;
        assert_eq!(status, expected, "{token}: {body}");
    }
    let (_, body) = server.get(&event, Some(bob)).await;
    assert!(
        body["detail"].as_str().unwrap().starts_with("no event `"),
        "{body}"
    );
}

// ---------------------------------------------------------------------------------------------
// Sync events through the server: SQL Server played by the TDS test server, sources and the
// events table are real Delta tables.

mod events {
    use super::*;
    use deltalake::DeltaTable;
    use deltalake::arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    use tds_test_server::{TdsServer, TdsServerConfig};

    const TARGET: &str = "CREATE TABLE dbo.Results (id BIGINT NOT NULL PRIMARY KEY, name NVARCHAR(50) NULL, amount FLOAT NULL)";

    /// A TDS test server with an empty dbo.Results, and the environment that points bridge at it.
    pub async fn sqlserver() -> (TdsServer, Vec<(&'static str, String)>) {
        let server = TdsServer::start(TdsServerConfig::default())
            .await
            .expect("test server starts");
        let settings = common::tds_settings(server.addr().port());
        let mut client = bridge::mssql::connect(&settings).await.unwrap();
        client
            .simple_query(TARGET)
            .await
            .unwrap()
            .into_results()
            .await
            .unwrap();
        let env = vec![
            ("SQLSERVER_HOST", "127.0.0.1".to_string()),
            ("SQLSERVER_PORT", server.addr().port().to_string()),
            ("SQLSERVER_USERNAME", "sa".to_string()),
            (
                "SQLSERVER_PASSWORD",
                "unused-by-the-test-server".to_string(),
            ),
            ("SQLSERVER_ENCRYPT", "danger_plaintext".to_string()),
        ];
        (server, env)
    }

    pub fn count(server: &TdsServer, sql: &str) -> i64 {
        server.query_sqlite(sql).unwrap()[0][0]
            .as_deref()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Writes a Delta table of `(id, name, amount)` rows for ids in `ids`.
    pub async fn delta_source(path: &std::path::Path, ids: std::ops::Range<i64>) {
        std::fs::create_dir_all(path).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("amount", DataType::Float64, true),
        ]));
        let url = deltalake::ensure_table_uri(path.display().to_string()).unwrap();
        let mut table = DeltaTable::try_from_url(url).await.unwrap();
        let ids: Vec<i64> = ids.collect();
        for chunk in ids.chunks(50_000) {
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from_iter_values(chunk.iter().copied())),
                Arc::new(StringArray::from_iter_values(
                    chunk.iter().map(|i| format!("row {i}")),
                )),
                Arc::new(Float64Array::from_iter_values(
                    chunk.iter().map(|i| *i as f64 / 4.0),
                )),
            ];
            let batch = RecordBatch::try_new(Arc::clone(&schema), columns).unwrap();
            table = table.write(vec![batch]).await.unwrap();
        }
    }

    fn insert(source: &str) -> Value {
        json!({"operation": "INSERT", "source_table": source, "target_table": "dbo.Results"})
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn event_applied_exactly_once_across_a_kill_and_restart() {
        let scratch = project();
        let (sql, env) = sqlserver().await;
        let rows = 60_000;
        delta_source(&scratch.path("output/delta/main/calibration/big"), 0..rows).await;
        let server = Server::start_env(&scratch, &["--no-schedules"], &env);
        let (status, body) = server
            .post("/sync", Some(WRITER), insert("main.calibration.big"))
            .await;
        assert_eq!(status, 202, "{body}");
        let id = body["id"].as_str().unwrap().to_string();
        // Kill the server as soon as the event is claimed: mid-apply.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, event) = server.get(&format!("/events/{id}"), Some(READER)).await;
            if event["status"] != "pending" {
                break;
            }
            assert!(Instant::now() < deadline, "event never claimed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.kill();
        let applied_before_restart = count(&sql, "SELECT COUNT(*) FROM Results");
        assert!(
            applied_before_restart == 0 || applied_before_restart == rows,
            "a half-applied sync: {applied_before_restart}"
        );

        let server = Server::start_env(&scratch, &["--no-schedules", "--event-lease", "1"], &env);
        let event = server.wait_event(&id).await;
        assert_eq!(event["status"], "completed", "{event}");
        assert_eq!(event["rows_affected"], rows, "{event}");
        assert_eq!(count(&sql, "SELECT COUNT(*) FROM Results"), rows);
        assert_eq!(count(&sql, "SELECT COUNT(*) FROM bridge_applied_keys"), 1);
        let audit = audit_lines(&scratch);
        let done: Vec<&Value> = audit
            .iter()
            .filter(|l| l["action"] == "event" && l["event_id"] == id.as_str())
            .collect();
        assert_eq!(done.last().unwrap()["result"], "ok", "{done:?}");
        assert_eq!(done.last().unwrap()["rows"], rows);
        assert_eq!(done.last().unwrap()["caller"], "writer");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn two_servers_on_one_events_table_apply_each_event_once() {
        let (sql, env) = sqlserver().await;
        let events_dir = tempfile::tempdir().unwrap();
        let events_table = events_dir.path().join("bridge_events");
        let events_arg = events_table.display().to_string();
        let a = project();
        let b = project();
        let sources = 8;
        for i in 0..sources {
            for scratch in [&a, &b] {
                delta_source(
                    &scratch.path(&format!("output/delta/main/calibration/part{i}")),
                    i * 100..i * 100 + 100,
                )
                .await;
            }
        }
        let args = ["--no-schedules", "--events-table", events_arg.as_str()];
        let server_a = Server::start_env(&a, &args, &env);
        let server_b = Server::start_env(&b, &args, &env);
        let mut ids = Vec::new();
        for i in 0..sources {
            let server = if i % 2 == 0 { &server_a } else { &server_b };
            let (status, body) = server
                .post(
                    "/sync",
                    Some(WRITER),
                    insert(&format!("main.calibration.part{i}")),
                )
                .await;
            assert_eq!(status, 202, "{body}");
            ids.push(body["id"].as_str().unwrap().to_string());
        }
        let mut claimers = std::collections::BTreeSet::new();
        for id in &ids {
            let event = server_a.wait_event(id).await;
            assert_eq!(event["status"], "completed", "{event}");
            assert_eq!(event["rows_affected"], 100);
            claimers.insert(event["claimed_by"].as_str().unwrap().to_string());
        }
        assert_eq!(count(&sql, "SELECT COUNT(*) FROM Results"), sources * 100);
        assert_eq!(
            count(&sql, "SELECT COUNT(DISTINCT id) FROM Results"),
            sources * 100
        );
        assert_eq!(
            count(&sql, "SELECT COUNT(*) FROM bridge_applied_keys"),
            sources
        );
        eprintln!(
            "events claimed by {} server(s): {claimers:?}",
            claimers.len()
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn nothing_runs_without_its_audit_line() {
        let scratch = project();
        // Every write to /dev/full fails (ENOSPC): no audit line can be written.
        let server = Server::start(&scratch, &["--no-schedules", "--audit-log", "/dev/full"]);
        let (status, body) = server
            .post("/sync", Some(WRITER), insert("main.calibration.results"))
            .await;
        assert_eq!(status, 500, "{body}");
        let store = bridge::sync::SqliteEvents::open(scratch.path(".bridge/events.db")).unwrap();
        use bridge::sync::EventStore;
        assert!(
            store.list(None, 10).await.unwrap().is_empty(),
            "an event the audit log does not show was stored"
        );

        let (status, body) = server
            .post(
                "/runs",
                Some(READER),
                json!({"pipeline": "demo", "country": "colombia"}),
            )
            .await;
        assert_eq!(status, 500, "{body}");
        let (_, list) = server.get("/jobs", Some(READER)).await;
        assert_eq!(list["total"], 1, "{list}");
        let job = &list["items"][0];
        assert_eq!(job["status"], "failed", "{job}");
        assert_eq!(job["error"], bridge::server::api::UNAUDITED, "{job}");
        assert!(job["started_at"].is_null(), "{job}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(files_under(&scratch, "output/volume").is_empty());
    }

    /// A pipeline writing `data/results.csv` into dbo.Results with the given sink mode.
    fn results_pipeline(name: &str, mode: &str) -> String {
        format!(
            r#"name: {name}
steps:
  - id: src
    source: {{type: csv, path: data/results.csv}}
  - id: rows
    transform:
      sql: "SELECT COALESCE(CAST(id AS BIGINT), 0) AS id, name, CAST(amount AS DOUBLE) AS amount FROM src"
  - id: out
    sink:
      type: sqlserver
      from: rows
      table: dbo.Results
      mode: {mode}
"#
        )
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn runs_need_the_rights_on_the_sqlserver_tables_they_touch() {
        let scratch = project();
        let (sql, env) = sqlserver().await;
        scratch.write(
            "data/results.csv",
            "id,name,amount\n1,one,1.5\n2,two,2.5\n3,three,3.5\n4,four,4.5\n5,five,5.5\n",
        );
        scratch.write(
            "pipelines/to_results.yaml",
            &results_pipeline("to_results", "insert"),
        );
        scratch.write(
            "pipelines/replace_results.yaml",
            &results_pipeline("replace_results", "replace"),
        );
        scratch.write(
            "pipelines/from_sales.yaml",
            r#"name: from_sales
steps:
  - id: sales
    source:
      type: sqlserver
      sql: "SELECT s.id, s.amount FROM dbo.Sales AS s"
  - id: out
    sink: {type: volume, from: sales, destination: output/sales, path: sales}
"#,
        );
        let server = Server::start_env(&scratch, &["--no-schedules"], &env);

        // The writer may insert into dbo.Results (no rows deleted): 5 rows.
        let (status, body) = server
            .post("/runs", Some(WRITER), json!({"pipeline": "to_results"}))
            .await;
        assert_eq!(status, 202, "{body}");
        let job = server.wait_finished(body["id"].as_str().unwrap()).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(count(&sql, "SELECT COUNT(*) FROM Results"), 5);

        // A read-only caller may not run a pipeline writing the table: 403 naming the table and
        // the missing right, refused in the audit log, no job, nothing written.
        let (status, body) = server
            .post("/runs", Some(READER), json!({"pipeline": "to_results"}))
            .await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["error"], "forbidden");
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.contains("reader") && detail.contains("dbo.Results") && detail.contains("write"),
            "{detail}"
        );
        let refused = last_audit(
            &scratch,
            |l| l["action"] == "run" && l["caller"] == "reader",
            "an audit line for the refused run",
        );
        assert_eq!(refused["result"], "refused", "{refused}");
        assert_eq!(refused["tables"], json!(["dbo.Results"]), "{refused}");
        assert_eq!(refused["pipeline"], "to_results");
        assert!(refused["job_id"].is_null(), "{refused}");
        let (_, list) = server.get("/jobs?pipeline=to_results", Some(READER)).await;
        assert_eq!(list["total"], 1, "no job for the refused run: {list}");
        assert_eq!(count(&sql, "SELECT COUNT(*) FROM Results"), 5);

        // Replacing the table deletes its 5 rows, over the writer's max_delete_rows of 2: the
        // job fails and the table is as it was.
        let (status, body) = server
            .post(
                "/runs",
                Some(WRITER),
                json!({"pipeline": "replace_results"}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        let replace_id = body["id"].as_str().unwrap().to_string();
        let job = server.wait_finished(&replace_id).await;
        assert_eq!(job["status"], "failed", "{job}");
        let error = job["error"].as_str().unwrap();
        assert!(
            error.contains("would delete 5 rows") && error.contains("max_delete_rows 2"),
            "{error}"
        );
        assert_eq!(count(&sql, "SELECT COUNT(*) FROM Results"), 5);
        assert_eq!(
            count(
                &sql,
                "SELECT CAST(SUM(amount * 10) AS INTEGER) FROM Results"
            ),
            175
        );
        let ended = last_audit(
            &scratch,
            |l| l["job_id"] == replace_id.as_str(),
            "an audit line for the replace job",
        );
        assert!(
            ended["error"].as_str().unwrap().contains("max_delete_rows"),
            "{ended}"
        );
        assert_eq!(ended["result"], "refused", "{ended}");

        // Reading a table the caller has no grant on: 403 naming it and `read`.
        let (status, body) = server
            .post("/runs", Some(WRITER), json!({"pipeline": "from_sales"}))
            .await;
        assert_eq!(status, 403, "{body}");
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.contains("writer") && detail.contains("dbo.Sales") && detail.contains("read"),
            "{detail}"
        );
        let refused = last_audit(
            &scratch,
            |l| l["action"] == "run" && l["pipeline"] == "from_sales",
            "an audit line for the refused read",
        );
        assert_eq!(refused["result"], "refused");
        assert_eq!(refused["tables"], json!(["dbo.Sales"]), "{refused}");
        assert!(files_under(&scratch, "output/sales").is_empty());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn delete_over_the_callers_limit_changes_nothing_and_is_audited() {
        let scratch = project();
        let (sql, env) = sqlserver().await;
        delta_source(&scratch.path("output/delta/main/calibration/seed"), 0..5).await;
        delta_source(&scratch.path("output/delta/main/calibration/gone"), 0..3).await;
        let server = Server::start_env(&scratch, &["--no-schedules"], &env);
        let (_, body) = server
            .post("/sync", Some(WRITER), insert("main.calibration.seed"))
            .await;
        let seeded = server.wait_event(body["id"].as_str().unwrap()).await;
        assert_eq!(seeded["status"], "completed", "{seeded}");
        // writer may delete at most 2 rows of dbo.Results; this deletes 3.
        let delete = json!({"operation": "DELETE", "source_table": "main.calibration.gone",
                            "target_table": "dbo.Results", "primary_keys": ["id"]});
        let (status, body) = server.post("/sync", Some(WRITER), delete).await;
        assert_eq!(status, 202, "{body}");
        let id = body["id"].as_str().unwrap().to_string();
        let event = server.wait_event(&id).await;
        assert_eq!(event["status"], "failed", "{event}");
        let error = event["error_message"].as_str().unwrap();
        assert!(error.contains("max_delete_rows 2"), "{error}");
        assert_eq!(count(&sql, "SELECT COUNT(*) FROM Results"), 5);
        let line = last_audit(
            &scratch,
            |l| l["event_id"] == id.as_str() && l["action"] == "event",
            "audit line of the event",
        );
        assert_eq!(
            line["result"], "refused",
            "a delete over the limit is a refusal"
        );
        assert!(line["error"].as_str().unwrap().contains("max_delete_rows"));

        // An event written straight into the events table by someone who is not in the
        // permissions file is refused, unapplied.
        let store = bridge::sync::SqliteEvents::open(scratch.path(".bridge/events.db")).unwrap();
        use bridge::sync::EventStore;
        let stranger = store
            .submit(bridge::sync::NewEvent {
                operation: bridge::sync::Operation::Delete,
                source_table: "main.calibration.gone".into(),
                target_table: "dbo.Results".into(),
                primary_keys: vec!["id".into()],
                filter: None,
                created_by: Some("mallory".into()),
                pipeline: None,
                country: None,
                params: None,
            })
            .await
            .unwrap();
        let event = server.wait_event(&stranger.event_id).await;
        assert_eq!(event["status"], "failed", "{event}");
        assert!(
            event["error_message"]
                .as_str()
                .unwrap()
                .contains("`mallory` is not a user"),
            "{event}"
        );
        assert_eq!(count(&sql, "SELECT COUNT(*) FROM Results"), 5);
        // Each ended event has exactly one audit line: a refusal is not also a failure. (A
        // second line would follow the recorded outcome: give it the time to show.)
        tokio::time::sleep(Duration::from_millis(500)).await;
        let audit = audit_lines(&scratch);
        let lines_of = |id: &str| -> Vec<Value> {
            audit
                .iter()
                .filter(|l| l["event_id"] == id && l["action"] == "event")
                .cloned()
                .collect()
        };
        for (id, error) in [
            (id.as_str(), "max_delete_rows"),
            (stranger.event_id.as_str(), "`mallory` is not a user"),
        ] {
            let lines = lines_of(id);
            assert_eq!(lines.len(), 1, "{lines:?}");
            assert_eq!(lines[0]["result"], "refused", "{lines:?}");
            assert!(
                lines[0]["error"].as_str().unwrap().contains(error),
                "{lines:?}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn readiness_and_metrics_probe_sql_server_at_most_every_few_seconds() {
        let scratch = project();
        let (sql, env) = sqlserver().await;
        let server = Server::start_env(&scratch, &["--no-schedules"], &env);
        let (status, ready) = server.get("/health/ready", None).await;
        assert_eq!(status, 200, "{ready}");
        assert!(
            ready["checks"]["sqlserver"]
                .as_str()
                .unwrap()
                .starts_with("ok"),
            "{ready}"
        );
        let before = sql.connections();
        let started = Instant::now();
        let mut burst = tokio::task::JoinSet::new();
        for i in 0..40 {
            let (client, url) = (
                server.client.clone(),
                format!(
                    "{}{}",
                    server.base,
                    if i % 2 == 0 {
                        "/health/ready"
                    } else {
                        "/metrics"
                    }
                ),
            );
            burst.spawn(async move { client.get(url).send().await.unwrap().status().as_u16() });
        }
        while let Some(status) = burst.join_next().await {
            assert_eq!(status.unwrap(), 200);
        }
        for _ in 0..20 {
            assert_eq!(server.get("/health/ready", None).await.0, 200);
        }
        let took = started.elapsed();
        let logins = sql.connections() - before;
        let ttl = bridge::server::probes::PROBE_TTL.as_secs_f64();
        let allowed = (took.as_secs_f64() / ttl).ceil() as u64 + 1;
        assert!(
            logins <= allowed,
            "{logins} SQL Server logins for 60 probes in {took:?}"
        );
        eprintln!("60 probes in {took:?}: {logins} SQL Server logins");
        // Once the answer is older than the TTL, the next call probes again.
        tokio::time::sleep(bridge::server::probes::PROBE_TTL + Duration::from_millis(200)).await;
        let before = sql.connections();
        assert_eq!(server.get("/health/ready", None).await.0, 200);
        assert_eq!(sql.connections() - before, 1);
    }
}

// ---------------------------------------------------------------------------------------------
// The security boundary: request strings stay data, names are canonical, every table and
// location a job touches is authorised from its plan.

mod security {
    use super::events::{delta_source, sqlserver};
    use super::*;

    const NOBODY: &str = "nobody-token-000000000000";
    const OPS: &str = "ops-token-1111111111111111";
    const SCRATCH_WRITER: &str = "scratch-token-22222222222";
    const SECRET: &str = "s3cr3t-value-that-must-never-show";

    /// The scratch project with three more users: `nobody` (no grants), `ops` (every SQL
    /// Server table but `dbo.Audit` read-only, and every lakehouse table) and `scratch` (may
    /// write `dbo.Scratch` only).
    fn secure_project() -> Scratch {
        let scratch = project();
        let mut permissions =
            std::fs::read_to_string(scratch.path("config/permissions.yaml")).unwrap();
        permissions.push_str(&format!(
            r#"  - name: nobody
    token: "{NOBODY}"
    permissions: []
  - name: ops
    token: "{OPS}"
    permissions:
      - table: "*"
        access: read_write
      - table: dbo.Audit
        access: read
        max_delete_rows: 0
      - lakehouse_table: "*"
        access: read
  - name: scratch
    token: "{SCRATCH_WRITER}"
    permissions:
      - table: dbo.Scratch
        access: read_write
"#
        ));
        scratch.write("config/permissions.yaml", &permissions);
        scratch
    }

    /// Every file name under the project root (outputs, staging, state), as one string.
    fn all_names(scratch: &Scratch) -> String {
        common::list_files(scratch.root()).join("\n")
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_extract_destination_is_data_and_stays_in_the_output_roots() {
        let scratch = secure_project();
        let server = Server::start_env(
            &scratch,
            &["--no-schedules"],
            &[("SOME_SECRET", SECRET.to_string())],
        );
        // The confirmed case: a template in the destination, from a token with no grants.
        let body = json!({"country": "colombia",
                          "destination": "output/x{{ env('SOME_SECRET') }}", "queries": ["sales"]});
        let (status, accepted) = server.post("/extract", Some(NOBODY), body).await;
        assert_eq!(status, 202, "{accepted}");
        let id = accepted["id"].as_str().unwrap();
        let job = server.wait_finished(id).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        let shown = job.to_string();
        assert!(!shown.contains(SECRET), "the secret came back: {shown}");
        assert!(
            shown.contains("env('SOME_SECRET')"),
            "kept as data: {shown}"
        );
        let names = all_names(&scratch);
        assert!(!names.contains(SECRET), "the secret is on disk: {names}");
        let audit = std::fs::read_to_string(scratch.path(".bridge/audit.log")).unwrap();
        assert!(!audit.contains(SECRET));

        // Locations outside the output roots are refused (403, audited) and nothing is written.
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("x");
        for destination in [
            format!("file://{}", target.display()),
            "{{ '/' }}srv".to_string(),
            "s3://bucket/x".to_string(),
            "config".to_string(),
        ] {
            let body = json!({"country": "colombia", "destination": destination});
            let (status, answer) = server.post("/extract", Some(NOBODY), body).await;
            assert_eq!(status, 403, "{destination}: {answer}");
            assert!(
                answer["detail"].as_str().unwrap().contains("output roots"),
                "{answer}"
            );
        }
        assert!(!target.exists());
        assert!(!scratch.path("{{ '").exists());
        let refused = last_audit(
            &scratch,
            |l| l["action"] == "extract" && l["result"] == "refused",
            "refused extract",
        );
        assert_eq!(refused["caller"], "nobody");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn sync_target_names_resolve_as_sql_server_does() {
        let scratch = secure_project();
        let (sql, env) = sqlserver().await;
        delta_source(&scratch.path("output/delta/main/calibration/rows"), 0..5).await;
        let server = Server::start_env(&scratch, &["--no-schedules"], &env);
        // The confirmed case: `*: read_write` with `dbo.Audit: read`; other spellings of
        // dbo.Audit must not get around the narrow grant.
        for target in [
            "master.dbo.Audit",
            "dbo .Audit",
            "Audit",
            "AUDIT",
            "dbo.Аudit",
        ] {
            let body = json!({"operation": "DELETE", "source_table": "main.calibration.rows",
                              "target_table": target, "primary_keys": ["id"]});
            let (status, answer) = server.post("/sync", Some(OPS), body).await;
            assert_eq!(status, 403, "{target}: {answer}");
        }
        let refused: Vec<Value> = audit_lines(&scratch)
            .into_iter()
            .filter(|l| l["action"] == "sync" && l["result"] == "refused")
            .collect();
        assert_eq!(refused.len(), 5, "{refused:?}");
        // Brackets are not part of an event's table names at all.
        let body = json!({"operation": "DELETE", "source_table": "main.calibration.rows",
                          "target_table": "[dbo].[Audit]", "primary_keys": ["id"]});
        let (status, answer) = server.post("/sync", Some(OPS), body).await;
        assert_eq!(
            (status, answer["field"].as_str()),
            (400, Some("target_table")),
            "{answer}"
        );
        // The narrow grant's own name works as it always did, for reading only.
        let body = json!({"operation": "INSERT", "source_table": "main.calibration.rows",
                          "target_table": "dbo.Results"});
        let (status, answer) = server.post("/sync", Some(OPS), body).await;
        assert_eq!(status, 202, "{answer}");
        let event = server.wait_event(answer["id"].as_str().unwrap()).await;
        assert_eq!(event["status"], "completed", "{event}");
        assert_eq!(
            super::events::count(&sql, "SELECT COUNT(*) FROM Results"),
            5
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_source_of_a_sync_needs_a_lakehouse_read_grant() {
        let scratch = secure_project();
        let (sql, env) = sqlserver().await;
        let settings = common::tds_settings(sql.addr().port());
        let mut client = bridge::mssql::connect(&settings).await.unwrap();
        client
            .simple_query("CREATE TABLE dbo.Scratch (id BIGINT NOT NULL PRIMARY KEY, name NVARCHAR(50) NULL, amount FLOAT NULL)")
            .await
            .unwrap()
            .into_results()
            .await
            .unwrap();
        delta_source(&scratch.path("output/delta/main/hr/salaries"), 0..3).await;
        let server = Server::start_env(&scratch, &["--no-schedules"], &env);
        let body = json!({"operation": "INSERT", "source_table": "main.hr.salaries",
                          "target_table": "dbo.Scratch"});
        let (status, answer) = server
            .post("/sync", Some(SCRATCH_WRITER), body.clone())
            .await;
        assert_eq!(status, 403, "{answer}");
        let detail = answer["detail"].as_str().unwrap();
        assert!(
            detail.contains("lakehouse table main.hr.salaries"),
            "{detail}"
        );
        assert_eq!(
            super::events::count(&sql, "SELECT COUNT(*) FROM Scratch"),
            0
        );

        // An events row written straight into the table is authorised the same way.
        let store = bridge::sync::SqliteEvents::open(scratch.path(".bridge/events.db")).unwrap();
        use bridge::sync::EventStore;
        let event = store
            .submit(bridge::sync::NewEvent {
                operation: bridge::sync::Operation::Insert,
                source_table: "main.hr.salaries".into(),
                target_table: "dbo.Scratch".into(),
                primary_keys: vec![],
                filter: None,
                created_by: Some("scratch".into()),
                pipeline: None,
                country: None,
                params: None,
            })
            .await
            .unwrap();
        let event = server.wait_event(&event.event_id).await;
        assert_eq!(event["status"], "failed", "{event}");
        assert!(
            event["error_message"]
                .as_str()
                .unwrap()
                .contains("lakehouse table main.hr.salaries"),
            "{event}"
        );
        assert_eq!(
            super::events::count(&sql, "SELECT COUNT(*) FROM Scratch"),
            0
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_run_is_authorised_from_every_location_its_params_feed() {
        let scratch = secure_project();
        std::fs::write(scratch.path(".env"), format!("SOME_SECRET={SECRET}\n")).unwrap();
        scratch.write("data/ok.csv", "id,name\n1,a\n");
        scratch.write(
            "pipelines/copy.yaml",
            r#"name: copy
countries: [colombia]
params:
  input: data/ok.csv
  out: output/copies
steps:
  - id: rows
    source:
      type: csv
      path: "{{ input }}"
  - id: out
    sink:
      type: volume
      from: rows
      destination: "{{ out }}"
      path: rows
"#,
        );
        let server = Server::start(&scratch, &["--no-schedules"]);
        let run = |params: Value| json!({"pipeline": "copy", "params": params});
        let (status, answer) = server.post("/runs", Some(NOBODY), run(json!({}))).await;
        assert_eq!(status, 202, "{answer}");
        let job = server.wait_finished(answer["id"].as_str().unwrap()).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        for (params, what) in [
            (json!({"input": "/etc/passwd"}), "outside"),
            (json!({"input": ".env"}), "hidden"),
            (
                json!({"input": "config/permissions.yaml"}),
                "permissions file",
            ),
            (json!({"input": "data/../.env"}), "hidden"),
            (json!({"out": "/tmp"}), "outside"),
            (json!({"out": "output/../pipelines"}), "outside"),
            (json!({"out": "s3://elsewhere/x"}), "outside"),
        ] {
            let (status, answer) = server
                .post("/runs", Some(NOBODY), run(params.clone()))
                .await;
            assert_eq!(status, 403, "{params}: {answer}");
            let detail = answer["detail"].as_str().unwrap();
            assert!(detail.contains(what), "{params}: {detail}");
            assert!(!detail.contains(SECRET));
        }
        // A country the pipeline does not list is refused, naming the field.
        let body = json!({"pipeline": "copy", "country": "mexico"});
        let (status, answer) = server.post("/runs", Some(NOBODY), body).await;
        assert_eq!(
            (status, answer["field"].as_str()),
            (400, Some("country")),
            "{answer}"
        );
        let body = json!({"pipeline": "copy", "country": "../../etc"});
        let (status, answer) = server.post("/runs", Some(NOBODY), body).await;
        assert_eq!(
            (status, answer["field"].as_str()),
            (400, Some("country")),
            "{answer}"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn extract_folders_come_from_the_validated_version() {
        let scratch = secure_project();
        let server = Server::start(&scratch, &["--no-schedules"]);
        // A folder that exists in the live tree but not in the validated copy of the project.
        scratch.write("output/evil/colombia/sales.sql", "SELECT 1 AS x\n");
        let body = json!({"country": "colombia", "destination": "output/e",
                          "queries_path": "output/evil"});
        let (status, answer) = server.post("/extract", Some(NOBODY), body).await;
        assert_eq!(
            (status, answer["field"].as_str()),
            (400, Some("queries_path")),
            "{answer}"
        );
        let body = json!({"country": "colombia", "destination": "output/e",
                          "queries_path": "queries", "queries": ["sales"]});
        let (status, answer) = server.post("/extract", Some(NOBODY), body).await;
        assert_eq!(status, 202, "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_filters_calling_unbounded_functions_are_refused_naming_them() {
    let scratch = project();
    let server = Server::start(&scratch, &[]);
    let sync = |filter: &str| {
        json!({"operation": "INSERT", "source_table": "main.calibration.results",
               "target_table": "dbo.Results", "filter": filter})
    };
    for (filter, function) in [
        ("length(repeat('x', 1000000000)) > 0", "repeat"),
        ("range(0, 1500000000) IS NOT NULL", "range"),
        ("lpad(name, 2000000000, 'x') <> ''", "lpad"),
    ] {
        let (status, body) = server.post("/sync", Some(WRITER), sync(filter)).await;
        assert_eq!(status, 400, "{filter}: {body}");
        assert_eq!(body["field"], "filter", "{body}");
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.starts_with(&format!(
                "filter: function `{function}` is not allowed in a filter; allowed functions: lower,"
            )),
            "{detail}"
        );
    }
    // A filter of comparisons and bounded functions is accepted (and stored as an event).
    let (status, body) = server
        .post(
            "/sync",
            Some(WRITER),
            sync("lower(trim(name)) = 'x' AND amount BETWEEN 1 AND 10"),
        )
        .await;
    assert_eq!(status, 202, "{body}");
}

/// An event read from the events table itself (whoever created it).
async fn wait_stored(store: &dyn bridge::sync::EventStore, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let event = store.get(id).await.unwrap().expect("stored");
        let event = serde_json::to_value(&event).unwrap();
        if matches!(event["status"].as_str(), Some("completed" | "failed")) {
            return event;
        }
        assert!(Instant::now() < deadline, "event never finished: {event}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// RUN events: pipeline runs asked for through the events queue, by `POST /events` or by a row
/// written straight into the events table (as a Databricks job does).
mod run_events {
    use super::*;
    use bridge::sync::{EventStore, NewEvent, SqliteEvents};

    fn run_row(by: &str, pipeline: &str, country: Option<&str>, params: Option<&str>) -> NewEvent {
        let params = params
            .map(|text| serde_json::from_str(text).expect("a JSON object"))
            .unwrap_or_default();
        NewEvent::run(pipeline, country, &params, Some(by))
    }

    async fn jobs_of(server: &Server, pipeline: &str) -> u64 {
        let (_, list) = server
            .get(&format!("/jobs?pipeline={pipeline}"), Some(READER))
            .await;
        list["total"].as_u64().unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn events_of_the_old_default_delta_table_are_imported_and_run() {
        let scratch = project();
        let old =
            bridge::sync::LocalDeltaEvents::open(scratch.path(".bridge/events/bridge_events"))
                .await
                .unwrap();
        let pending = old
            .submit(run_row("reader", "demo", Some("mexico"), None))
            .await
            .unwrap();
        drop(old);
        let server = Server::start(&scratch, &["--no-schedules"]);
        let event = server.wait_event(&pending.event_id).await;
        assert_eq!(event["status"], "completed", "{event}");
        assert_eq!(
            event["created_at"],
            serde_json::to_value(&pending).unwrap()["created_at"]
        );
        let store = SqliteEvents::open(scratch.path(".bridge/events.db")).unwrap();
        assert_eq!(store.list(None, 10).await.unwrap().len(), 1);
        assert_eq!(jobs_of(&server, "demo").await, 1, "run once");
    }

    /// A pipeline reading a SQL Server table the writer has no grant on.
    const FROM_SALES: &str = "name: from_sales\nsteps:\n  - id: s\n    source: {type: sqlserver, table: dbo.Sales}\n  - id: out\n    sink: {type: volume, from: s, destination: output/from_sales, path: s}\n";

    #[tokio::test(flavor = "multi_thread")]
    async fn a_run_event_runs_its_pipeline_once_as_its_creator() {
        let scratch = project();
        scratch.write("pipelines/from_sales.yaml", FROM_SALES);
        let server = Server::start(&scratch, &["--no-schedules"]);

        // Over the API: checked, authorised as the caller, queued, run by the poller.
        let (status, body) = server
            .post(
                "/events",
                Some(READER),
                json!({"operation": "RUN", "pipeline": "demo", "country": "colombia",
                       "params": {"start_date": "2024-02-01"}}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        let id = body["id"].as_str().unwrap().to_string();
        assert_eq!(body["href"], format!("/events/{id}"));
        let event = server.wait_event(&id).await;
        assert_eq!(event["status"], "completed", "{event}");
        assert_eq!(event["operation"], "RUN");
        assert_eq!(event["pipeline"], "demo");
        assert_eq!(event["params"], r#"{"start_date":"2024-02-01"}"#);
        assert!(event["rows_affected"].as_i64().unwrap() > 0, "{event}");
        let job_id = event["job_id"].as_str().expect("the job is written back");
        let (_, job) = server.get(&format!("/jobs/{job_id}"), Some(READER)).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["kind"], "event");
        assert_eq!(job["submitted_by"], "reader");
        assert_eq!(job["country"], "colombia");
        assert_eq!(job["params"]["start_date"], "2024-02-01");
        assert_eq!(job["request"]["event_id"], id.as_str());
        assert_eq!(jobs_of(&server, "demo").await, 1, "run once");
        assert!(!files_under(&scratch, "output/volume/colombia").is_empty());

        // A row written into the events table, as a Databricks job would: the same.
        let store = SqliteEvents::open(scratch.path(".bridge/events.db")).unwrap();
        let row = store
            .submit(run_row("reader", "demo", Some("mexico"), None))
            .await
            .unwrap();
        let event = server.wait_event(&row.event_id).await;
        assert_eq!(event["status"], "completed", "{event}");
        assert_eq!(jobs_of(&server, "demo").await, 2);

        // Bad input in a row fails that event with a clear message; nothing runs.
        for (row, expected) in [
            (
                run_row("reader", "nope", None, None),
                "pipeline `nope` does not exist",
            ),
            (
                run_row("reader", "demo", Some("peru"), None),
                "`peru` is not one of pipeline `demo`'s countries",
            ),
            (
                run_row(
                    "reader",
                    "demo",
                    Some("colombia"),
                    Some(r#"{"volume_root": "/tmp"}"#),
                ),
                "params.volume_root: not a parameter of pipeline `demo`",
            ),
            (
                run_row("mallory", "demo", Some("colombia"), None),
                "`mallory` is not a user",
            ),
            // The writer may not read dbo.Sales: refused from the plan, before any connection.
            (run_row("writer", "from_sales", None, None), "dbo.Sales"),
        ] {
            let stored = store.submit(row).await.unwrap();
            let event = wait_stored(&store, &stored.event_id).await;
            assert_eq!(event["status"], "failed", "{event}");
            let error = event["error_message"].as_str().unwrap();
            assert!(error.contains(expected), "{expected}: {error}");
            assert!(event.get("job_id").is_none_or(Value::is_null), "{event}");
        }
        assert_eq!(jobs_of(&server, "demo").await, 2, "nothing ran");
        assert_eq!(jobs_of(&server, "from_sales").await, 0, "nothing ran");
        let refused = last_audit(
            &scratch,
            |l| l["action"] == "event" && l["caller"] == "writer",
            "the writer's refused run",
        );
        assert_eq!(refused["result"], "refused", "{refused}");

        // The API says the same at once, naming the field.
        for (body, status, field) in [
            (
                json!({"operation": "RUN", "pipeline": "nope"}),
                404,
                "pipeline",
            ),
            (
                json!({"operation": "RUN", "pipeline": "demo", "country": "peru"}),
                400,
                "country",
            ),
            (
                json!({"operation": "RUN", "pipeline": "demo", "params": {"volume_root": "/x"}}),
                400,
                "params.volume_root",
            ),
            (
                json!({"operation": "RUN", "pipeline": "demo", "params": {"start_date": [1]}}),
                400,
                "params.start_date",
            ),
            (
                json!({"operation": "UPSERT", "pipeline": "demo"}),
                400,
                "operation",
            ),
        ] {
            let (got, answer) = server.post("/events", Some(READER), body.clone()).await;
            assert_eq!(got, status, "{body}: {answer}");
            assert_eq!(answer["field"], field, "{body}: {answer}");
        }
        let (got, answer) = server
            .post(
                "/events",
                Some(WRITER),
                json!({"operation": "RUN", "pipeline": "from_sales"}),
            )
            .await;
        assert_eq!(got, 403, "{answer}");
        let (got, answer) = server
            .post(
                "/sync",
                Some(READER),
                json!({"operation": "RUN", "source_table": "main.a.b", "target_table": "dbo.T"}),
            )
            .await;
        assert_eq!(got, 400, "{answer}");
        assert_eq!(answer["field"], "operation", "{answer}");
        assert!(
            answer["detail"].as_str().unwrap().contains("POST /events"),
            "{answer}"
        );
        assert_eq!(jobs_of(&server, "demo").await, 2, "nothing ran");
    }
}

/// A RUN event whose server died is taken over once its lease has passed, not before: the
/// interrupted run starts again as the event's next attempt, and the event ends with that job.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_servers_run_event_is_taken_over_after_its_lease_and_not_before() {
    let scratch = project();
    let args = [
        "--no-schedules",
        "--server-lease",
        "2",
        "--event-lease",
        "8",
    ];
    let first = Server::start(&scratch, &args);
    let (status, body) = first
        .post(
            "/events",
            Some(READER),
            json!({"operation": "RUN", "pipeline": "slow"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    async fn jobs(server: &Server) -> Value {
        server.get("/jobs?pipeline=slow", Some(READER)).await.1
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let first_job = loop {
        let list = jobs(&first).await;
        if list["items"][0]["status"] == "running" {
            break list["items"][0]["id"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "the run never started: {list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (_, event) = first.get(&format!("/events/{id}"), Some(READER)).await;
    let claimer = event["claimed_by"].as_str().unwrap().to_string();
    first.kill();

    let second = Server::start(&scratch, &args);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, event) = second.get(&format!("/events/{id}"), Some(READER)).await;
    assert_eq!(event["status"], "running", "{event}");
    assert_eq!(
        event["claimed_by"],
        claimer.as_str(),
        "a live lease is not taken over: {event}"
    );
    assert_eq!(jobs(&second).await["total"], 1);

    let deadline = Instant::now() + Duration::from_secs(60);
    let next_job = loop {
        let list = jobs(&second).await;
        if list["total"] == 2 && list["items"][0]["status"] == "running" {
            break list["items"][0]["id"].as_str().unwrap().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the run was not taken over: {list}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_ne!(next_job, first_job);
    let (_, old) = second
        .get(&format!("/jobs/{first_job}"), Some(READER))
        .await;
    assert_eq!(old["status"], "interrupted", "{old}");
    let (_, event) = second.get(&format!("/events/{id}"), Some(READER)).await;
    assert_ne!(event["claimed_by"], claimer.as_str(), "{event}");

    // Cancelling the new attempt ends the event with it.
    let (status, body) = second
        .delete(&format!("/jobs/{next_job}"), Some(READER))
        .await;
    assert_eq!(status, 202, "{body}");
    let event = second.wait_event(&id).await;
    assert_eq!(event["status"], "failed", "{event}");
    assert_eq!(event["job_id"], next_job.as_str(), "{event}");
    assert!(
        event["error_message"]
            .as_str()
            .unwrap()
            .contains("cancelled"),
        "{event}"
    );
    assert_eq!(jobs(&second).await["total"], 2, "no third run");
}

/// Two servers sharing a project (one job store) run each schedule slot once.
#[tokio::test(flavor = "multi_thread")]
async fn two_servers_run_each_schedule_slot_once() {
    let scratch = project();
    let demo = std::fs::read_to_string(scratch.path("pipelines/demo.yaml")).unwrap();
    let ticking = demo
        .replacen("name: demo", "name: ticking", 1)
        .replace("schedule: \"0 6 * * *\"", "schedule: \"*/2 * * * * *\"")
        .replace("countries: [colombia, mexico]", "countries: [colombia]");
    assert!(ticking.contains("*/2 * * * * *"));
    scratch.write("pipelines/ticking.yaml", &ticking);
    let a = Server::start(&scratch, &[]);
    let b = Server::start(&scratch, &[]);
    tokio::time::sleep(Duration::from_secs(9)).await;
    drop(b);
    let (_, list) = a
        .get("/jobs?pipeline=ticking&limit=500", Some(READER))
        .await;
    let mut per_slot: std::collections::BTreeMap<String, usize> = Default::default();
    for job in list["items"].as_array().unwrap() {
        assert_eq!(job["kind"], "schedule", "{job}");
        let slot = job["request"]["slot"]
            .as_str()
            .expect("jobs name their slot");
        *per_slot.entry(slot.to_string()).or_default() += 1;
    }
    assert!(per_slot.len() >= 2, "{per_slot:?}");
    assert!(
        per_slot.values().all(|n| *n == 1),
        "a slot ran twice: {per_slot:?}"
    );
}

/// Servers on two machines (two project roots, so two job stores) sharing one events store:
/// each schedule slot is queued and run once in all, by one of them.
#[tokio::test(flavor = "multi_thread")]
async fn servers_on_two_machines_run_each_schedule_slot_once() {
    let events_dir = tempfile::tempdir().unwrap();
    let events = events_dir
        .path()
        .join("bridge_events")
        .display()
        .to_string();
    let (a, b) = (project(), project());
    for scratch in [&a, &b] {
        let demo = std::fs::read_to_string(scratch.path("pipelines/demo.yaml")).unwrap();
        scratch.write(
            "pipelines/ticking.yaml",
            &demo
                .replacen("name: demo", "name: ticking", 1)
                .replace("schedule: \"0 6 * * *\"", "schedule: \"*/2 * * * * *\"")
                .replace("countries: [colombia, mexico]", "countries: [colombia]"),
        );
    }
    let args = ["--events-table", events.as_str()];
    let server_a = Server::start(&a, &args);
    let server_b = Server::start(&b, &args);
    tokio::time::sleep(Duration::from_secs(9)).await;
    drop(server_b);
    let server_b = Server::start(&b, &["--no-schedules", "--events-table", events.as_str()]);
    let mut per_slot: std::collections::BTreeMap<String, Vec<&str>> = Default::default();
    let lists = [
        server_a
            .get("/jobs?pipeline=ticking&limit=500", Some(READER))
            .await
            .1,
        server_b
            .get("/jobs?pipeline=ticking&limit=500", Some(READER))
            .await
            .1,
    ];
    for (list, machine) in lists.iter().zip(["a", "b"]) {
        for job in list["items"].as_array().unwrap() {
            assert_eq!(job["kind"], "schedule", "{job}");
            assert!(job["submitted_by"].is_null(), "run as the scheduler: {job}");
            let slot = job["request"]["slot"]
                .as_str()
                .expect("jobs name their slot");
            per_slot.entry(slot.to_string()).or_default().push(machine);
        }
    }
    assert!(per_slot.len() >= 2, "{per_slot:?}");
    assert!(
        per_slot.values().all(|machines| machines.len() == 1),
        "a slot ran twice: {per_slot:?}"
    );
    // One queue item per slot, whichever server queued it first.
    let store = bridge::sync::LocalDeltaEvents::open(&events).await.unwrap();
    let items: Vec<bridge::sync::Event> = store
        .all_events()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.pipeline.as_deref() == Some("ticking"))
        .collect();
    assert!(items.len() >= per_slot.len(), "{items:?}");
    // Two servers queueing a slot at the same instant may both append it to a Delta table
    // (the SQLite store refuses the second); rows of one id are claimed as one
    // item: one claim, one run.
    let mut claims: std::collections::BTreeMap<&str, std::collections::BTreeSet<String>> =
        Default::default();
    for e in &items {
        claims
            .entry(e.event_id.as_str())
            .or_default()
            .insert(format!("{:?} {:?}", e.claimed_by, e.started_at));
    }
    assert!(
        claims.values().all(|c| c.len() == 1),
        "an item claimed twice: {claims:?}"
    );
    assert!(items.iter().all(|e| e.created_by.is_none()), "{items:?}");
}

/// A RUN item naming no creator runs only as the item of one of its pipeline's schedule slots
/// (as the scheduler); one forged into the events table fails without running.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_item_without_a_creator_that_is_no_schedule_slot_fails() {
    use bridge::sync::EventStore;
    let scratch = project();
    let store = bridge::sync::SqliteEvents::open(scratch.path(".bridge/events.db")).unwrap();
    let item = bridge::sync::NewEvent::run("demo", Some("colombia"), &Default::default(), None);
    // Any id, and the id of a real slot of demo's schedule (06:00 UTC) two days ago: outside
    // the hour before the item was created.
    let day_before = (chrono::Utc::now() - chrono::Duration::days(2))
        .date_naive()
        .and_hms_opt(6, 0, 0)
        .unwrap()
        .and_utc();
    let old_slot = bridge::server::jobs::derived_id(&format!(
        "schedule/demo/colombia/{}",
        day_before.timestamp_millis()
    ));
    let forged = [
        store.submit(item.clone()).await.unwrap().event_id,
        store.submit_as(&old_slot, item).await.unwrap().event_id,
    ];
    let server = Server::start(&scratch, &["--no-schedules"]);
    for id in &forged {
        // (Read from the store: an event naming no creator is no caller's to see.)
        let event = wait_stored(&store, id).await;
        assert_eq!(event["status"], "failed", "{event}");
        assert!(
            event["error_message"]
                .as_str()
                .unwrap()
                .contains("created_by is empty"),
            "{event}"
        );
    }
    let (_, list) = server.get("/jobs", Some(READER)).await;
    assert_eq!(list["total"], 0, "nothing ran: {list}");
}

/// A run accepted by a server with no room left is claimed and run by a server on another
/// machine sharing the events store; the accepting server reports how it ended.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_accepted_by_a_busy_server_runs_on_another_machine() {
    let events_dir = tempfile::tempdir().unwrap();
    let events = events_dir
        .path()
        .join("bridge_events")
        .display()
        .to_string();
    let (a, b) = (project(), project());
    let events_arg = ["--no-schedules", "--events-table", events.as_str()];
    let busy = Server::start(&a, &[&events_arg[..], &["--max-jobs", "1"]].concat());
    let (_, body) = busy
        .post("/runs", Some(READER), json!({"pipeline": "slow"}))
        .await;
    let slow = body["id"].as_str().unwrap().to_string();
    busy.wait_job(&slow, |j| j["status"] == "running").await;
    let other = Server::start(&b, &events_arg);
    let (status, body) = busy
        .post(
            "/runs",
            Some(READER),
            json!({"pipeline": "demo", "country": "colombia"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let here = busy.wait_finished(&id).await;
    assert_eq!(here["status"], "succeeded", "{here}");
    let there = other.wait_finished(&id).await;
    assert_eq!(there["status"], "succeeded", "{there}");
    assert_eq!(
        there["submitted_by"], "reader",
        "run as its submitter: {there}"
    );
    assert_ne!(here["owner"], there["owner"], "ran on the other machine");
    assert!(!files_under(&b, "output/volume").is_empty(), "written by b");
    let (_, job) = busy.get(&format!("/jobs/{slow}"), Some(READER)).await;
    assert_eq!(job["status"], "running", "{job}");
    let (status, _) = busy.delete(&format!("/jobs/{slow}"), Some(READER)).await;
    assert_eq!(status, 202);
}

/// A run accepted but not started yet is cancelled in the job store; the server that claims its
/// item then runs nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_queued_run_cancelled_before_any_server_claims_it_never_runs() {
    let scratch = project();
    // One job at a time, busy: the second run's item waits in the queue, unclaimed.
    let server = Server::start(&scratch, &["--no-schedules", "--max-jobs", "1"]);
    let (_, body) = server
        .post("/runs", Some(READER), json!({"pipeline": "slow"}))
        .await;
    let slow = body["id"].as_str().unwrap().to_string();
    server.wait_job(&slow, |j| j["status"] == "running").await;
    let (_, body) = server
        .post(
            "/runs",
            Some(READER),
            json!({"pipeline": "demo", "country": "colombia"}),
        )
        .await;
    let queued = body["id"].as_str().unwrap().to_string();
    let (status, body) = server
        .delete(&format!("/jobs/{queued}"), Some(READER))
        .await;
    assert_eq!(status, 202, "{body}");
    let (_, job) = server.get(&format!("/jobs/{queued}"), Some(READER)).await;
    assert_eq!(job["status"], "cancelled", "{job}");
    // Once the slow run is cancelled too, the item is claimed and fails without running.
    let (status, _) = server.delete(&format!("/jobs/{slow}"), Some(READER)).await;
    assert_eq!(status, 202);
    let event_id = job["request"]["event_id"].as_str().unwrap().to_string();
    let event = server.wait_event(&event_id).await;
    assert_eq!(event["status"], "failed", "{event}");
    assert!(
        event["error_message"]
            .as_str()
            .unwrap()
            .contains("cancelled"),
        "{event}"
    );
    let (_, job) = server.get(&format!("/jobs/{queued}"), Some(READER)).await;
    assert_eq!(job["status"], "cancelled", "{job}");
    assert!(job["started_at"].is_null(), "{job}");
    assert!(files_under(&scratch, "output/volume").is_empty());
}

/// A RUN event outlasting its lease stays with its live claimer: the claim is renewed while the
/// run goes on, so a second server polling the same store does not take it over.
#[tokio::test(flavor = "multi_thread")]
async fn a_live_servers_long_run_event_is_not_taken_over() {
    let scratch = project();
    let args = ["--no-schedules", "--event-lease", "2"];
    let first = Server::start(&scratch, &args);
    let second = Server::start(&scratch, &args);
    let (status, body) = first
        .post(
            "/events",
            Some(READER),
            json!({"operation": "RUN", "pipeline": "slow"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (claimer, job) = loop {
        let (_, event) = first.get(&format!("/events/{id}"), Some(READER)).await;
        let (_, list) = first.get("/jobs?pipeline=slow", Some(READER)).await;
        if event["status"] == "running" && list["items"][0]["status"] == "running" {
            break (
                event["claimed_by"].as_str().unwrap().to_string(),
                list["items"][0]["id"].as_str().unwrap().to_string(),
            );
        }
        assert!(
            Instant::now() < deadline,
            "the run never started: {event} {list}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (_, event) = second.get(&format!("/events/{id}"), Some(READER)).await;
    assert_eq!(event["status"], "running", "{event}");
    assert_eq!(event["claimed_by"], claimer.as_str(), "{event}");
    let (_, list) = second.get("/jobs?pipeline=slow", Some(READER)).await;
    assert_eq!(list["total"], 1, "run once: {list}");
    // Whichever server claimed the event runs its job and cancels it.
    let (a, _) = first.delete(&format!("/jobs/{job}"), Some(READER)).await;
    let (b, _) = second.delete(&format!("/jobs/{job}"), Some(READER)).await;
    assert!([a, b].contains(&202), "{a} {b}");
}
