#!/usr/bin/env python3
"""Write-back baseline: insert N generated rows into a table of a SQL Server (or the TDS test server).

Methods (see FINDINGS.md for which ones work against tds-test-server):
  pytds-bulk          python-tds cursor.copy_to: INSERT BULK + BulkLoad (TDS bulk copy), pip-only
  pymssql-values      pymssql, multi-row INSERT ... VALUES (...),(...) batches of --batch rows (<=1000)
  pymssql-executemany pymssql cursor.executemany (one literal INSERT batch per row)
  pytds-executemany   python-tds cursor.executemany (one sp_executesql RPC per row)
  pyodbc-fast         pyodbc fast_executemany (parameter arrays) with the FreeTDS ODBC driver
  pyodbc-executemany  pyodbc executemany without parameter arrays (FreeTDS: sp_prepexec/sp_execute)

Prints one JSON line: {"rows", "seconds", "bytes", "peak_rss_mb", ...}; "bytes" is the sum of
the text lengths of the generated values (a rough payload size, the same for every method).
"""

from __future__ import annotations

import sys
import time

from common import COLUMN_NAMES, connection_parser, create_table_sql, make_row, report


def payload_bytes(rows) -> int:
    return sum(len(str(v)) for r in rows for v in r if v is not None)


def connect_pytds(a):
    import pytds

    return pytds.connect(server=a.host, port=a.port, user=a.user, password=a.password,
                         database=a.database, autocommit=True)


def connect_pymssql(a):
    import pymssql

    return pymssql.connect(server=a.host, port=a.port, user=a.user, password=a.password,
                           database=a.database, autocommit=True, tds_version="7.4")


def connect_pyodbc(a):
    import pyodbc

    return pyodbc.connect(
        f"DRIVER={{{a.odbc_driver}}};SERVER={a.host};PORT={a.port};UID={a.user};PWD={a.password};"
        f"DATABASE={a.database};TDS_Version=7.4",
        autocommit=True,
    )


def prepare_table(conn, a) -> None:
    cur = conn.cursor()
    if a.create:
        cur.execute(f"IF OBJECT_ID('{a.table}') IS NOT NULL DROP TABLE {a.table}")
        cur.execute(create_table_sql(a.table))
    elif a.truncate:
        cur.execute(f"TRUNCATE TABLE {a.table}")


def insert_sql(table: str, marker: str) -> str:
    return f"INSERT INTO {table} ({', '.join(COLUMN_NAMES)}) VALUES ({', '.join([marker] * len(COLUMN_NAMES))})"


def pytds_columns(native_date: bool = False):
    """Bulk-copy column metadata. tds-test-server (as of this writing) misreads a DATE column in
    the BulkLoad COLMETADATA (it expects the extra length byte tiberius sends; MS-TDS has none),
    so by default the date column is sent as NVARCHAR(10) 'YYYY-MM-DD' text: the server stores
    exactly that text for DATE, and SQL Server converts it implicitly."""
    from pytds.tds_base import Column
    from pytds import tds_types as t

    types = [t.IntType(), t.BigIntType(), t.DecimalType(18, 4), t.NVarCharType(50),
             t.DateTime2Type(7), t.BitType(), t.UniqueIdentifierType(), t.FloatType(),
             t.DateType() if native_date else t.NVarCharType(10), t.VarCharType(200)]
    return [Column(name=n, type=ty, flags=0 if n == "id" else Column.fNullable)
            for n, ty in zip(COLUMN_NAMES, types)]


def begin(conn, a) -> None:
    if not a.per_statement_commit:
        conn.cursor().execute("BEGIN TRANSACTION")


def commit(conn, a) -> None:
    if not a.per_statement_commit:
        conn.cursor().execute("COMMIT TRANSACTION")


