"""Events burst: the cost of draining a backlog of events with `bridge serve`'s default events
store (the SQLite database `.bridge/events.db`), for backlogs of several sizes.

For each size N (--sizes, default 100,1000), in a fresh scratch project:
  1. a lakehouse Delta table `main.bench.ev` of 10 rows (benchlib's data set, written by `bridge
     run` from a Parquet file) and empty SQL Server tables on the TDS test server
     (crates/tds-test-server): `dbo.burst_N_0` .. `dbo.burst_N_{K-1}` (--targets K, default 8;
     no key) for syncs, `dbo.run_colombia` / `dbo.run_mexico` for runs;
  2. `bridge serve` is started once and stopped, which creates `.bridge/events.db`; N pending
     events are then written straight into its `events` table in one transaction, as a producer
     writing rows would (--kind):
       sync     INSERT `main.bench.ev` -> `dbo.burst_N_{i % K}`, created_by the bench user
                (the events of one target are applied in order, one at a time; K targets side
                by side);
       run      RUN `demo` for colombia and mexico in turn (the pipeline inserts the 10 rows
                into `dbo.run_<country>`), created_by the bench user;
       refused  the sync events, created_by a user the permissions file does not know: each is
                claimed, planned, refused and recorded, and nothing is applied, so its cost is
                the queue's own (claim, plan, authorise, record) without the apply;
  3. --servers S `bridge serve` processes (default 1) on the same project drain the backlog
     together; the harness polls the database (read only) until no event is pending or running.
Reported per size: drain seconds (from the last "listening on" to the last event finished) and
events/s, the serve processes' CPU seconds (user + system from /proc/PID/stat, less what each had
used when it printed "listening on") per event, the TDS test server's CPU per event over the
same span (the SQL Server side of the applies, on the same two cores), and the checks: N completed (refused: N failed
with the refusal), none pending or running, and 10 x N rows landed (refused: none), read from the
test server's SQLite file; runs also check N succeeded jobs in `.bridge/server.db`.

A flat per-event cost shows as CPU ms per event (and events/s) about equal across sizes.

`--store delta` runs the same with the previous store, the local Delta table (`serve
--events-table`), for comparison; events then go through POST /sync (`--submit api`, also available
for the SQLite store) while the server runs, and the drain is timed from the first POST to the
last event finished; every event's status is then checked.

Usage (the bench venv of benches/check.sh: polars, pyarrow, pymssql):
  python benches/events_burst.py [--sizes 100,1000] [--kind sync|run|refused] [--servers 1]
                                 [--targets 8] [--bridge PATH] [--server PATH] [--keep]
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
                 "created_at, created_by, pipeline, country")
COUNTRIES = ("colombia", "mexico")


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
    """benchlib's events project, plus the `demo` pipeline of the RUN events and its countries."""
    import benchlib

    benchlib.events_project(proj, a.bridge, bridge_env(port), TOKEN)
    os.makedirs(os.path.join(proj, "config", "countries"), exist_ok=True)
    for country in COUNTRIES:
        with open(os.path.join(proj, "config", "countries", f"{country}.yaml"), "w") as f:
            f.write("params: {}\n")
    with open(os.path.join(proj, "pipelines", "demo.yaml"), "w") as f:
        f.write("name: demo\ncountries: [colombia, mexico]\nsteps:\n"
                "  - id: rows\n    source: {type: delta, path: output/delta/main/bench/ev}\n"
                "  - id: out\n    sink: {type: sqlserver, from: rows, table: \"dbo.run_{{ country }}\", mode: insert}\n")


class Serve:
    """`bridge serve` on a project, started and waited for its "listening on" line."""

    def __init__(self, a, proj: str, port: int, stderr: str):
        self.err = open(stderr, "a")
        extra = ["--events-table", os.path.join(proj, ".bridge", "events_delta")] if a.store == "delta" else []
        if a.event_workers:
            extra += ["--event-workers", str(a.event_workers)]
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


def backlog_rows(kind: str, n: int, targets: list[str]) -> list[tuple]:
    """The rows of N pending events of `kind`, oldest first."""
    now_us = int(time.time() * 1_000_000)
    rows = []
    for i in range(n):
        if kind == "run":
            rows.append((str(uuid.uuid4()), "RUN", "", "", "[]", None, "pending", now_us + i, "bench",
                         "demo", COUNTRIES[i % len(COUNTRIES)]))
        else:
            rows.append((str(uuid.uuid4()), "INSERT", "main.bench.ev", targets[i % len(targets)], "[]", None,
                         "pending", now_us + i, "nobody" if kind == "refused" else "bench", None, None))
    return rows


