#!/usr/bin/env python3
"""Child processes of the benchmark harness (`run.py` runs each one on its own, so its wall time
and peak RSS are its own). Each prints one JSON line on stdout.

  writeback --method M --mode insert|upsert --parquet F [--tsv F] --table T --port P
      The write-back baselines, reading the same Parquet file the bridge's sink reads:
        pymssql-executemany  cursor.executemany, one INSERT per row, one transaction (the closest
                             stand-in for pyodbc executemany; pyodbc + FreeTDS fails against the
                             test server, see baselines/FINDINGS.md)
        pymssql-values       multi-row INSERT ... VALUES, 1000 rows per statement, one transaction
        pytds-bulk           python-tds cursor.copy_to (INSERT BULK + BulkLoad packets): the real
                             bulk copy, the fair match for fast_executemany / the bridge's bulk load
        mssql-python-bulk    mssql-python cursor.bulkcopy_arrow: Microsoft's driver's bulk copy (a
                             Rust core) fed a RecordBatchReader over the Parquet file, batch by
                             batch, no Python object per value; all rows in one bulk-copy batch
        freebcp              FreeTDS `freebcp TABLE in TSV -c` (character format; --tsv made from
                             the Parquet file beforehand by export_tsv; --parquet gives the row
                             count); run.py times its insert as the bare freebcp command instead
      upsert: rows go into a staging table with the method, then the same UPDATE ... FROM JOIN and
      INSERT ... WHERE NOT EXISTS the bridge's sink runs, in one transaction. The staging table is
      #stage on the method's connection, except for mssql-python-bulk and freebcp, whose bulk copy
      opens a connection of its own: there it is a real table T_stage, created and dropped by the
      worker (timed).
  tsql --port P SQL...
      Runs T-SQL batches (table setup), autocommit.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import COLUMNS, NAMES  # noqa: E402

HOST = "127.0.0.1"
OWN_CONNECTION = ("mssql-python-bulk", "freebcp")  # their bulk copy opens a connection of its own
METHODS = ["pymssql-executemany", "pymssql-values", "pytds-bulk", *OWN_CONNECTION]


def connect_pymssql(port: int, autocommit: bool):
    import pymssql

    return pymssql.connect(server=HOST, port=port, user="sa", password="pw", database="master",
                           autocommit=autocommit, tds_version="7.4")


def connect_pytds(port: int, autocommit: bool):
    import pytds

    return pytds.connect(server=HOST, port=port, user="sa", password="pw", database="master",
                         autocommit=autocommit)


def connect_mssql_python(port: int):
    """Autocommit: with autocommit off the driver opens a transaction at connect, which on the test
    server takes the write lock at once (BEGIN IMMEDIATE) and blocks bulkcopy_arrow's own
    connection; the merge below runs in an explicit transaction instead."""
    import mssql_python

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "baselines"))
    from mssql_python_extract import connection_string

    return mssql_python.connect(connection_string(HOST, port, "master", "sa", "pw"), autocommit=True)


def read_rows(path: str) -> list[tuple]:
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=NAMES)
    return list(zip(*(t.column(n).to_pylist() for n in NAMES)))


def pymssql_rows(rows: list[tuple]) -> list[tuple]:
    """pymssql turns datetimes into literals cut to milliseconds; send the exact text instead
    (what SQL Server converts implicitly; the test server stores it as is)."""
    ts, d = NAMES.index("ts"), NAMES.index("d")
    out = []
    for r in rows:
        r = list(r)
        if r[ts] is not None:
            r[ts] = r[ts].strftime("%Y-%m-%d %H:%M:%S.%f")
        if r[d] is not None:
            r[d] = r[d].isoformat()
        out.append(tuple(r))
    return out


def pytds_columns():
    """Bulk-copy metadata. DATE goes as NVARCHAR(10) 'YYYY-MM-DD': the test server misreads a
    spec-conforming DATE in bulk COLMETADATA (baselines/FINDINGS.md, failure 2)."""
    from pytds import tds_types as t
    from pytds.tds_base import Column

    types = [t.IntType(), t.BigIntType(), t.DecimalType(18, 4), t.NVarCharType(50), t.DateTime2Type(7),
             t.BitType(), t.UniqueIdentifierType(), t.FloatType(), t.NVarCharType(10), t.VarCharType(200)]
    return [Column(name=n, type=ty, flags=0 if n == "id" else Column.fNullable) for n, ty in zip(NAMES, types)]


def pytds_rows(rows: list[tuple]) -> list[tuple]:
    import uuid

    g, d = NAMES.index("guid"), NAMES.index("d")
    out = []
    for r in rows:
        r = list(r)
        if r[g] is not None:
            r[g] = uuid.UUID(r[g])
        if r[d] is not None:
            r[d] = r[d].isoformat()
        out.append(tuple(r))
    return out


def load(method: str, port: int, table: str, rows: list[tuple], pre_sql: list[str], post_sql: list[str]):
    """Loads rows into `table` with the method inside one transaction with pre/post statements."""
    cols = ", ".join(NAMES)
    if method == "pytds-bulk":
        conn = connect_pytds(port, autocommit=False)
        cur = conn.cursor()
        for s in pre_sql:
            cur.execute(s)
        cur.copy_to(table_or_view=table, columns=pytds_columns(), data=pytds_rows(rows))
    else:
        conn = connect_pymssql(port, autocommit=False)
        cur = conn.cursor()
        for s in pre_sql:
            cur.execute(s)
        data = pymssql_rows(rows)
        if method == "pymssql-executemany":
            cur.executemany(f"INSERT INTO {table} ({cols}) VALUES ({', '.join(['%s'] * len(NAMES))})", data)
        elif method == "pymssql-values":
            from pymssql import _mssql

            tpl = "(" + ",".join(["%s"] * len(NAMES)) + ")"
            head = f"INSERT INTO {table} ({cols}) VALUES ".encode()
            for i in range(0, len(data), 1000):
                values = b",".join(_mssql.substitute_params(tpl, r) for r in data[i : i + 1000])
                cur.execute((head + values).decode())
        else:
            raise SystemExit(f"unknown method {method}")
    for s in post_sql:
        cur.execute(s)
    conn.commit()
    conn.close()


def merge_sql(table: str, stage: str) -> list[str]:
    """The statements the bridge's upsert runs after staging: update the existing keys, insert the new."""
    sets = ", ".join(f"{c} = s.{c}" for c in NAMES if c != "id")
    scols = ", ".join(f"s.{c}" for c in NAMES)
    return [f"UPDATE t SET {sets} FROM {table} AS t INNER JOIN {stage} AS s ON t.id = s.id",
            f"INSERT INTO {table} ({', '.join(NAMES)}) SELECT {scols} FROM {stage} AS s "
            f"WHERE NOT EXISTS (SELECT 1 FROM {table} AS t WHERE t.id = s.id)"]


