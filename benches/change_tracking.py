"""Change tracking against a full reload: the nightly run of a big table when 1 % of its rows
changed, in the same run, on the TDS test server (crates/tds-test-server).

  1. dbo.ct gets N rows of benchlib's data set (--rows, default 1,000,000; 10 columns, key `id`)
     through the bridge's sqlserver sink (not measured); change tracking and snapshot isolation
     are enabled on it;
  2. two Delta tables are made from it (measured, for information): `lake/ct` by the
     change-tracking source's first run (a snapshot merged by key) and `lake/full` by a full
     extract with `mode: overwrite`;
  3. --changed percent of the rows change (default 1: half updated, half deleted): spread over
     the whole key range (--pattern spread, the default: every file of the Delta table holds
     changed keys) or the highest keys (--pattern recent: recent rows, as nightly changes often
     are); then both tables are brought up to date (measured, side by side):
       change tracking  `incremental: {mode: change_tracking}` -> delta `mode: merge`, keys [id]
       full reload      the whole table -> delta `mode: overwrite`
  4. both Delta tables, read with the `deltalake` Python package (delta-rs' reader), must equal
     the source table read straight from the test server's SQLite file: row count and an
     order-independent checksum over every column.
Reported: wall s, client CPU s (the bridge process, wait4), peak RSS, the test server's CPU s,
and the ratios full / change tracking for wall time and client CPU (target >= 20x).

Usage (the bench venv of benches/check.sh):
  python benches/change_tracking.py [--rows 1000000] [--changed 1] [--pattern spread|recent]
                                    [--target-file-size BYTES] [--bridge PATH] [--server PATH]
                                    [--results benches/RESULTS.md] [--keep]
Exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from events_burst import bridge_env, tsql  # noqa: E402
from run import BenchError, Spawner, TdsServer, default_binary, log  # noqa: E402

benchlib = None  # imported by main() after the spawner is forked (see run.Spawner)

TARGET = 20.0


def delta_files(path: str) -> list[str]:
    from deltalake import DeltaTable

    return DeltaTable(path).file_uris()


class CtBench:
    def __init__(self, a, spawner: Spawner):
        self.a = a
        self.spawner = spawner
        self.work = tempfile.mkdtemp(prefix="bridge-ct-bench-")
        self.logs = os.path.join(self.work, "logs")
        self.project = os.path.join(self.work, "project")
        for d in (self.logs, os.path.join(self.project, "pipelines"), os.path.join(self.project, "data")):
            os.makedirs(d, exist_ok=True)
        self.server = TdsServer(a.server, os.path.join(self.work, "ct.db"), self.logs)
        self.checks: list[tuple[str, bool, str]] = []
        self.n = 0

    def env(self) -> dict:
        return bridge_env(self.server.port)

    def tsql(self, *sql: str) -> None:
        tsql(self.server.port, *sql)

    def run(self, label: str, yaml: str) -> dict:
        """Runs `bridge run` on a pipeline: wall s, client CPU s, peak RSS MB, server CPU s, summary."""
        self.n += 1
        path = os.path.join(self.project, "pipelines", f"p{self.n}.yaml")
        with open(path, "w") as f:
            f.write(yaml)
        base = os.path.join(self.logs, f"{self.n:02d}-{label.replace(' ', '_')}")
        c0 = self.server.cpu()
        t0 = time.perf_counter()
        r = self.spawner.run([self.a.bridge, "--root", self.project, "--output", "json", "run", path], self.env(),
                             base + ".stdout", base + ".stderr", 3600)
        wall = time.perf_counter() - t0
        server_cpu = self.server.cpu() - c0
        if r["rc"] != 0:
            with open(base + ".stderr") as f:
                raise BenchError(f"{label}: exit {r['rc']}\n{f.read()[-3000:]}")
        with open(base + ".stdout") as f:
            summary = json.load(f)
        rows = sum(s["rows"] for s in summary["steps"] if s["kind"] == "sink")
        log(f"{label}: {wall:.2f} s, client CPU {r['cpu_s']:.2f} s, {rows} rows")
        return {"label": label, "wall_s": wall, "cpu_s": r["cpu_s"], "rss_mb": r["maxrss_kb"] / 1024,
                "server_cpu_s": server_cpu, "rows": rows}

    def lake_checksum(self, name: str):
        from deltalake import DeltaTable

        c = benchlib.Checksum()
        for batch in DeltaTable(os.path.join(self.project, "lake", name)).to_pyarrow_dataset().to_batches():
            c.add_table(batch)
        return c

    def check_equal(self, when: str) -> None:
        source = benchlib.checksum_sqlite(self.server.db, "ct")
        for name in ("ct", "full"):
            got = self.lake_checksum(name)
            ok = got == source
            self.checks.append((f"{when}: lake/{name} equals dbo.ct", ok, f"{got} vs {source}"))
            log(f"check {when}: lake/{name} {'ok' if ok else 'MISMATCH'} ({got} vs {source})")

    def main(self) -> list[dict]:
        a, n = self.a, self.a.rows
        t0 = time.perf_counter()
        benchlib.write_parquet(os.path.join(self.project, "data", "src.parquet"), 0, n, 0)
        self.tsql(benchlib.create_table_sql("dbo.ct"))
        self.run("load", """name: load
steps:
  - id: rows
    source: {type: parquet, path: data/src.parquet}
  - id: load
    sink: {type: sqlserver, from: rows, table: dbo.ct, mode: insert}
