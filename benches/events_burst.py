"""Events burst: the cost of draining a backlog of sync events with `bridge serve`'s default events
store (the SQLite database `.bridge/events.db`), for backlogs of several sizes.

For each size N (--sizes, default 100,1000), in a fresh scratch project:
  1. a lakehouse Delta table `main.bench.ev` of 10 rows (benchlib's data set, written by `bridge
     run` from a Parquet file) and an empty SQL Server table `dbo.burst_N` (no key) on the TDS test
     server (crates/tds-test-server);
  2. `bridge serve` is started once and stopped, which creates `.bridge/events.db`; N pending
     INSERT events (`main.bench.ev` -> `dbo.burst_N`, created_by the bench user) are then written
     straight into its `events` table in one transaction, as a producer writing rows would;
  3. `bridge serve` is started again and drains the backlog; the harness polls the database (read
     only) until no event is pending or running.
Reported per size: drain seconds (from "listening on" to the last event finished) and events/s,
the serve process's CPU seconds (user + system from /proc/PID/stat, less what it had used when it
printed "listening on") per event, and the checks: N completed, none failed, pending or running,
and 10 x N rows landed in dbo.burst_N (read from the test server's SQLite file).

A flat per-event cost shows as CPU ms per event (and events/s) about equal across sizes.

`--store delta` runs the same with the previous store, the local Delta table (`serve
--events-table`), for comparison; events then go through POST /sync (`--submit api`, also available
for the SQLite store) while the server runs, and the drain is timed from the first POST to the
last event finished (the poller applies one event at a time, oldest first, so the last one
finished means all did; every event's status is then checked).

Usage (the bench venv of benches/check.sh: polars, pyarrow, pymssql):
  python benches/events_burst.py [--sizes 100,1000] [--bridge PATH] [--server PATH] [--keep]
Exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from run import TOKEN, BenchError, TdsServer, default_binary, log, proc_cpu  # noqa: E402

EVENT_COLUMNS = ("event_id, operation, source_table, target_table, primary_keys, filter, status, "
                 "created_at, created_by")


def bridge_env(port: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SQLSERVER_") and k != "RUST_LOG"}
    env.update(SQLSERVER_HOST="127.0.0.1", SQLSERVER_PORT=str(port), SQLSERVER_DATABASE="master",
               SQLSERVER_USERNAME="sa", SQLSERVER_PASSWORD="unused-by-the-test-server",
               SQLSERVER_ENCRYPT="danger_plaintext")
    return env


def tsql(port: int, *sql: str) -> None:
    subprocess.run([sys.executable, os.path.join(HERE, "workers.py"), "tsql", "--port", str(port), *sql],
                   check=True)


def make_project(a, proj: str, port: int) -> None:
    import benchlib

    os.makedirs(os.path.join(proj, "pipelines"), exist_ok=True)
    os.makedirs(os.path.join(proj, "config"), exist_ok=True)
    with open(os.path.join(proj, "config", "defaults.yaml"), "w") as f:
        f.write("params:\n  lakehouse_root: output/delta\n")
    with open(os.path.join(proj, "config", "permissions.yaml"), "w") as f:
        f.write(f'users:\n  - name: bench\n    token: "{TOKEN}"\n    permissions:\n'
                f'      - table: "*"\n        access: read_write\n'
                f'      - lakehouse_table: "*"\n        access: read\n')
    benchlib.write_parquet(os.path.join(proj, "ev.parquet"), 0, 10, 0)
    pipe = os.path.join(proj, "pipelines", "mkdelta.yaml")
    with open(pipe, "w") as f:
        f.write("name: mkdelta\nsteps:\n  - id: rows\n    source: {type: parquet, path: ev.parquet}\n"
                "  - id: out\n    sink: {type: delta, from: rows, path: output/delta/main/bench/ev, mode: overwrite}\n")
    subprocess.run([a.bridge, "--root", proj, "run", pipe], check=True, env=bridge_env(port),
                   stdout=subprocess.DEVNULL)
    os.remove(pipe)


class Serve:
    """`bridge serve` on a project, started and waited for its "listening on" line."""

    def __init__(self, a, proj: str, port: int, stderr: str):
        self.err = open(stderr, "a")
        extra = ["--events-table", os.path.join(proj, ".bridge", "events_delta")] if a.store == "delta" else []
        self.proc = subprocess.Popen(
            [a.bridge, "--root", proj, "serve", "--listen", "127.0.0.1:0", "--no-schedules", *extra],
            stdout=subprocess.PIPE, stderr=self.err, text=True, env=bridge_env(port))
        line = self.proc.stdout.readline()
        self.started = time.perf_counter()
        if not line.startswith("listening on "):
            self.stop()
            raise BenchError(f"bridge serve did not start: {line!r} (see {stderr})")
        self.base = line.split("listening on ", 1)[1].strip()
        self.cpu0 = proc_cpu(self.proc.pid)
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        import urllib.request

        req = urllib.request.Request(self.base + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {TOKEN}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.loads(r.read())

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid) - self.cpu0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()


def write_backlog(db: str, n: int, target: str) -> None:
    """N pending events straight into the store, oldest first, in one transaction."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        now_us = int(time.time() * 1_000_000)
        rows = [(str(uuid.uuid4()), "INSERT", "main.bench.ev", target, "[]", None, "pending", now_us + i, "bench")
                for i in range(n)]
        with conn:
            conn.executemany(f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    finally:
        conn.close()


def counts(db: str) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return dict(conn.execute("SELECT status, COUNT(*) FROM events GROUP BY status").fetchall())
    finally:
        conn.close()


def drain_api(a, proj: str, port: int, stderr: str, n: int, target: str) -> dict:
    """N events through POST /sync while the server applies them; the statuses at the end, the
    drain seconds and the server's CPU seconds (both taken before the final status checks)."""
    serve = Serve(a, proj, port, stderr)
    try:
        t0 = time.perf_counter()
        cpu0 = serve.cpu()
        ids = [serve.call("POST", "/sync", {"operation": "INSERT", "source_table": "main.bench.ev",
                                            "target_table": target})["id"] for _ in range(n)]
        log(f"{n} events posted in {time.perf_counter() - t0:.1f} s; draining")
        deadline = time.monotonic() + a.timeout
        while serve.call("GET", f"/events/{ids[-1]}")["status"] not in ("completed", "failed"):
            if time.monotonic() > deadline:
                raise BenchError(f"backlog of {n} not drained after {a.timeout} s")
            time.sleep(0.1)
        out = {"drain_s": time.perf_counter() - t0, "cpu_s": serve.cpu() - cpu0}
        for ev_id in ids:
            status = serve.call("GET", f"/events/{ev_id}")["status"]
            out[status] = out.get(status, 0) + 1
        return out
    finally:
        serve.stop()


def burst(a, work: str, server: TdsServer, n: int) -> dict:
    proj = os.path.join(work, f"burst_{n}")
    make_project(a, proj, server.port)
    import benchlib

    table = f"burst_{n}"
    tsql(server.port, f"IF OBJECT_ID('{table}') IS NOT NULL DROP TABLE {table}",
         benchlib.create_table_sql(f"dbo.{table}").replace(" PRIMARY KEY", ""))
    stderr = os.path.join(work, f"serve_{n}.stderr")
    if a.submit == "api":
        c = drain_api(a, proj, server.port, stderr, n, f"dbo.{table}")
        drain, cpu = c.pop("drain_s"), c.pop("cpu_s")
    else:
        db = os.path.join(proj, ".bridge", "events.db")
        Serve(a, proj, server.port, stderr).stop()  # creates .bridge/events.db
        if not os.path.exists(db):
            raise BenchError(f"{db} was not created: is `bridge` a build with the SQLite events store?")
        write_backlog(db, n, f"dbo.{table}")
        log(f"{n} events written to {db}; draining")
        serve = Serve(a, proj, server.port, stderr)
        try:
            deadline = time.monotonic() + a.timeout
            while True:
                c = counts(db)
                if c.get("pending", 0) + c.get("running", 0) == 0:
                    break
                if time.monotonic() > deadline:
                    raise BenchError(f"backlog of {n} not drained after {a.timeout} s: {c}")
                time.sleep(0.05)
            drain = time.perf_counter() - serve.started
            cpu = serve.cpu()
        finally:
            serve.stop()
        c = counts(db)
    conn = sqlite3.connect(f"file:{server.db}?mode=ro", uri=True)
    landed = conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]
    conn.close()
    return {"events": n, "drain_s": drain, "events_per_s": n / drain, "serve_cpu_s": cpu,
            "cpu_ms_per_event": 1000 * cpu / n, "completed": c.get("completed", 0), "failed": c.get("failed", 0),
            "left": c.get("pending", 0) + c.get("running", 0), "rows": landed}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100,1000", help="backlog sizes, comma-separated")
    p.add_argument("--bridge", default=default_binary("bridge"))
    p.add_argument("--server", default=default_binary("tds-test-server"))
    p.add_argument("--workdir", help="keep everything in this folder (default a temp folder, removed)")
    p.add_argument("--keep", action="store_true", help="keep the temp folder")
    p.add_argument("--timeout", type=float, default=3600, help="seconds one backlog may take to drain")
    p.add_argument("--store", choices=["sqlite", "delta"], default="sqlite",
                   help="the events store: the default SQLite database or a local Delta table (--events-table)")
    p.add_argument("--submit", choices=["direct", "api"],
                   help="write the backlog into the database before serving (direct, SQLite only; the default "
                        "there) or POST /sync while serving (api; the default for delta)")
    a = p.parse_args()
    a.submit = a.submit or ("api" if a.store == "delta" else "direct")
    if a.store == "delta" and a.submit == "direct":
        p.error("--submit direct needs --store sqlite")
    sizes = [int(s) for s in a.sizes.split(",") if s]
    for b in (a.bridge, a.server):
        if not os.access(b, os.X_OK):
            p.error(f"{b} not found: build it (cargo build --release -p sql-databricks-bridge -p tds-test-server)")
    work = a.workdir or tempfile.mkdtemp(prefix="bridge-events-burst-")
    os.makedirs(work, exist_ok=True)
    log(f"bridge {a.bridge}, store {a.store}, submit {a.submit}, work folder {work}")
    server = TdsServer(a.server, os.path.join(work, "sqlserver.db"), work)
    results, ok = [], True
    try:
        for n in sizes:
            r = burst(a, work, server, n)
            results.append(r)
            good = r["completed"] == n and r["failed"] == 0 and r["left"] == 0 and r["rows"] == 10 * n
            ok &= good
            log(f"N={n}: drained in {r['drain_s']:.2f} s ({r['events_per_s']:.1f} events/s), serve CPU "
                f"{r['serve_cpu_s']:.2f} s = {r['cpu_ms_per_event']:.1f} ms/event; completed {r['completed']}, "
                f"failed {r['failed']}, left {r['left']}, rows {r['rows']} (want {10 * n}) "
                f"{'OK' if good else 'FAILED'}")
    finally:
        server.stop()
        if not (a.workdir or a.keep):
            shutil.rmtree(work, ignore_errors=True)
    print("| events | drain s | events/s | serve CPU s | CPU ms/event | rows | check |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        good = r["completed"] == r["events"] and r["left"] == 0 and r["rows"] == 10 * r["events"]
        print(f"| {r['events']} | {r['drain_s']:.2f} | {r['events_per_s']:.1f} | {r['serve_cpu_s']:.2f} | "
              f"{r['cpu_ms_per_event']:.1f} | {r['rows']} | {'ok' if good else 'FAILED'} |")
    print(json.dumps(results), file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