def stage_sql(stage: str) -> str:
    types = ", ".join(f"{c} {t.replace(' PRIMARY KEY', '')}" for c, t in COLUMNS)
    return f"CREATE TABLE {stage} ({types})"


# ---------------------------------------------------------------- freebcp (FreeTDS)


def export_tsv(parquet: str, tsv: str) -> None:
    """The freebcp -c input made from a Parquet file: one line per row, tab-separated, in column
    order; NULL as an empty field (how bcp's character format spells NULL; the data set has no
    empty strings), bit as 0/1, timestamps as `YYYY-MM-DD HH:MM:SS.ffffff`, floats in their
    shortest round-trip form. Fails on a value holding a tab or a line break (never quoted)."""
    import pyarrow as pa
    import pyarrow.csv as csv
    import pyarrow.parquet as pq

    f = pq.ParquetFile(parquet)
    flag = f.schema_arrow.get_field_index("flag")
    schema = f.schema_arrow.set(flag, pa.field("flag", pa.int8()))
    opts = csv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
    with csv.CSVWriter(tsv, schema, write_options=opts) as w:
        for b in f.iter_batches(columns=NAMES):
            w.write_batch(b.set_column(flag, "flag", b.column(flag).cast(pa.int8())))


def freebcp_env() -> dict:
    """FreeTDS takes the file's character set from the locale: UTF-8 for the `ñ` of `name`."""
    return {**os.environ, "LC_ALL": "C.UTF-8"}


def freebcp_command(table: str, tsv: str, port: int, batch: int, freebcp: str = "freebcp") -> list[str]:
    return [freebcp, f"dbo.{table}", "in", tsv, "-S", f"{HOST}:{port}", "-U", "sa", "-P", "pw", "-D", "master",
            "-c", "-b", str(batch)]


def freebcp_check(rc: int, stdout: str, stderr: str, rows: int) -> None:
    """freebcp's own report: exit 0, no `Msg` line, and `N rows copied.` with N = rows. (It prints
    `N rows copied.` and exits 0 even when the server dropped the connection before answering the
    bulk load: the checksum of the table is the real check.)"""
    m = re.search(r"^(\d+) rows copied\.$", stdout, re.M)
    msgs = [ln for ln in stderr.splitlines() if ln.strip()]
    if rc != 0 or not m or int(m.group(1)) != rows or any(ln.startswith("Msg ") for ln in msgs):
        raise RuntimeError(f"freebcp: exit {rc}, {m.group(0) if m else 'no rows-copied line'} "
                           f"(expected {rows}); stderr: {' | '.join(msgs[-6:]) or '-'}")