def write_backlog(db: str, rows: list[tuple]) -> None:
    """The pending events straight into the store, in one transaction."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        with conn:
            conn.executemany(f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    finally:
        conn.close()


def succeeded_jobs(proj: str) -> int:
    """Jobs of RUN events that succeeded, from the job store."""
    conn = sqlite3.connect(f"file:{os.path.join(proj, '.bridge', 'server.db')}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute("SELECT COUNT(*) FROM jobs WHERE kind = 'event' AND status = 'succeeded'").fetchone()[0]
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
    proj = os.path.join(work, f"burst_{a.kind}_{n}_{a.servers}")
    make_project(a, proj, server.port)
    import benchlib

    tables = [f"burst_{n}_{k}" for k in range(a.targets)] if a.kind != "run" else \
        [f"run_{c}" for c in COUNTRIES]
    for table in tables:
        tsql(server.port, f"IF OBJECT_ID('{table}') IS NOT NULL DROP TABLE {table}",
             benchlib.create_table_sql(f"dbo.{table}").replace(" PRIMARY KEY", ""))
    stderr = os.path.join(work, f"serve_{a.kind}_{n}.stderr")
    if a.submit == "api":
        tds_cpu0 = server.cpu()
        c = drain_api(a, proj, server.port, stderr, n, f"dbo.{tables[0]}")
        drain, cpu = c.pop("drain_s"), c.pop("cpu_s")
        tds_cpu = server.cpu() - tds_cpu0
    else:
        db = os.path.join(proj, ".bridge", "events.db")
        Serve(a, proj, server.port, stderr).stop()  # creates .bridge/events.db
        if not os.path.exists(db):
            raise BenchError(f"{db} was not created: is `bridge` a build with the SQLite events store?")
        write_backlog(db, backlog_rows(a.kind, n, [f"dbo.{t}" for t in tables]))
        log(f"{n} {a.kind} events written to {db}; draining with {a.servers} server(s)")
        serves = []
        try:
            for _ in range(a.servers):
                serves.append(Serve(a, proj, server.port, stderr))
            started = max(s.started for s in serves)
            tds_cpu0 = server.cpu()
            deadline = time.monotonic() + a.timeout
            while True:
                c = counts(db)
                if c.get("pending", 0) + c.get("running", 0) == 0:
                    break
                if time.monotonic() > deadline:
                    raise BenchError(f"backlog of {n} not drained after {a.timeout} s: {c}")
                time.sleep(0.02)
            drain = time.perf_counter() - started
            cpu = sum(s.cpu() for s in serves)
            tds_cpu = server.cpu() - tds_cpu0
        finally:
            for s in serves:
                s.stop()
        c = counts(db)
    conn = sqlite3.connect(f"file:{server.db}?mode=ro", uri=True)
    landed = sum(conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables)
    conn.close()
    return {"kind": a.kind, "servers": a.servers, "events": n, "drain_s": drain, "events_per_s": n / drain,
            "serve_cpu_s": cpu, "cpu_ms_per_event": 1000 * cpu / n, "tds_cpu_ms_per_event": 1000 * tds_cpu / n,
            "completed": c.get("completed", 0),
            "failed": c.get("failed", 0), "left": c.get("pending", 0) + c.get("running", 0), "rows": landed,
            "jobs": succeeded_jobs(proj) if a.kind == "run" else None}


def latency(a, work: str, server: TdsServer, e: int) -> dict:
    """E sync events posted one at a time to an idle server, each waited for: the p50 / p99 of
    committed -> started (the event's `started_at - created_at`), and how many completed."""
    import datetime as dt

    import benchlib

    proj = os.path.join(work, "latency")
    make_project(a, proj, server.port)
    tsql(server.port, "IF OBJECT_ID('lat_target') IS NOT NULL DROP TABLE lat_target",
         benchlib.create_table_sql("dbo.lat_target").replace(" PRIMARY KEY", ""))
    serve = Serve(a, proj, server.port, os.path.join(work, "serve_latency.stderr"))
    lat, completed = [], 0
    try:
        for _ in range(e):
            ev_id = serve.call("POST", "/sync", {"operation": "INSERT", "source_table": "main.bench.ev",
                                                 "target_table": "dbo.lat_target"})["id"]
            deadline = time.monotonic() + 120
            while (ev := serve.call("GET", f"/events/{ev_id}"))["status"] not in ("completed", "failed"):
                if time.monotonic() > deadline:
                    raise BenchError(f"event {ev_id} did not finish: {ev}")
                time.sleep(0.01)
            completed += ev["status"] == "completed"
            at = {k: dt.datetime.fromisoformat(ev[k].replace("Z", "+00:00")) for k in ("created_at", "started_at")}
            lat.append((at["started_at"] - at["created_at"]).total_seconds())
    finally:
        serve.stop()
    lat.sort()
    pick = lambda q: lat[min(len(lat) - 1, max(0, int(round(q * len(lat) + 0.5)) - 1))]  # noqa: E731
    return {"events": e, "completed": completed, "p50_ms": 1000 * pick(0.5), "p99_ms": 1000 * pick(0.99)}


def checked(r: dict) -> bool:
    """Every event once: completed (refused: failed), nothing left, 10 rows per applied event."""
    n = r["events"]
    if r["kind"] == "refused":
        return r["failed"] == n and r["left"] == 0 and r["rows"] == 0
    good = r["completed"] == n and r["failed"] == 0 and r["left"] == 0 and r["rows"] == 10 * n
    return good and (r["kind"] != "run" or r["jobs"] == n)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100,1000", help="backlog sizes, comma-separated")
    p.add_argument("--bridge", default=default_binary("bridge"))
    p.add_argument("--server", default=default_binary("tds-test-server"))
    p.add_argument("--workdir", help="keep everything in this folder (default a temp folder, removed)")
    p.add_argument("--keep", action="store_true", help="keep the temp folder")
    p.add_argument("--timeout", type=float, default=3600, help="seconds one backlog may take to drain")
    p.add_argument("--kind", choices=["sync", "run", "refused"], default="sync",
                   help="sync events, RUN events, or syncs refused at authorisation (the queue's own cost)")
    p.add_argument("--servers", type=int, default=1, help="bridge serve processes draining the backlog together")
    p.add_argument("--targets", type=int, default=8, help="SQL Server tables the sync events are spread over")
    p.add_argument("--event-workers", type=int, help="serve --event-workers (default: serve's, 4)")
    p.add_argument("--latency", type=int, default=0,
                   help="then E sync events posted one at a time to an idle server: committed -> started p50/p99")
    p.add_argument("--store", choices=["sqlite", "delta"], default="sqlite",
                   help="the events store: the default SQLite database or a local Delta table (--events-table)")
    p.add_argument("--submit", choices=["direct", "api"],
                   help="write the backlog into the database before serving (direct, SQLite only; the default "
                        "there) or POST /sync while serving (api; the default for delta)")
    a = p.parse_args()
    a.submit = a.submit or ("api" if a.store == "delta" else "direct")
    if a.store == "delta" and a.submit == "direct":
        p.error("--submit direct needs --store sqlite")
    if a.submit == "api" and (a.kind != "sync" or a.servers != 1):
        p.error("--submit api runs sync events with one server")
    if a.servers < 1 or a.targets < 1:
        p.error("--servers and --targets must be at least 1")
    sizes = [int(s) for s in a.sizes.split(",") if s]
    for b in (a.bridge, a.server):
        if not os.access(b, os.X_OK):
            p.error(f"{b} not found: build it (cargo build --release -p sql-databricks-bridge -p tds-test-server)")
    work = a.workdir or tempfile.mkdtemp(prefix="bridge-events-burst-")
    os.makedirs(work, exist_ok=True)
    log(f"bridge {a.bridge}, store {a.store}, submit {a.submit}, kind {a.kind}, servers {a.servers}, "
        f"targets {a.targets}, work folder {work}")
    server = TdsServer(a.server, os.path.join(work, "sqlserver.db"), work)
    results, ok = [], True
    try:
        for n in sizes:
            r = burst(a, work, server, n)
            results.append(r)
            good = checked(r)
            ok &= good
            log(f"N={n}: drained in {r['drain_s']:.2f} s ({r['events_per_s']:.1f} events/s), serve CPU "
                f"{r['serve_cpu_s']:.2f} s = {r['cpu_ms_per_event']:.1f} ms/event; completed {r['completed']}, "
                f"failed {r['failed']}, left {r['left']}, rows {r['rows']}"
                f"{'' if r['jobs'] is None else ', jobs succeeded ' + str(r['jobs'])} "
                f"{'OK' if good else 'FAILED'}")
        if a.latency:
            lat = latency(a, work, server, a.latency)
            ok &= lat["completed"] == a.latency
            log(f"latency: {lat['events']} events one at a time, committed -> started p50 {lat['p50_ms']:.0f} ms, "
                f"p99 {lat['p99_ms']:.0f} ms; completed {lat['completed']}")
    finally:
        server.stop()
        if not (a.workdir or a.keep):
            shutil.rmtree(work, ignore_errors=True)
    print("| kind | servers | events | drain s | events/s | serve CPU s | serve CPU ms/event "
          "| test server CPU ms/event | rows | check |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        print(f"| {r['kind']} | {r['servers']} | {r['events']} | {r['drain_s']:.2f} | {r['events_per_s']:.1f} | "
              f"{r['serve_cpu_s']:.2f} | {r['cpu_ms_per_event']:.1f} | {r['tds_cpu_ms_per_event']:.1f} | {r['rows']} | "
              f"{'ok' if checked(r) else 'FAILED'} |")
    print(json.dumps(results), file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
