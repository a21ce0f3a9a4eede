#!/usr/bin/env python3
"""Benchmark of the bridge against its peers, side by side in one run (ratios), on the TDS test
server (crates/tds-test-server). See README.md "Benchmarks".

Phases (each measured client is its own child process: wall time, peak RSS from wait4, its CPU
seconds, and the test server's CPU seconds during it, from /proc/PID/stat; the report gives both
CPUs per million rows as well):

  1. generate N deterministic rows of 10 mixed columns (benchlib.py) as Parquet, plus the rows an
     upsert writes (N rows, half of them existing keys);
  2. write-back, insert: `bridge run` with a parquet source and the `sqlserver` sink loads the N
     rows into dbo.bench (this is also how the extraction table is loaded);
  3. extraction of `SELECT * FROM dbo.bench` to Parquet: `bridge run` (one connection, and
     `partition:` on P connections; and, as the peer bridge-tiberius, one connection read with
     `read_driver: tiberius` instead of the default mssql-tds); the peers ConnectorX (1 and P partitions), arrow-odbc
     (FreeTDS ODBC driver) and mssql-python (`arrow_reader`), both streamed batch by batch into a
     pyarrow ParquetWriter; the original Python path (pymssql fetchall -> Polars write_parquet, on
     the first --python-rows rows); and two limits: a raw TDS client that discards the packets
     (the test server's own ceiling) and the Parquet encode limit (pyarrow writes the in-memory
     table with the bridge's compression and row groups: the CPU an extraction cannot avoid);
  4. write-back, upsert: `bridge run` upserts N rows (N/2 updates, N/2 inserts) into dbo.bench;
  5. bulk write-back peers on the same N rows: mssql-python `bulkcopy_arrow` (from the Parquet
     file, batch by batch) and FreeTDS `freebcp -c` (from a tab-separated file exported
     beforehand, not timed), insert and upsert (bulk copy into a staging table, then the bridge's
     UPDATE/INSERT);
  6. Python write-back baselines on --writeback-rows rows (pymssql executemany, pymssql multi-row
     VALUES, python-tds bulk copy; upsert through python-tds bulk copy into a #temp table);
  7. the Python operator (sdk/operator), when in --peers: `extract_to_arrow` of dbo.bench (1.5 N
     rows after the upsert) into a pyarrow Table against ConnectorX's `read_sql(return_type="arrow")`, and `sync_to_sql_server`
     of a Parquet file streamed as Arrow batches (insert) on --writeback-rows rows (python-tds bulk
     copy's rows) and on all N rows; each child times only its call (wall and CPU of all its
     threads), not its imports or the checksum of what it read;
  8. event latency: `bridge serve` with the local events table; E events submitted one after the
     other through POST /sync; started_at - created_at of each (GET /events/{id}).

Every output is checked: row count and an order-independent checksum over all normalised columns
(benchlib.py) of each extraction's Parquet and of each written table (read straight from the
server's SQLite file) against the generated data. (freebcp trims trailing blanks off character
values, so its expected table has `note` right-trimmed: baselines/FINDINGS.md.)

A peer that fails (non-zero exit, exception, or output that differs from the data) is listed
under "Peers that failed" with its error, left out of the ratios, and the run goes on. --check
(CI) runs small N, without timing targets and without appending to RESULTS.md, and exits non-zero
on any mismatch or failure, a failed peer included unless it is named in --allow-fail.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import platform
import shutil
import statistics
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
benchlib = None  # imported by main() after the spawner is forked (see Spawner)
workers = None  # likewise

TCK = os.sysconf("SC_CLK_TCK")
TOKEN = "bench-token-0123456789abcdef"
BASE = os.path.join(HERE, "baselines")
# Peers, by the name --allow-fail and --peers take.
EXTRACT_PEERS = ("raw-tds", "connectorx", "arrow-odbc", "mssql-python", "parquet-encode", "pymssql", "pytds")
BULK_PEERS = ("mssql-python-bulk", "freebcp")  # write-back on all N rows
PY_WRITEBACK = ("pytds-bulk", "pymssql-values", "pymssql-executemany")  # on --writeback-rows rows
PEERS = EXTRACT_PEERS + BULK_PEERS + PY_WRITEBACK + ("operator",)
# --peers picks from these; bridge-tiberius: the bridge reading with `read_driver: tiberius`;
# operator: the Python operator (sdk/operator, installed in this venv) against ConnectorX's
# in-memory Arrow and python-tds bulk copy
OPTIONAL_PEERS = ("arrow-odbc", "mssql-python", "parquet-encode", "bridge-tiberius", *BULK_PEERS, "operator")
OP_EXTRACT = "operator extract_to_arrow -> pyarrow Table"
CX_ARROW = "ConnectorX read_sql -> pyarrow Table"
OP_SYNC = "operator sync_to_sql_server from Arrow, insert"
TIBERIUS = "bridge run, read_driver: tiberius"
ENCODE_LIMIT = "Parquet encode limit (pyarrow, same compression and row groups)"
RSS_TARGET_MB = 200


class BenchError(Exception):
    pass


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def default_binary(name: str) -> str:
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    for profile in ("release", "debug"):
        p = os.path.join(target, profile, name)
        if os.path.exists(p):
            return p
    return os.path.join(target, "release", name)


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a live process has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TCK


def proc_hwm_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Spawner:
    """Runs measured children from a small helper process forked before polars/pyarrow are loaded.

    Linux folds the memory of the process that called exec into the child's peak RSS (ru_maxrss
    keeps the high-water mark of the pre-exec address space, which for fork/vfork is the parent's).
    Children spawned by this harness directly would all report >= its ~200 MB; spawned by the
    helper (~10 MB), their ru_maxrss from wait4 is their own (floor: the helper's size)."""

    def __init__(self):
        req_r, self.req_w = os.pipe()
        self.res_r, res_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the helper: spawn, wait4, report; until the pipe closes
            os.close(self.req_w)
            os.close(self.res_r)
            with os.fdopen(req_r) as req, os.fdopen(res_w, "w") as res:
                for line in req:
                    m = json.loads(line)
                    with open(m["stdout"], "w") as out, open(m["stderr"], "w") as err:
                        try:
                            p = subprocess.Popen(m["cmd"], stdout=out, stderr=err, env=m["env"])
                        except OSError as e:
                            res.write(json.dumps({"error": str(e)}) + "\n")
                            res.flush()
                            continue
                    res.write(json.dumps({"pid": p.pid}) + "\n")
                    res.flush()
                    _, status, ru = os.wait4(p.pid, 0)
                    res.write(json.dumps({"rc": os.waitstatus_to_exitcode(status), "maxrss_kb": ru.ru_maxrss,
                                          "cpu_s": ru.ru_utime + ru.ru_stime}) + "\n")
                    res.flush()
            os._exit(0)
        os.close(req_r)
        os.close(res_w)
        self.res = os.fdopen(self.res_r)
        self.req = os.fdopen(self.req_w, "w")

    def run(self, cmd: list[str], env: dict | None, stdout: str, stderr: str, timeout: float) -> dict:
        self.req.write(json.dumps({"cmd": cmd, "env": dict(env if env is not None else os.environ),
                                   "stdout": stdout, "stderr": stderr}) + "\n")
        self.req.flush()
        first = json.loads(self.res.readline())
        if "error" in first:
            raise BenchError(f"cannot start {cmd[0]}: {first['error']}")
        timer = threading.Timer(timeout, lambda: os.kill(first["pid"], signal.SIGKILL))
        timer.start()
        try:
            return json.loads(self.res.readline())
        finally:
            timer.cancel()

    def close(self) -> None:
        self.req.close()
        os.waitpid(self.pid, 0)


class TdsServer:
    def __init__(self, binary: str, db: str, logdir: str):
        self.err = open(os.path.join(logdir, "tds-server.stderr"), "w")
        self.proc = subprocess.Popen([binary, "--port", "0", "--db", db], stdout=subprocess.PIPE,
                                     stderr=self.err, text=True)
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            raise BenchError(f"tds-test-server did not start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1])
        self.db = db
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Bench:
    def __init__(self, a, spawner: Spawner):
        self.a = a
        self.spawner = spawner
        self.results: list[dict] = []
        self.checks: list[tuple[str, bool, str]] = []
        self.failed: list[tuple[str, str, str]] = []  # (peer, label, error)
        self.label = ""  # of the last measure, for a failing peer's report
        self.freebcp_want = None  # freebcp's expected (insert, upsert) checksums, see freebcp_input
        self.work = a.workdir or tempfile.mkdtemp(prefix="bridge-bench-")
        os.makedirs(self.work, exist_ok=True)
        self.logs = os.path.join(self.work, "logs")
        os.makedirs(self.logs, exist_ok=True)
        self.project = os.path.join(self.work, "project")
        os.makedirs(os.path.join(self.project, "pipelines"), exist_ok=True)
        os.makedirs(os.path.join(self.project, "data"), exist_ok=True)
        self.server: TdsServer | None = None
        self.py = sys.executable
        self.bytes_per_row = 0.0
        self.n_log = 0

    # ------------------------------------------------------------------ running children

    def measure(self, label: str, cmd: list[str], env: dict | None = None, timeout: float | None = None) -> dict:
        """Runs one child to completion: wall s, peak RSS MB (wait4), its CPU s, server CPU s."""
        self.n_log += 1
        self.label = label
        base = os.path.join(self.logs, f"{self.n_log:02d}-{label.replace(' ', '_').replace('/', '_')}")
        c0 = self.server.cpu()
        t0 = time.perf_counter()
        r = self.spawner.run(cmd, env, base + ".stdout", base + ".stderr", timeout or self.a.timeout)
        wall = time.perf_counter() - t0
        server_cpu = self.server.cpu() - c0
        with open(base + ".stdout") as f:
            stdout = f.read()
        with open(base + ".stderr") as f:
            stderr = f.read()
        if r["rc"] != 0:
            # first line: the child's last words (a Python child's exception), then the details
            last = next((ln for ln in reversed((stderr or stdout).splitlines()) if ln.strip()), "")
            raise BenchError(f"{label}: exit {r['rc']}: {last.strip()}\n{' '.join(cmd)}\n"
                             f"{stderr[-3000:]}{stdout[-2000:]}")
        return {"wall_s": wall, "rss_mb": r["maxrss_kb"] / 1024, "cpu_s": r["cpu_s"],
                "server_cpu_s": server_cpu, "stdout": stdout, "stderr": stderr}

    def bridge_env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SQLSERVER_") and k != "RUST_LOG"}
        env.update(SQLSERVER_HOST="127.0.0.1", SQLSERVER_PORT=str(self.server.port), SQLSERVER_DATABASE="master",
                   SQLSERVER_USERNAME="sa", SQLSERVER_PASSWORD="unused-by-the-test-server",
                   SQLSERVER_ENCRYPT="danger_plaintext")
        return env

    def bridge_run(self, label: str, pipeline: str, yaml: str) -> dict:
        path = os.path.join(self.project, "pipelines", pipeline)
        with open(path, "w") as f:
            f.write(yaml)
        m = self.measure(label, [self.a.bridge, "--root", self.project, "--output", "json", "run", path],
                         env=self.bridge_env())
        m["summary"] = json.loads(m["stdout"])
        return m

    def tsql(self, *sql: str) -> None:
        subprocess.run([self.py, os.path.join(HERE, "workers.py"), "tsql", "--port", str(self.server.port), *sql],
                       check=True)

    def record(self, group: str, name: str, rows: int, m: dict, **extra) -> dict:
        r = {"group": group, "name": name, "rows": rows, "wall_s": round(m["wall_s"], 3),
             "rows_per_s": rows / m["wall_s"] if m["wall_s"] > 0 else 0.0,
             "mb_per_s": rows * self.bytes_per_row / m["wall_s"] / 1e6 if m["wall_s"] > 0 else 0.0,
             "rss_mb": round(m["rss_mb"], 1), "cpu_s": round(m["cpu_s"], 2),
             "server_cpu_s": round(m["server_cpu_s"], 2),
             "cpu_per_mrow": m["cpu_s"] / rows * 1e6 if rows else 0.0,
             "server_cpu_per_mrow": m["server_cpu_s"] / rows * 1e6 if rows else 0.0, **extra}
        self.results.append(r)
        log(f"{group} / {name}: {rows} rows in {m['wall_s']:.2f} s = {r['rows_per_s']:,.0f} rows/s, "
            f"peak RSS {m['rss_mb']:.0f} MB, client CPU {m['cpu_s']:.1f} s, server CPU {m['server_cpu_s']:.1f} s")
        return r

    def check(self, what: str, got, want) -> bool:
        ok = got == want
        self.checks.append((what, ok, f"got {got}, expected {want}"))
        log(f"check {what}: {'OK' if ok else 'MISMATCH'} ({got}{'' if ok else f'; expected {want}'})")
        return ok

    def peer(self, peer: str, fn, *args) -> None:
        """Runs fn(*args), the measure(s) of one peer. A failure -- non-zero exit, exception, or an
        output check that fails -- is recorded under "Peers that failed" with its exact text, the
        peer's rows are marked and left out of the ratios, and the run goes on (--check fails on
        it unless the peer is in --allow-fail)."""
        n_results, n_checks = len(self.results), len(self.checks)
        self.label = peer
        try:
            fn(*args)
            bad = [c for c in self.checks[n_checks:] if not c[1]]
            error = "; ".join(f"{what}: {detail}" for what, _, detail in bad)
        except Exception as e:  # any failure of a peer is its result, recorded below
            error = str(e).splitlines()[0] if isinstance(e, BenchError) else f"{type(e).__name__}: {e}"
            error = error.removeprefix(f"{self.label}: ")
        for r in self.results[n_results:]:
            r["peer"] = peer
        if not error:
            return
        self.checks[n_checks:] = [c for c in self.checks[n_checks:] if c[1]]
        for r in self.results[n_results:]:
            r["failed"] = True
        self.failed.append((peer, self.label, error))
        log(f"peer {peer} FAILED ({self.label}): {error}")

    def parquet_files(self, folder: str) -> list[str]:
        return sorted(glob.glob(os.path.join(self.project, folder, "**", "*.parquet"), recursive=True))

    # ------------------------------------------------------------------ phases

    def generate(self) -> None:
        a = self.a
        n = a.rows
        data = os.path.join(self.project, "data")
        t0 = time.perf_counter()
        self.cuts = sorted({n, n // 2, a.python_rows, a.writeback_rows, a.writeback_rows // 2, a.small_rows})
        nbytes, self.src_ck = benchlib.write_parquet(os.path.join(data, "src.parquet"), 0, n, 0, cuts=self.cuts)
        self.bytes_per_row = nbytes / max(n, 1)
        _, up = benchlib.write_parquet(os.path.join(data, "upsert.parquet"), n // 2, n, 1, cuts=[n // 2 + n])
        self.upsert_ck = up[n // 2 + n]
        k = a.writeback_rows
        benchlib.write_parquet(os.path.join(data, "py_src.parquet"), 0, k, 0)  # = the first k rows of src
        _, pu = benchlib.write_parquet(os.path.join(data, "py_upsert.parquet"), k // 2, k, 1, cuts=[k // 2 + k])
        self.py_upsert_ck = pu[k // 2 + k]
        log(f"generated {n} rows ({self.bytes_per_row:.0f} Arrow bytes/row) + upsert rows in "
            f"{time.perf_counter() - t0:.1f} s (not measured)")

    def writeback_insert(self) -> None:
        n = self.a.rows
        self.tsql(benchlib.create_table_sql("dbo.bench"))
        m = self.bridge_run("bridge insert", "load.yaml", f"""name: bench_load
steps:
  - id: rows
    source: {{type: parquet, path: data/src.parquet}}
  - id: load
    sink: {{type: sqlserver, from: rows, table: dbo.bench, mode: insert}}
""")
        self.record("write-back", "bridge sqlserver sink, insert", n, m)
        self.check("bridge insert: dbo.bench equals the Parquet input",
                   benchlib.checksum_sqlite(self.server.db, "bench"), self.src_ck[n])

    def extraction(self) -> None:
        a, n, p = self.a, self.a.rows, self.a.partitions
        self.peer("raw-tds", self.raw_read)
        self.bridge_extract("bridge run", "bridge_1", "{type: sqlserver, table: dbo.bench}", n)
        if "bridge-tiberius" in a.peers:
            self.bridge_extract(TIBERIUS, "bridge_tiberius",
                                "{type: sqlserver, table: dbo.bench, connection: {read_driver: tiberius}}", n)
        if p > 1:
            self.bridge_extract(f"bridge run, partition: {p}", f"bridge_p{p}",
                                f"{{type: sqlserver, table: dbo.bench, partition: {{column: id, partitions: {p}}}}}", n)
        self.peer("connectorx", self.extract_peer, "ConnectorX -> Parquet", "connectorx_extract.py", [])
        if p > 1:
            self.peer("connectorx", self.extract_peer, f"ConnectorX -> Parquet, {p} partitions",
                      "connectorx_extract.py", ["--partition-on", "id", "--partition-num", str(p)])
        batch = ["--batch-size", str(a.peer_batch_rows)]
        if "arrow-odbc" in a.peers:
            self.peer("arrow-odbc", self.extract_peer, "arrow-odbc (FreeTDS ODBC) -> ParquetWriter",
                      "arrow_odbc_extract.py", batch)
        if "mssql-python" in a.peers:
            self.peer("mssql-python", self.extract_peer, "mssql-python arrow_reader -> ParquetWriter",
                      "mssql_python_extract.py", batch)
        if not a.skip_python:
            k = a.python_rows
            for drv in ["pymssql"] + (["pytds"] if a.python_tds else []):
                self.peer(drv, self.extract_peer, f"{drv} fetchall -> Polars write_parquet", "python_extract.py",
                          ["--driver", drv], k)
        if "parquet-encode" in a.peers:
            self.peer("parquet-encode", self.encode_limit)
        if a.small_rows < n:
            s = a.small_rows
            small_source = f'{{type: sqlserver, sql: "SELECT * FROM dbo.bench WHERE id < {s}"}}'
            self.bridge_extract(f"bridge run, first {s} rows (RSS scaling)", "bridge_small", small_source, s)
            self.rss_repeats(small_source)

    def rss_repeats(self, small_source: str) -> None:
        """Peak RSS is the maximum of a noisy curve (it peaks as each row group is flushed), so the
        RSS-scaling ratio compares medians: `bridge run` on N rows and on the first --small-rows
        rows, each run --rss-runs times in all (the measured runs above included)."""
        self.rss_runs = {"full": [self.find("extract", "bridge run")["rss_mb"]],
                         "small": [self.find("extract", "bridge run, first", prefix=True)["rss_mb"]]}
        for i in range(self.a.rss_runs - 1):
            for key, source in (("full", "{type: sqlserver, table: dbo.bench}"), ("small", small_source)):
                name = f"bridge_rss_{key}"
                m = self.bridge_run(f"RSS repeat {i + 2}: {key}", f"{name}.yaml", f"""name: {name}
steps:
  - id: t
    source: {source}
  - id: out
    sink: {{type: volume, from: t, destination: out, path: {name}}}
""")
                shutil.rmtree(os.path.join(self.project, "out", name), ignore_errors=True)
                self.rss_runs[key].append(round(m["rss_mb"], 1))
        log(f"peak RSS runs (MB): {self.rss_runs}")

    def bridge_extract(self, label: str, name: str, source: str, rows: int) -> None:
        folder = f"out/{name}"
        shutil.rmtree(os.path.join(self.project, folder), ignore_errors=True)
        m = self.bridge_run(label, f"{name}.yaml", f"""name: {name}
steps:
  - id: t
    source: {source}
  - id: out
    sink: {{type: volume, from: t, destination: out, path: {name}}}
""")
        self.record("extract", label, rows, m)
        self.check(f"{label}: Parquet equals dbo.bench", benchlib.checksum_parquet(self.parquet_files(folder)),
                   self.src_ck[rows])
        shutil.rmtree(os.path.join(self.project, folder), ignore_errors=True)

    def raw_read(self) -> None:
        """The test server's ceiling: a TDS client that reads the packets and decodes nothing."""
        n = self.a.rows
        m = self.measure("raw TDS read", [self.py, os.path.join(BASE, "raw_tds_read.py"), "--port",
                                          str(self.server.port), "--query", "SELECT * FROM dbo.bench"])
        rows = json.loads(m["stdout"].strip().splitlines()[-1])["rows"]
        self.record("extract", "server ceiling: raw TDS client, discards rows", rows, m)
        self.check("raw TDS read row count", rows, n)

    def extract_peer(self, label: str, script: str, extra: list[str], rows: int | None = None) -> None:
        """One extraction peer (baselines/SCRIPT) of the first `rows` ids (default all) to one Parquet file."""
        n = self.a.rows
        rows = n if rows is None else rows
        q = "SELECT * FROM dbo.bench" + ("" if rows >= n else f" WHERE id < {rows}")
        out = os.path.join(self.work, "peer.parquet")
        m = self.measure(label, [self.py, os.path.join(BASE, script), "--port", str(self.server.port), "--query", q,
                                 "--out", out, *extra])
        self.record("extract", label, rows, m, sample=rows < n)
        self.check(f"{label}: Parquet equals dbo.bench" + ("" if rows >= n else f" (id < {rows})"),
                   benchlib.checksum_parquet([out]), self.src_ck[rows])
        os.remove(out)

    def encode_limit(self) -> None:
        """pyarrow writes the in-memory table: wall and CPU of the write alone, no server."""
        n = self.a.rows
        out = os.path.join(self.work, "encode.parquet")
        m = self.measure("parquet encode", [self.py, os.path.join(BASE, "parquet_encode.py"), "--parquet",
                                            os.path.join(self.project, "data", "src.parquet"), "--out", out])
        j = json.loads(m["stdout"].strip().splitlines()[-1])
        m.update(wall_s=j["seconds"], cpu_s=j["encode_cpu_s"], server_cpu_s=0.0)
        self.record("extract", ENCODE_LIMIT, j["rows"], m)
        self.check(f"{ENCODE_LIMIT}: Parquet equals the data set", benchlib.checksum_parquet([out]), self.src_ck[n])
        os.remove(out)

    def operator(self) -> None:
        """The Python operator in-process (phase 7 of the module doc)."""
        n, k = self.a.rows, self.a.writeback_rows
        self.peer("operator", self.arrow_extract, "operator", OP_EXTRACT)
        self.peer("connectorx", self.arrow_extract, "connectorx", CX_ARROW)
        data = os.path.join(self.project, "data")
        self.peer("operator", self.operator_sync, "bench_op_sample", k, os.path.join(data, "py_src.parquet"))
        if n > k:
            self.peer("operator", self.operator_sync, "bench_op", n, os.path.join(data, "src.parquet"))

    def arrow_extract(self, client: str, label: str) -> None:
        """All of dbo.bench, which holds the upserted rows by now (1.5 N rows)."""
        n = self.a.rows
        m = self.measure(label, [self.py, os.path.join(BASE, "arrow_extract.py"), "--client", client,
                                 "--port", str(self.server.port), "--query", "SELECT * FROM dbo.bench"])
        j = json.loads(m["stdout"].strip().splitlines()[-1])
        m.update(wall_s=j["seconds"], cpu_s=j["cpu_s"])
        self.record("operator", label, j["rows"], m)
        self.check(f"{label}: rows equal dbo.bench after the upsert",
                   benchlib.Checksum(j["checksum_rows"], j["checksum"]), self.src_ck[n // 2] + self.upsert_ck)

    def operator_sync(self, table: str, rows: int, parquet: str) -> None:
        self.tsql(f"IF OBJECT_ID('{table}') IS NOT NULL DROP TABLE {table}", benchlib.create_table_sql(table))
        label = f"{OP_SYNC}" + ("" if rows >= self.a.rows else ", python-tds bulk's rows")
        m = self.measure(label, [self.py, os.path.join(BASE, "operator_sync.py"), "--parquet", parquet,
                                 "--table", table, "--port", str(self.server.port)])
        j = json.loads(m["stdout"].strip().splitlines()[-1])
        m.update(wall_s=j["seconds"], cpu_s=j["cpu_s"])
        self.record("operator", label, rows, m, sample=rows < self.a.rows)
        self.check(f"{label}: rows written", j["rows"], rows)
        self.check(f"{label}: {table} equals the Parquet input", benchlib.checksum_sqlite(self.server.db, table),
                   self.src_ck[rows])

    def writeback_upsert(self) -> None:
        n = self.a.rows
        m = self.bridge_run("bridge upsert", "upsert.yaml", f"""name: bench_upsert
steps:
  - id: rows
    source: {{type: parquet, path: data/upsert.parquet}}
  - id: upsert
    sink: {{type: sqlserver, from: rows, table: dbo.bench, mode: upsert, primary_keys: [id]}}
""")
        self.record("write-back", f"bridge sqlserver sink, upsert ({n // 2 + n % 2} updates)", n, m)
        self.check("bridge upsert: dbo.bench equals the expected table",
                   benchlib.checksum_sqlite(self.server.db, "bench"), self.src_ck[n // 2] + self.upsert_ck)

    def python_writeback(self) -> None:
        """The Python write-back baselines on the first --writeback-rows rows (py_src/py_upsert.parquet)."""
        k = self.a.writeback_rows
        data = os.path.join(self.project, "data")
        for method in self.a.writeback_methods:
            table = "bench_py_" + method.replace("-", "_")
            self.peer(method, self.writeback_peer, method, "insert", table, k, os.path.join(data, "py_src.parquet"),
                      self.src_ck[k], True)
            if method == "pytds-bulk":
                self.peer(method, self.writeback_peer, method, "upsert", table, k,
                          os.path.join(data, "py_upsert.parquet"), self.src_ck[k // 2] + self.py_upsert_ck)

    def bulk_writeback(self) -> None:
        """The bulk peers on all N rows, the bridge's own input (src/upsert.parquet): insert into a
        fresh table, then upsert into it."""
        n = self.a.rows
        data = os.path.join(self.project, "data")
        src, up = os.path.join(data, "src.parquet"), os.path.join(data, "upsert.parquet")
        for method in [m for m in BULK_PEERS if m in self.a.peers]:
            table = "bench_peer_" + method.replace("-", "_")
            want = (self.src_ck[n], self.src_ck[n // 2] + self.upsert_ck)
            if method == "freebcp":
                self.freebcp_want = None
                self.peer(method, self.freebcp_input, src, up)
                if self.freebcp_want is None:
                    continue
                want = self.freebcp_want
            self.peer(method, self.writeback_peer, method, "insert", table, n, src, want[0], True)
            self.peer(method, self.writeback_peer, method, "upsert", table, n, up, want[1])
            for f in (src, up):
                if os.path.exists(tsv_of(f)):
                    os.remove(tsv_of(f))

    def freebcp_input(self, src: str, up: str) -> None:
        """freebcp's input files (tab-separated exports of the Parquet files, not timed) and its
        expected tables: freebcp trims trailing blanks off `note` (FINDINGS.md), so they are trimmed too."""
        t0 = time.perf_counter()
        for f in (src, up):
            workers.export_tsv(f, tsv_of(f))
        log(f"exported the freebcp input files in {time.perf_counter() - t0:.1f} s (not measured)")
        n = self.a.rows
        self.freebcp_want = (self.src_ck[n] + benchlib.rtrim_delta(src, "note"),
                             self.src_ck[n // 2] + benchlib.rtrim_delta(src, "note", below=n // 2)
                             + self.upsert_ck + benchlib.rtrim_delta(up, "note"))

    def writeback_peer(self, method: str, mode: str, table: str, rows: int, parquet: str, want, create=False) -> None:
        """One write-back peer: `workers.py writeback`, except freebcp's insert, timed as the bare
        freebcp command. Upsert: into a staging table, then the bridge's UPDATE/INSERT."""
        if create:
            self.tsql(f"IF OBJECT_ID('{table}') IS NOT NULL DROP TABLE {table}", benchlib.create_table_sql(table))
        tsv = tsv_of(parquet)
        batch = self.a.freebcp_batch or max(rows, 1)
        if method == "freebcp" and mode == "insert":
            m = self.measure("freebcp insert", workers.freebcp_command(table, tsv, self.server.port, batch,
                                                                       self.a.freebcp), env=workers.freebcp_env())
            workers.freebcp_check(0, m["stdout"], m["stderr"], rows)
        else:
            cmd = [self.py, os.path.join(HERE, "workers.py"), "writeback", "--method", method, "--mode", mode,
                   "--parquet", parquet, "--table", table, "--port", str(self.server.port)]
            if method == "mssql-python-bulk":
                cmd += ["--batch-rows", str(self.a.peer_batch_rows)]
            if method == "freebcp":
                cmd += ["--tsv", tsv, "--freebcp", self.a.freebcp, "--freebcp-batch", str(batch)]
            m = self.measure(f"{method} {mode}", cmd)
        stage = "#stage" if method in PY_WRITEBACK else f"{table}_stage"
        name = (f"{method}, insert" if mode == "insert" else
                f"{method} into {stage} + UPDATE/INSERT, upsert ({rows // 2 + rows % 2} updates)")
        self.record("write-back", name, rows, m, sample=rows < self.a.rows)
        self.check(f"{method} {mode}: {table} equals the expected table",
                   benchlib.checksum_sqlite(self.server.db, table), want)

    def events(self) -> None:
        e = self.a.events
        proj = os.path.join(self.work, "events")
        benchlib.events_project(proj, self.a.bridge, self.bridge_env(), TOKEN)
        self.tsql("IF OBJECT_ID('ev_target') IS NOT NULL DROP TABLE ev_target",
                  benchlib.create_table_sql("dbo.ev_target").replace(" PRIMARY KEY", ""))
        err = open(os.path.join(self.logs, "serve.stderr"), "w")
        c0 = self.server.cpu()
        serve = subprocess.Popen([self.a.bridge, "--root", proj, "serve", "--listen", "127.0.0.1:0", "--no-schedules"],
                                 stdout=subprocess.PIPE, stderr=err, text=True, env=self.bridge_env())
        try:
            line = serve.stdout.readline()
            if not line.startswith("listening on "):
                raise BenchError(f"bridge serve did not start: {line!r}")
            base = line.split("listening on ", 1)[1].strip()
            threading.Thread(target=serve.stdout.read, daemon=True).start()

            import urllib.request

            def call(method: str, path: str, body: dict | None = None) -> dict:
                req = urllib.request.Request(base + path, method=method,
                                             data=json.dumps(body).encode() if body is not None else None,
                                             headers={"Authorization": f"Bearer {TOKEN}",
                                                      "Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=60) as r:
                    return json.loads(r.read())

            lat, apply_s, seen = [], [], []
            failed = 0
            t_all = time.perf_counter()
            for _ in range(e):
                t_submit = time.perf_counter()
                ev_id = call("POST", "/sync", {"operation": "INSERT", "source_table": "main.bench.ev",
                                               "target_table": "dbo.ev_target"})["id"]
                t_started = None
                deadline = time.monotonic() + 120
                while True:
                    ev = call("GET", f"/events/{ev_id}")
                    if t_started is None and ev["status"] != "pending":
                        t_started = time.perf_counter()
                    if ev["status"] in ("completed", "failed"):
                        break
                    if time.monotonic() > deadline:
                        raise BenchError(f"event {ev_id} did not finish: {ev}")
                    time.sleep(0.02)
                if ev["status"] != "completed":
                    failed += 1
                    log(f"event {ev_id} failed: {ev.get('error_message')}")
                    continue
                created = dt.datetime.fromisoformat(ev["created_at"].replace("Z", "+00:00"))
                started = dt.datetime.fromisoformat(ev["started_at"].replace("Z", "+00:00"))
                done = dt.datetime.fromisoformat(ev["completed_at"].replace("Z", "+00:00"))
                lat.append((started - created).total_seconds())
                apply_s.append((done - started).total_seconds())
                seen.append((t_started or time.perf_counter()) - t_submit)
            wall = time.perf_counter() - t_all
            serve_cpu = proc_cpu(serve.pid)
            serve_rss = proc_hwm_mb(serve.pid)
        finally:
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(60)
            except subprocess.TimeoutExpired:
                serve.kill()
                serve.wait()
        conn = __import__("sqlite3").connect(f"file:{self.server.db}?mode=ro", uri=True)
        landed = conn.execute('SELECT COUNT(*) FROM "ev_target"').fetchone()[0]
        conn.close()
        self.checks.append((f"events: {e} submitted, {e - failed} completed, {landed} rows written",
                            failed == 0 and landed == 10 * e, f"failed={failed}, rows={landed}"))

        def pct(xs: list[float], q: float) -> float:
            xs = sorted(xs)
            return xs[min(len(xs) - 1, max(0, int(round(q * len(xs) + 0.5)) - 1))] if xs else float("nan")

        self.event_stats = {"events": e, "completed": len(lat), "p50_s": pct(lat, 0.5), "p99_s": pct(lat, 0.99),
                            "max_s": max(lat) if lat else float("nan"),
                            "apply_p50_s": pct(apply_s, 0.5), "client_seen_p50_s": pct(seen, 0.5),
                            "wall_s": wall, "serve_rss_mb": serve_rss, "serve_cpu_s": serve_cpu,
                            "server_cpu_s": self.server.cpu() - c0}
        log(f"events: p50 {self.event_stats['p50_s']:.3f} s, p99 {self.event_stats['p99_s']:.3f} s "
            f"(started_at - created_at over {len(lat)} events); apply p50 {self.event_stats['apply_p50_s']:.3f} s")

    # ------------------------------------------------------------------ report

    def find(self, group: str, name: str, prefix: bool = False) -> dict | None:
        """The result of a path (the first whose name starts with `name`, with prefix), unless it failed."""
        for r in self.results:
            if r["group"] == group and not r.get("failed") and (r["name"].startswith(name) if prefix
                                                                  else r["name"] == name):
                return r
        return None

    def report(self) -> str:
        a = self.a
        ts = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
        lines = [f"### {ts} — N = {a.rows:,} rows, {machine()}", "",
                 f"bridge `{a.bridge}` ({profile_of(a.bridge)}), tds-test-server `{a.server}` "
                 f"({profile_of(a.server)}), git {git_rev()}. MB/s = rows/s x {self.bytes_per_row:.0f} "
                 f"B/row (the data set's Arrow size). Wall time includes process start and connect (the "
                 f"Parquet encode limit's: the write alone). CPU s/M rows = CPU seconds per million rows.", ""]
        lines += self.results_table() + [""] + self.ratio_lines() + [""] + self.failed_lines()
        bad = [c for c in self.checks if not c[1]]
        lines.append(f"Output checks (row count + order-independent checksum vs the generated data): "
                     f"{len(self.checks) - len(bad)}/{len(self.checks)} OK"
                     + ("" if not bad else "; FAILED: " + "; ".join(f"{w} ({d})" for w, _, d in bad)) + ".")
        lines.append("")
        return "\n".join(lines)

    def results_table(self) -> list[str]:
        lines = ["| phase | path | rows | wall s | rows/s | MB/s | peak RSS MB | client CPU s | server CPU s | "
                 "client CPU s/M rows | server CPU s/M rows |",
                 "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in self.results:
            name = r["name"] + (" (sample)" if r.get("sample") else "") + (" **(failed)**" if r.get("failed") else "")
            lines.append(f"| {r['group']} | {name} | {r['rows']:,} | {r['wall_s']:.2f} | {r['rows_per_s']:,.0f} | "
                         f"{r['mb_per_s']:.1f} | {r['rss_mb']:.0f} | {r['cpu_s']:.1f} | {r['server_cpu_s']:.1f} | "
                         f"{r['cpu_per_mrow']:.2f} | {r['server_cpu_per_mrow']:.2f} |")
        if hasattr(self, "event_stats"):
            s = self.event_stats
            lines.append(f"| events | bridge serve, POST /sync one at a time: started_at - created_at | "
                         f"{s['completed']} events | {s['wall_s']:.1f} | p50 {s['p50_s'] * 1000:.0f} ms | "
                         f"p99 {s['p99_s'] * 1000:.0f} ms | {s['serve_rss_mb']:.0f} | {s['serve_cpu_s']:.1f} | "
                         f"{s['server_cpu_s']:.1f} | | |")
        return lines

    def ratio_lines(self) -> list[str]:
        a = self.a
        lines = ["Ratios (rows/s: bridge / peer; CPU/row: peer / bridge, so above 1x the bridge is ahead in both, "
                 "except bridge / Parquet encode limit; peers on a sample ran on fewer rows, see the table):", "",
                 "| ratio | value | target | met |" if not a.check else
                 "| ratio | value | target | met (not evaluated with --check) |",
                 "|---|---:|---|---|"]

        def add(label: str, v: float, target: float | None = None, higher: bool = True) -> None:
            target = None if a.check else target
            met = "" if target is None else ("yes" if (v >= target if higher else v <= target) else "**no**")
            goal = "" if target is None else f"{'>=' if higher else '<='} {target}x"
            lines.append(f"| {label} | {v:.2f}x | {goal} | {met} |")

        def ratio(label: str, num, den, target: float | None = None) -> None:  # rows/s, num / den
            if num and den:
                add(label, num["rows_per_s"] / den["rows_per_s"], target)

        def cpu(label: str, num, den, target: float | None = None, higher: bool = True) -> None:  # CPU/row
            if num and den and den["cpu_per_mrow"] > 0:
                add(label, num["cpu_per_mrow"] / den["cpu_per_mrow"], target, higher)

        self.extract_ratios(ratio, cpu)
        self.writeback_ratios(ratio, cpu)
        self.operator_ratios(ratio, cpu)
        lines += self.rss_lines()
        return lines

    def extract_ratios(self, ratio, cpu) -> None:
        p = self.a.partitions
        b1 = self.find("extract", "bridge run")
        bp = self.find("extract", f"bridge run, partition: {p}") if p > 1 else None
        c1 = self.find("extract", "ConnectorX -> Parquet")
        cp = self.find("extract", f"ConnectorX -> Parquet, {p} partitions") if p > 1 else None
        ao = self.find("extract", "arrow-odbc", prefix=True)
        mp = self.find("extract", "mssql-python", prefix=True)
        py = self.find("extract", "pymssql fetchall", prefix=True)
        raw = self.find("extract", "server ceiling", prefix=True)
        enc = self.find("extract", ENCODE_LIMIT)
        best_b = max([x for x in (b1, bp) if x], key=lambda r: r["rows_per_s"], default=None)
        best_c = max([x for x in (c1, cp) if x], key=lambda r: r["rows_per_s"], default=None)
        peers = [x for x in (c1, cp, ao, mp) if x]
        fastest = max(peers, key=lambda r: r["rows_per_s"], default=None)
        leanest = min(peers, key=lambda r: r["cpu_per_mrow"], default=None)
        ratio("extract: bridge / ConnectorX (1 connection each)", b1, c1, 1.5)
        ratio(f"extract: bridge / ConnectorX ({p} partitions each)", bp, cp, 1.5)
        ratio("extract: best bridge / best ConnectorX", best_b, best_c, 1.5)
        ratio("extract: bridge (1 connection) / arrow-odbc", b1, ao)
        ratio("extract: bridge (1 connection) / mssql-python", b1, mp)
        if fastest:
            ratio(f"extract: best bridge / fastest peer ({fastest['name']})", best_b, fastest)
        ratio("extract: bridge (1 connection) / pymssql + Polars", b1, py, 10)
        ratio("extract: best bridge / pymssql + Polars", best_b, py, 10)
        ratio("extract: bridge (1 connection) / raw TDS client (server ceiling)", b1, raw)
        ratio("extract: best bridge / raw TDS client (server ceiling)", best_b, raw)
        ratio("extract: ConnectorX / raw TDS client (server ceiling)", c1, raw)
        if leanest:
            cpu(f"extract CPU/row: leanest peer ({leanest['name']}) / bridge (1 connection)", leanest, b1, 1.5)
        cpu("extract CPU/row: bridge (1 connection) / Parquet encode limit", b1, enc, 2, higher=False)
        tib = self.find("extract", TIBERIUS)
        ratio("extract: bridge (mssql-tds, the default) / bridge reading with tiberius", b1, tib)
        cpu("extract CPU/row: bridge reading with tiberius / bridge (mssql-tds, the default)", tib, b1)

    def writeback_ratios(self, ratio, cpu) -> None:
        bi = self.find("write-back", "bridge sqlserver sink, insert")
        bu = self.find("write-back", "bridge sqlserver sink, upsert", prefix=True)
        bulk = [m for m in BULK_PEERS if m in self.a.peers]
        for method in self.a.writeback_methods + bulk:
            ratio(f"write-back insert: bridge / {method}", bi, self.find("write-back", f"{method}, insert"),
                  5 if method == "pymssql-executemany" else None)
        upserts = [m for m in ("pytds-bulk", *bulk) if m in self.a.writeback_methods + bulk]
        for method in upserts:
            ratio(f"write-back upsert: bridge / {method} + UPDATE/INSERT", bu,
                  self.find("write-back", f"{method} into", prefix=True))
        for mode, bridge, name in (("insert", bi, "{}, insert"), ("upsert", bu, "{} into")):
            peers = [self.find("write-back", name.format(m), prefix=True) for m in ("pytds-bulk", *BULK_PEERS)]
            leanest = min([x for x in peers if x], key=lambda r: r["cpu_per_mrow"], default=None)
            if leanest:
                cpu(f"write-back {mode} CPU/row: leanest bulk peer ({leanest['peer']}) / bridge", leanest, bridge, 2)

    def operator_ratios(self, ratio, cpu) -> None:
        op, cx = self.find("operator", OP_EXTRACT), self.find("operator", CX_ARROW)
        ratio("operator: extract_to_arrow / ConnectorX read_sql arrow", op, cx, 1.5)
        cpu("operator CPU/row: ConnectorX read_sql arrow / extract_to_arrow", cx, op, 1)
        sync = self.find("operator", f"{OP_SYNC}, python-tds", prefix=True)
        ratio("operator: sync_to_sql_server / python-tds bulk copy (same rows)", sync,
              self.find("write-back", "pytds-bulk, insert"), 10)
        cpu("operator CPU/row: python-tds bulk copy / sync_to_sql_server (same rows)",
            self.find("write-back", "pytds-bulk, insert"), sync)
        ratio("operator: sync_to_sql_server / bridge sqlserver sink, insert (all rows)",
              self.find("operator", OP_SYNC), self.find("write-back", "bridge sqlserver sink, insert"))

    def rss_lines(self) -> list[str]:
        a, p, lines = self.a, self.a.partitions, []

        def met(ok: bool) -> str:
            return "" if a.check else "yes" if ok else "**no**"

        b1 = self.find("extract", "bridge run")
        bp = self.find("extract", f"bridge run, partition: {p}") if p > 1 else None
        small = self.find("extract", "bridge run, first", prefix=True)
        if b1:
            lines.append(f"| peak RSS of `bridge run` at {a.rows:,} rows | {b1['rss_mb']:.0f} MB | "
                         f"< {RSS_TARGET_MB} MB | {met(b1['rss_mb'] < RSS_TARGET_MB)} |")
        if b1 and small:
            runs = getattr(self, "rss_runs", {"full": [b1["rss_mb"]], "small": [small["rss_mb"]]})
            g = statistics.median(runs["full"]) / statistics.median(runs["small"])
            shown = " / ".join(", ".join(f"{v:.0f}" for v in runs[k]) for k in ("full", "small"))
            # Below one Parquet row group (the volume sink's default is 262,144 rows) the writer's
            # buffer grows with the rows, so flatness is only meaningful from there on.
            flat = small["rows"] >= 262_144
            lines.append(f"| RSS scaling: peak RSS `bridge run` {a.rows:,} rows / {small['rows']:,} rows, "
                         f"median of {len(runs['full'])} runs each ({shown} MB) | "
                         f"{g:.3f}x | <= 1.10x (10M / 1M rows) | "
                         f"{met(g <= 1.10) if flat else 'n/a: below one row group'} |")
        if bp:
            lines.append(f"| peak RSS of `bridge run`, {p} partitions | {bp['rss_mb']:.0f} MB | < {RSS_TARGET_MB} MB | "
                         f"{met(bp['rss_mb'] < RSS_TARGET_MB)} |")
        if hasattr(self, "event_stats"):
            s = self.event_stats
            lines.append(f"| event latency p50 (p99) | {s['p50_s'] * 1000:.0f} ms ({s['p99_s'] * 1000:.0f} ms) | "
                         f"p50 < 1 s | {met(s['p50_s'] < 1)} |")
        return lines

    def failed_lines(self) -> list[str]:
        if not self.failed:
            return []
        kept = self.a.keep or self.a.workdir
        lines = [f"Peers that failed (left out of the ratios; their output is under {self.logs}"
                 f"{'' if kept else ', removed after the run unless --keep'}):", ""]
        for peer, label, error in self.failed:
            allowed = " (allowed by --allow-fail)" if peer in self.a.allow_fail else ""
            lines.append(f"- `{peer}`, {label}{allowed}: {error.replace(chr(10), ' ')}")
        return lines + [""]

    def run(self) -> int:
        a = self.a
        log(f"work dir {self.work}; bridge {a.bridge}; server {a.server}")
        self.generate()
        self.server = TdsServer(a.server, os.path.join(self.work, "bench.db"), self.logs)
        log(f"tds-test-server on port {self.server.port}")
        try:
            phases = [("write-back insert", self.writeback_insert), ("extraction", self.extraction),
                      ("write-back upsert", self.writeback_upsert)]
            if any(m in a.peers for m in BULK_PEERS):
                phases.append(("bulk write-back peers", self.bulk_writeback))
            if not a.skip_python:
                phases.append(("python write-back", self.python_writeback))
            if "operator" in a.peers:
                phases.append(("operator", self.operator))
            if a.events > 0:
                phases.append(("events", self.events))
            for name, fn in phases:
                try:
                    fn()
                except BenchError as e:
                    self.checks.append((f"{name} ran", False, str(e).splitlines()[0]))
                    log(f"FAILED {name}: {e}")
                    if name == "write-back insert":
                        break
        finally:
            self.server.stop()
        text = self.report()
        print(text)
        failed = [c for c in self.checks if not c[1]]
        # outside --check a failed peer is a result (listed in the report), in --check a failure
        blocking = sorted({f[0] for f in self.failed if a.check and f[0] not in a.allow_fail})
        if not a.check and not a.no_append:
            with open(a.results, "a") as f:
                f.write("\n" + text)
            log(f"appended to {a.results}")
        if not a.keep and not a.workdir:
            shutil.rmtree(self.work, ignore_errors=True)
        if failed or blocking:
            peers = f" and peer(s) not in --allow-fail: {', '.join(blocking)}" if blocking else ""
            log(f"{len(failed)} check(s) failed{peers}; logs under {self.logs}"
                + ("" if a.keep or a.workdir else " (removed; use --keep)"))
            return 1
        return 0


def tsv_of(parquet: str) -> str:
    """Where freebcp's tab-separated export of a Parquet file goes."""
    return parquet.removesuffix(".parquet") + ".tsv"


def profile_of(path: str) -> str:
    parts = os.path.normpath(path).split(os.sep)
    return "release" if "release" in parts else "debug" if "debug" in parts else "?"


def git_rev() -> str:
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except OSError:
        return "?"


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    try:
        load = "load %.1f" % os.getloadavg()[0]
    except OSError:
        load = ""
    return f"{platform.node()}: {os.cpu_count()} cores {cpu}, {mem:.0f} GiB, {load} at start"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=10_000_000, help="rows of the data set (default 10,000,000)")
    p.add_argument("--check", action="store_true",
                   help="CI mode: verify every output, exit 1 on any mismatch; no targets, no RESULTS.md")
    p.add_argument("--bridge", default=default_binary("bridge"),
                   help="bridge binary (default $CARGO_TARGET_DIR/release/bridge, else debug)")
    p.add_argument("--server", default=default_binary("tds-test-server"), help="tds-test-server binary (same default)")
    p.add_argument("--partitions", type=int, default=2, help="connections of the partitioned runs (default 2)")
    p.add_argument("--python-rows", type=int,
                   help="rows the Python extraction reads (first ids; default min(N, 1,000,000): it holds "
                        "every row as Python objects, ~1.5 KB/row)")
    p.add_argument("--writeback-rows", type=int,
                   help="rows the Python write-back baselines write (default min(N, 50,000); --check: 5,000)")
    p.add_argument("--small-rows", type=int, help="rows of the RSS-scaling extraction (default N/10)")
    p.add_argument("--rss-runs", type=int, default=3,
                   help="runs of each size behind the RSS-scaling ratio, which compares medians (default 3)")
    p.add_argument("--skip-python", action="store_true", help="no Python extraction or write-back baselines")
    p.add_argument("--python-tds", action="store_true", help="also the python-tds + Polars extraction path")
    p.add_argument("--writeback-methods", default=",".join(PY_WRITEBACK),
                   help="Python write-back baselines on --writeback-rows rows (comma-separated)")
    p.add_argument("--peers", default=",".join(OPTIONAL_PEERS),
                   help=f"which of the peers {', '.join(OPTIONAL_PEERS)} run (comma-separated; default all; "
                        f"ConnectorX and the raw TDS read always run)")
    p.add_argument("--allow-fail", action="append", default=[], metavar="PEER",
                   help=f"--check: a failure of this peer does not fail the check (repeatable or comma-separated; "
                        f"default none); peers: {', '.join(PEERS)}")
    p.add_argument("--peer-batch-rows", type=int, default=65_536,
                   help="rows per Arrow batch of arrow-odbc, mssql-python and mssql-python-bulk (default 65,536)")
    p.add_argument("--freebcp", default="freebcp", help="the freebcp binary (FreeTDS; default from PATH)")
    p.add_argument("--freebcp-batch", type=int, default=0,
                   help="freebcp -b: rows per committed batch (default 0: all rows in one, one transaction "
                        "like the bridge's sink)")
    p.add_argument("--events", type=int, help="sync events for the latency measure (default 100; --check: 5)")
    p.add_argument("--workdir", help="keep everything in this folder (default a temp folder, removed)")
    p.add_argument("--keep", action="store_true", help="keep the temp folder")
    p.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"))
    p.add_argument("--no-append", action="store_true", help="do not append to RESULTS.md")
    p.add_argument("--timeout", type=float, default=3600, help="seconds any one child may run")
    a = p.parse_args()
    n = a.rows
    a.python_rows = min(n, a.python_rows or 1_000_000)
    a.writeback_rows = min(n, a.writeback_rows or (5_000 if a.check else 50_000))
    a.small_rows = min(n, a.small_rows or max(1, n // 10))
    a.events = a.events if a.events is not None else (5 if a.check else 100)
    a.writeback_methods = [m for m in a.writeback_methods.split(",") if m]
    a.peers = [m for m in a.peers.split(",") if m]
    a.allow_fail = [m for arg in a.allow_fail for m in arg.split(",") if m]
    for name, given, known in (("--peers", a.peers, OPTIONAL_PEERS), ("--allow-fail", a.allow_fail, PEERS),
                               ("--writeback-methods", a.writeback_methods, PY_WRITEBACK)):
        unknown = [m for m in given if m not in known]
        if unknown:
            p.error(f"{name}: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    for b in (a.bridge, a.server):
        if not os.access(b, os.X_OK):
            p.error(f"{b} not found: build it (cargo build --release -p sql-databricks-bridge -p tds-test-server)")
    spawner = Spawner()
    global benchlib, workers
    import benchlib as _benchlib
    import workers as _workers

    benchlib, workers = _benchlib, _workers
    try:
        return Bench(a, spawner).run()
    finally:
        spawner.close()


if __name__ == "__main__":
    sys.exit(main())
