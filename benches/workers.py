#!/usr/bin/env python3
"""Child processes of the benchmark harness (`run.py` runs each one on its own, so its wall time
and peak RSS are its own). Each prints one JSON line on stdout.

  writeback --method M --mode insert|upsert --parquet F --table T --port P
      The Python write-back baselines, reading the same Parquet file the bridge's sink reads:
        pymssql-executemany  cursor.executemany, one INSERT per row, one transaction (the closest
                             stand-in for pyodbc executemany; pyodbc + FreeTDS fails against the
                             test server, see baselines/FINDINGS.md)
        pymssql-values       multi-row INSERT ... VALUES, 1000 rows per statement, one transaction
        pytds-bulk           python-tds cursor.copy_to (INSERT BULK + BulkLoad packets): the real
                             bulk copy, the fair match for fast_executemany / the bridge's bulk load
      upsert: rows go into #stage with the method, then the same UPDATE ... FROM JOIN and
      INSERT ... WHERE NOT EXISTS the bridge's sink runs, in one transaction.
  tsql --port P SQL...
      Runs T-SQL batches (table setup), autocommit.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import COLUMNS, NAMES  # noqa: E402

HOST = "127.0.0.1"


def connect_pymssql(port: int, autocommit: bool):
    import pymssql

    return pymssql.connect(server=HOST, port=port, user="sa", password="pw", database="master",
                           autocommit=autocommit, tds_version="7.4")


def connect_pytds(port: int, autocommit: bool):
    import pytds

    return pytds.connect(server=HOST, port=port, user="sa", password="pw", database="master",
                         autocommit=autocommit)


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


def writeback(a) -> None:
    t0 = time.perf_counter()
    rows = read_rows(a.parquet)
    t_read = time.perf_counter() - t0
    if a.mode == "insert":
        load(a.method, a.port, a.table, rows, [], [])
    else:
        stage = "#bench_stage"
        types = ", ".join(f"{c} {t.replace(' PRIMARY KEY', '')}" for c, t in COLUMNS)
        sets = ", ".join(f"{c} = s.{c}" for c in NAMES if c != "id")
        scols = ", ".join(f"s.{c}" for c in NAMES)
        load(a.method, a.port, stage, rows, [f"CREATE TABLE {stage} ({types})"], [
            f"UPDATE t SET {sets} FROM {a.table} AS t INNER JOIN {stage} AS s ON t.id = s.id",
            f"INSERT INTO {a.table} ({', '.join(NAMES)}) SELECT {scols} FROM {stage} AS s "
            f"WHERE NOT EXISTS (SELECT 1 FROM {a.table} AS t WHERE t.id = s.id)",
            f"DROP TABLE {stage}",
        ])
    seconds = time.perf_counter() - t0
    print(json.dumps({"tool": a.method, "mode": a.mode, "rows": len(rows), "seconds": round(seconds, 3),
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
    w.add_argument("--method", required=True, choices=["pymssql-executemany", "pymssql-values", "pytds-bulk"])
    w.add_argument("--mode", choices=["insert", "upsert"], default="insert")
    w.add_argument("--parquet", required=True)
    w.add_argument("--table", required=True)
    w.add_argument("--port", type=int, required=True)
    t = sub.add_parser("tsql")
    t.add_argument("--port", type=int, required=True)
    t.add_argument("sql", nargs="+")
    a = p.parse_args()
    {"writeback": writeback, "tsql": tsql}[a.cmd](a)


if __name__ == "__main__":
    main()