""")
        self.tsql("ALTER DATABASE master SET ALLOW_SNAPSHOT_ISOLATION ON",
                  "ALTER DATABASE master SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 2 DAYS)",
                  "ALTER TABLE dbo.ct ENABLE CHANGE_TRACKING")
        log(f"loaded {n} rows in {time.perf_counter() - t0:.1f} s (not measured)")
        size = f", target_file_size: {a.target_file_size}" if a.target_file_size else ""
        ct = f"""name: ct
steps:
  - id: t
    source: {{type: sqlserver, table: dbo.ct, incremental: {{mode: change_tracking}}}}
  - id: lake
    sink: {{type: delta, from: t, path: lake/ct, mode: merge, keys: [id]{size}}}
"""
        full = """name: full
steps:
  - id: t
    source: {type: sqlserver, table: dbo.ct}
  - id: lake
    sink: {type: delta, from: t, path: lake/full, mode: overwrite}
"""
        results = [self.run("change tracking: first run (snapshot + merge into a new table)", ct),
                   self.run("full reload: first run (extract + overwrite)", full)]
        self.check_equal("after the first runs")
        half = round(n * a.changed / 200)  # half of the changed rows updated, half deleted
        if a.pattern == "spread":
            every = n // half
            updated, deleted = f"id % {every} = 0", f"id % {every} = 1"
        else:
            updated, deleted = f"id >= {n - half}", f"id >= {n - 2 * half} AND id < {n - half}"
        self.tsql(f"UPDATE dbo.ct SET big = big + 1, note = 'changed' WHERE {updated}",
                  f"DELETE FROM dbo.ct WHERE {deleted}")
        changed = 2 * half
        log(f"changed {changed} rows ({a.pattern}: {updated} updated, {deleted} deleted)")
        incremental = self.run("change tracking: changes + merge", ct)
        reload = self.run("full reload: extract + overwrite", full)
        results += [incremental, reload]
        self.check_equal("after the changes")
        self.checks.append(("change tracking read only the changed rows", incremental["rows"] == changed,
                            f"{incremental['rows']} rows"))
        self.files = {name: len(delta_files(os.path.join(self.project, "lake", name))) for name in ("ct", "full")}
        return results


def git_rev() -> str:
    import subprocess
    try:
        rev = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
        # (RESULTS.md itself changes with every run that appends to it.)
        dirty = subprocess.run(["git", "-C", HERE, "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":!RESULTS.md"], capture_output=True, text=True, check=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_results(a, results: list[dict], checks: list, files: dict) -> None:
    inc, full = results[2], results[3]
    wall_ratio = full["wall_s"] / inc["wall_s"]
    cpu_ratio = full["cpu_s"] / inc["cpu_s"]
    lines = [f"\n### {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC — change tracking vs full reload, "
             f"N = {a.rows:,} rows, {a.changed} % changed ({a.pattern})\n",
             f"bridge `{a.bridge}`, tds-test-server `{a.server}`, git {git_rev()} "
             "(benches/change_tracking.py). Both Delta "
             "tables were read back with the `deltalake` Python package and equal the source table. "
             f"Delta data files after the runs: lake/ct {files['ct']}, lake/full {files['full']}"
             + (f" (target_file_size {a.target_file_size:,} bytes on lake/ct)" if a.target_file_size else "")
             + ".\n",
             "| run | sink rows | wall s | client CPU s | peak RSS MB | server CPU s |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['label']} | {r['rows']:,} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['rss_mb']:.0f} "
                     f"| {r['server_cpu_s']:.2f} |")
    lines += ["", "| ratio (full reload / change tracking) | value | target | met |", "|---|---:|---|---|",
              f"| wall time | {wall_ratio:.1f}x | >= {TARGET:.0f}x | {'yes' if wall_ratio >= TARGET else '**no**'} |",
              f"| client CPU | {cpu_ratio:.1f}x | >= {TARGET:.0f}x | {'yes' if cpu_ratio >= TARGET else '**no**'} |",
              "", "Checks: " + ", ".join(f"{name}: {'ok' if ok else 'FAILED'}" for name, ok, _ in checks), ""]
    text = "\n".join(lines)
    print(text)
    if a.results:
        with open(a.results, "a") as f:
            f.write(text)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--changed", type=float, default=1.0, help="percent of rows changed (half updates, half deletes)")
    p.add_argument("--pattern", choices=["spread", "recent"], default="spread",
                   help="which rows change: spread over all keys (default) or the highest keys")
    p.add_argument("--target-file-size", type=int, default=None,
                   help="the change-tracking Delta table's target_file_size in bytes (default: delta-rs')")
    p.add_argument("--bridge", default=default_binary("bridge"))
    p.add_argument("--server", default=default_binary("tds-test-server"))
    p.add_argument("--results", default=None, help="append the section to this file (e.g. benches/RESULTS.md)")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    a = p.parse_args()
    spawner = Spawner()
    global benchlib
    import benchlib as _benchlib

    benchlib = _benchlib
    bench = None
    try:
        bench = CtBench(a, spawner)
        results = bench.main()
        write_results(a, results, bench.checks, bench.files)
        failed = [c for c in bench.checks if not c[1]]
        for name, _, detail in failed:
            log(f"FAILED: {name}: {detail}")
        return 1 if failed else 0
    except BenchError as e:
        log(f"error: {e}")
        return 1
    finally:
        spawner.close()
        if bench is not None:
            bench.server.stop()
            if not a.keep:
                shutil.rmtree(bench.work, ignore_errors=True)
            else:
                log(f"kept {bench.work}")


if __name__ == "__main__":
    sys.exit(main())