def run(a, data) -> None:
    m = a.method
    if m == "pytds-bulk":
        conn = connect_pytds(a)
        prepare_table(conn, a)
        if not a.bulk_native_date:
            d = COLUMN_NAMES.index("d")
            data = [r[:d] + (r[d].isoformat(),) + r[d + 1 :] for r in data]
        t0 = time.perf_counter()
        conn.cursor().copy_to(table_or_view=a.table, columns=pytds_columns(a.bulk_native_date), data=data)
    elif m == "pytds-executemany":
        conn = connect_pytds(a)
        prepare_table(conn, a)
        t0 = time.perf_counter()
        begin(conn, a)
        conn.cursor().executemany(insert_sql(a.table, "%s"), data)
        commit(conn, a)
    elif m == "pymssql-executemany":
        conn = connect_pymssql(a)
        prepare_table(conn, a)
        t0 = time.perf_counter()
        begin(conn, a)
        conn.cursor().executemany(insert_sql(a.table, "%s"), data)
        commit(conn, a)
    elif m in ("pyodbc-fast", "pyodbc-executemany"):
        conn = connect_pyodbc(a)
        prepare_table(conn, a)
        cur = conn.cursor()
        cur.fast_executemany = m == "pyodbc-fast"
        t0 = time.perf_counter()
        begin(conn, a)
        for i in range(0, len(data), a.batch):
            cur.executemany(insert_sql(a.table, "?"), data[i : i + a.batch])
        commit(conn, a)
    else:
        raise SystemExit(f"unknown method {m}")
    return t0, conn


def run_pymssql_values(a, data):
    from pymssql import _mssql

    conn = connect_pymssql(a)
    prepare_table(conn, a)
    head = f"INSERT INTO {a.table} ({', '.join(COLUMN_NAMES)}) VALUES ".encode()
    tpl = "(" + ",".join(["%s"] * len(COLUMN_NAMES)) + ")"
    cur = conn.cursor()
    t0 = time.perf_counter()
    begin(conn, a)
    for i in range(0, len(data), a.batch):
        # pymssql's own literal quoting (the same code its execute() uses); datetime -> ms precision
        values = b",".join(_mssql.substitute_params(tpl, r) for r in data[i : i + a.batch])
        cur.execute((head + values).decode())
    commit(conn, a)
    return t0, conn


def main() -> None:
    p = connection_parser(__doc__)
    p.add_argument("--table", default="bench_write")
    p.add_argument("--rows", type=int, default=50_000)
    p.add_argument("--start", type=int, default=0, help="first row number (id) to generate")
    p.add_argument("--method", default="pytds-bulk",
                   choices=["pytds-bulk", "pymssql-values", "pymssql-executemany", "pytds-executemany",
                            "pyodbc-fast", "pyodbc-executemany"])
    p.add_argument("--batch", type=int, default=1000, help="rows per statement/array (values, pyodbc)")
    p.add_argument("--odbc-driver", default="FreeTDS")
    p.add_argument("--per-statement-commit", action="store_true",
                   help="no BEGIN/COMMIT around the inserts: every statement commits on its own")
    p.add_argument("--bulk-native-date", action="store_true",
                   help="pytds-bulk: send the date column as DATE (fails on tds-test-server, see FINDINGS.md)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--create", action="store_true", help="drop and re-create the table first")
    g.add_argument("--truncate", action="store_true", help="empty the table first")
    p.add_argument("--out", help="also append the JSON line to this file")
    a = p.parse_args()

    data = [make_row(i) for i in range(a.start, a.start + a.rows)]
    nbytes = payload_bytes(data)
    if a.method == "pymssql-values":
        t0, conn = run_pymssql_values(a, data)
    else:
        t0, conn = run(a, data)
    seconds = time.perf_counter() - t0
    cur = conn.cursor()
    cur.execute(f"SELECT COUNT(*) FROM {a.table} WHERE id >= {a.start} AND id < {a.start + a.rows}")
    landed = cur.fetchone()[0]
    conn.close()
    if landed != a.rows:
        print(f"python_writeback: expected {a.rows} rows in {a.table}, found {landed}", file=sys.stderr)
        sys.exit(1)
    report(tool=a.method, rows=a.rows, seconds=round(seconds, 3), bytes=nbytes)
    if a.out:
        import json
        with open(a.out, "a") as f:
            f.write(json.dumps({"tool": a.method, "rows": a.rows, "seconds": round(seconds, 3)}) + "\n")


if __name__ == "__main__":
    main()
