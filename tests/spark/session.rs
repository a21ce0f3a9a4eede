//! The one Spark worker process (`tests/spark/worker.py`) every test of this binary shares: started
//! on first use (or early, by [`warm_up`]), kept in a `static`, and ended by EOF on its stdin when
//! the test binary exits. Requests are JSON lines answered in order; a request without an answer
//! in [`CALL_TIMEOUT`], a dead worker or an `{"error"}` answer is an `Err` naming the command and
//! carrying the worker's message and the tail of its log (stderr: Spark's and Python's output).
//!
//! The interpreter is `BRIDGE_SPARK_PYTHON`, else `$HOME/.cache/sql-databricks-bridge/spark-venv/
//! bin/python` (what `.ci/setup-spark` creates). When neither starts Spark, every Spark test fails
//! with [`setup_message`]: the suite never passes by skipping.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long the JVM and the SparkSession may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(300);
/// How long one command may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(300);

/// A running worker.
pub struct Worker {
    child: Child,
    stdin: ChildStdin,
    answers: Receiver<String>,
    log: PathBuf,
    next_id: u64,
    /// How long the worker took to answer `ready` (JVM + SparkSession start-up).
    pub startup: Duration,
    /// The worker's `ready` answer: Spark version and the session settings in force.
    pub ready: Value,
}

static WORKER: OnceLock<Result<Mutex<Worker>, String>> = OnceLock::new();

fn cell() -> &'static Result<Mutex<Worker>, String> {
    WORKER.get_or_init(|| start_any().map(Mutex::new))
}

/// Starts the worker on a background thread (a test calls this first, then prepares its data
/// while the JVM starts).
pub fn warm_up() {
    std::thread::spawn(|| {
        let _ = cell();
    });
}

/// The shared worker, started if needed; panics with [`setup_message`] when Spark is missing.
pub fn spark() -> MutexGuard<'static, Worker> {
    match cell() {
        // A test that panicked while holding the lock did so between requests (every request
        // is answered, or the worker killed, before `call` returns), so the worker is usable.
        Ok(worker) => worker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        Err(why) => panic!("{why}"),
    }
}

/// The one-paragraph failure every Spark test reports when no interpreter starts Spark.
pub fn setup_message(tried: &[String]) -> String {
    format!(
        "The Spark tests (tests/spark.rs) need Java 17 and a Python with the pinned pyspark, \
         deltalake and pyarrow of tests/spark/requirements.txt, and none started Spark: run \
         `.ci/setup-spark` (it installs openjdk-17-jre-headless when java is missing, creates \
         $HOME/.cache/sql-databricks-bridge/spark-venv and prints its python), then run the tests \
         again, with BRIDGE_SPARK_PYTHON=\"$(.ci/setup-spark)\" if the venv is elsewhere. \
         Tried: {}.",
        tried.join("; ")
    )
}

/// The interpreters to try, in order.
fn candidates() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("BRIDGE_SPARK_PYTHON").filter(|p| !p.is_empty()) {
        out.push(("BRIDGE_SPARK_PYTHON".to_string(), PathBuf::from(p)));
    }
    if let Some(home) = std::env::var_os("HOME") {
        let venv = Path::new(&home).join(".cache/sql-databricks-bridge/spark-venv/bin/python");
        out.push(("the default venv".to_string(), venv));
    }
    out
}

fn start_any() -> Result<Worker, String> {
    let mut tried = Vec::new();
    for (origin, python) in candidates() {
        if !python.is_file() {
            tried.push(format!("{origin} {} does not exist", python.display()));
            continue;
        }
        match Worker::start(&python) {
            Ok(worker) => return Ok(worker),
            Err(e) => tried.push(format!("{origin} {}: {e}", python.display())),
        }
    }
    if tried.is_empty() {
        tried.push("neither BRIDGE_SPARK_PYTHON nor HOME is set".to_string());
    }
    Err(setup_message(&tried))
}

impl Worker {
    fn start(python: &Path) -> Result<Worker, String> {
        let started = Instant::now();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/spark/worker.py");
        let log =
            std::env::temp_dir().join(format!("bridge-spark-worker-{}.log", std::process::id()));
        let log_file = std::fs::File::create(&log)
            .map_err(|e| format!("cannot create the worker log {}: {e}", log.display()))?;
        let mut child = Command::new(python)
            .arg("-u")
            .arg(&script)
            .current_dir(std::env::temp_dir())
            // Another Spark installation or submit arguments would replace the pinned pyspark's.
            .env_remove("SPARK_HOME")
            .env_remove("SPARK_CONF_DIR")
            .env_remove("PYSPARK_SUBMIT_ARGS")
            .env("PYSPARK_PYTHON", python)
            .env("PYSPARK_DRIVER_PYTHON", python)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot start it: {e}"))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, answers) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut worker = Worker {
            child,
            stdin,
            answers,
            log,
            next_id: 0,
            startup: Duration::ZERO,
            ready: Value::Null,
        };
        let ready = worker.answer("start-up", START_TIMEOUT)?;
        if ready["ready"] != true {
            return Err(worker.failure("start-up", &format!("unexpected first line {ready}")));
        }
        worker.startup = started.elapsed();
        worker.ready = ready;
        Ok(worker)
    }

    /// Sends one command (an object with `cmd`) and returns its answer, or an `Err` naming the
    /// command with the worker's error and log tail.
    pub fn call(&mut self, mut request: Value) -> Result<Value, String> {
        let cmd = request["cmd"].as_str().unwrap_or("?").to_string();
        self.next_id += 1;
        let id = self.next_id;
        request["id"] = json!(id);
        if let Ok(Some(status)) = self.child.try_wait() {
            return Err(self.failure(&cmd, &format!("the worker had exited ({status})")));
        }
        let line = format!("{request}\n");
        if let Err(e) = self
            .stdin
            .write_all(line.as_bytes())
            .and_then(|()| self.stdin.flush())
        {
            return Err(self.failure(&cmd, &format!("cannot send the request: {e}")));
        }
        let answer = self.answer(&cmd, CALL_TIMEOUT)?;
        if answer["id"] != json!(id) {
            return Err(self.failure(&cmd, &format!("answer {answer} is not for request {id}")));
        }
        match answer.get("error").and_then(Value::as_str) {
            Some(error) => Err(format!("Spark worker: `{cmd}` failed: {error}")),
            None => Ok(answer),
        }
    }

    fn answer(&mut self, what: &str, timeout: Duration) -> Result<Value, String> {
        let line = match self.answers.recv_timeout(timeout) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                return Err(self.failure(what, &format!("no answer in {} s", timeout.as_secs())));
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                return Err(self.failure(what, &format!("the worker exited ({status})")));
            }
        };
        let value: Value = serde_json::from_str(&line)
            .map_err(|e| self.failure(what, &format!("answer is not JSON ({e}): {line}")))?;
        if what == "start-up"
            && let Some(error) = value.get("error").and_then(Value::as_str)
        {
            return Err(self.failure(what, error));
        }
        Ok(value)
    }

    /// A failure of the worker itself (not of a command), with the end of its log.
    fn failure(&self, what: &str, why: &str) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!(
            "Spark worker, {what}: {why}. Log {} ends with:\n{tail}",
            self.log.display()
        )
    }
}