# ---------------------------------------------------------------- write-back


def bulk_own_connection(a, table: str) -> int:
    """Bulk-loads the input into `table` with a method whose bulk copy opens its own connection."""
    import pyarrow.parquet as pq

    f = pq.ParquetFile(a.parquet)
    rows = f.metadata.num_rows
    if a.method == "freebcp":
        cmd = freebcp_command(table, a.tsv, a.port, a.freebcp_batch or max(rows, 1), a.freebcp)
        p = subprocess.run(cmd, capture_output=True, text=True, env=freebcp_env())
        freebcp_check(p.returncode, p.stdout, p.stderr, rows)
        return rows
    import pyarrow as pa

    reader = pa.RecordBatchReader.from_batches(f.schema_arrow, f.iter_batches(batch_size=a.batch_rows))
    conn = connect_mssql_python(a.port)
    try:
        res = conn.cursor().bulkcopy_arrow(table, reader, batch_size=0, timeout=0, keep_nulls=True)
    finally:
        conn.close()
    if res["rows_copied"] != rows:
        raise RuntimeError(f"bulkcopy_arrow copied {res['rows_copied']} of {rows} rows")
    return rows


def writeback_own_connection(a) -> int:
    """mssql-python-bulk and freebcp: insert = the bulk copy alone; upsert = into a real staging
    table (the bulk copy's connection cannot see a #temp table of ours), then the merge."""
    if a.mode == "insert":
        return bulk_own_connection(a, a.table)
    stage = f"{a.table}_stage"
    if a.method == "freebcp":
        conn = connect_pymssql(a.port, autocommit=True)
    else:
        conn = connect_mssql_python(a.port)
    cur = conn.cursor()
    cur.execute(f"IF OBJECT_ID('{stage}') IS NOT NULL DROP TABLE {stage}")
    cur.execute(stage_sql(stage))
    rows = bulk_own_connection(a, stage)
    for s in ["BEGIN TRANSACTION", *merge_sql(a.table, stage), "COMMIT TRANSACTION", f"DROP TABLE {stage}"]:
        cur.execute(s)
    conn.close()
    return rows


def writeback(a) -> None:
    t0 = time.perf_counter()
    t_read = 0.0
    if a.method in OWN_CONNECTION:
        n = writeback_own_connection(a)
    else:
        rows = read_rows(a.parquet)
        n = len(rows)
        t_read = time.perf_counter() - t0
        if a.mode == "insert":
            load(a.method, a.port, a.table, rows, [], [])
        else:
            stage = "#bench_stage"
            load(a.method, a.port, stage, rows, [stage_sql(stage)],
                 [*merge_sql(a.table, stage), f"DROP TABLE {stage}"])
    seconds = time.perf_counter() - t0
    print(json.dumps({"tool": a.method, "mode": a.mode, "rows": n, "seconds": round(seconds, 3),
                      "parquet_read_seconds": round(t_read, 3)}), flush=True)


def tsql(a) -> None:
    conn = connect_pymssql(a.port, autocommit=True)
    cur = conn.cursor()
    for s in a.sql:
        cur.execute(s)
    conn.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("writeback")
    w.add_argument("--method", required=True, choices=METHODS)
    w.add_argument("--mode", choices=["insert", "upsert"], default="insert")
    w.add_argument("--parquet", required=True)
    w.add_argument("--tsv", help="freebcp: the character file made from --parquet (export_tsv)")
    w.add_argument("--batch-rows", type=int, default=65_536,
                   help="mssql-python-bulk: rows per Arrow batch read from the Parquet file")
    w.add_argument("--freebcp", default="freebcp", help="the freebcp binary")
    w.add_argument("--freebcp-batch", type=int, default=0,
                   help="freebcp -b: rows per committed batch (default 0: all rows in one, one transaction)")
    w.add_argument("--table", required=True)
    w.add_argument("--port", type=int, required=True)
    t = sub.add_parser("tsql")
    t.add_argument("--port", type=int, required=True)
    t.add_argument("sql", nargs="+")
    a = p.parse_args()
    if a.cmd == "writeback" and a.method == "freebcp" and not a.tsv:
        p.error("--method freebcp needs --tsv")
    {"writeback": writeback, "tsql": tsql}[a.cmd](a)


if __name__ == "__main__":
    main()
