"""Shared helpers for the baseline scripts: the bench table, deterministic rows, the JSON line,
and the pieces the Arrow extraction peers share (their command line, streaming batches to Parquet)."""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import json
import os
import resource
import sys
import time
import uuid
from typing import Iterable

# The 10-column mixed table every baseline reads or writes.
COLUMNS = [
    ("id", "INT NOT NULL"),
    ("big", "BIGINT"),
    ("amount", "DECIMAL(18,4)"),
    ("name", "NVARCHAR(50)"),
    ("ts", "DATETIME2"),
    ("flag", "BIT"),
    ("guid", "UNIQUEIDENTIFIER"),
    ("score", "FLOAT"),
    ("d", "DATE"),
    ("note", "VARCHAR(200)"),
]
COLUMN_NAMES = [c for c, _ in COLUMNS]


def create_table_sql(table: str) -> str:
    cols = ",\n  ".join(f"{c} {t}" for c, t in COLUMNS)
    return f"CREATE TABLE {table} (\n  {cols}\n)"


_T0 = dt.datetime(2024, 1, 1)
_D0 = dt.date(2020, 1, 1)


def make_row(i: int) -> tuple:
    """Row i of the data set: deterministic, ~10% NULLs in the nullable text/decimal columns."""
    null = i % 10 == 7
    return (
        i,
        i * 1_000_003,
        None if null else decimal.Decimal(i % 1_000_000) + decimal.Decimal(i % 10_000) / 10_000,
        None if null else f"name-{i}-ñ",
        _T0 + dt.timedelta(seconds=i, microseconds=(i * 7919) % 1_000_000),
        i % 2 == 0,
        uuid.UUID(int=(i * 0x9E3779B97F4A7C15F39CC0605CEDC835) % (1 << 128)),
        i * 0.5,
        _D0 + dt.timedelta(days=i % 3650),
        f"note {i} " + "x" * (i % 50),
    )


def rows(n: int, start: int = 0):
    for i in range(start, start + n):
        yield make_row(i)


def peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux (bytes on macOS).
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(r / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def report(**fields) -> None:
    fields.setdefault("peak_rss_mb", peak_rss_mb())
    if "rows" in fields and fields.get("seconds"):
        fields["rows_per_s"] = round(fields["rows"] / fields["seconds"])
    print(json.dumps(fields), flush=True)


def connection_parser(doc: str) -> argparse.ArgumentParser:
    """The connection options every peer takes (the TDS test server's defaults)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1433)
    p.add_argument("--user", default="sa")
    p.add_argument("--password", default="pw")
    p.add_argument("--database", default="master")
    return p


def extract_parser(doc: str) -> argparse.ArgumentParser:
    """The command line every Arrow extraction peer takes (connection, query, output)."""
    p = connection_parser(doc)
    p.add_argument("--query", default="SELECT * FROM bench")
    p.add_argument("--batch-size", type=int, default=65_536, help="rows per Arrow batch the driver returns")
    p.add_argument("--row-group-rows", type=int, default=262_144,
                   help="rows per Parquet row group (default: the bridge's volume sink default)")
    p.add_argument("--out", default="out.parquet")
    p.add_argument("--compression", default="zstd")
    p.add_argument("--discard", action="store_true", help="fetch the Arrow batches and drop them; write nothing")
    return p


def stream_to_parquet(tool: str, schema, batches: Iterable, a: argparse.Namespace, t0: float) -> None:
    """Writes the Arrow batches as they arrive with one pyarrow ParquetWriter, in row groups of
    --row-group-rows rows like the bridge's (memory: at most one row group of Arrow data), then
    prints the JSON line. t0: when the run started (before connecting), so "seconds" covers
    connect + query + fetch + encode + write."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None if a.discard else pq.ParquetWriter(a.out, schema, compression=a.compression)
    rows = 0
    pending: list = []
    pending_rows = 0

    def flush() -> None:
        nonlocal pending, pending_rows
        if writer is not None and pending:
            writer.write_table(pa.Table.from_batches(pending, schema), row_group_size=a.row_group_rows)
        pending, pending_rows = [], 0

    for b in batches:
        rows += b.num_rows
        if writer is None:
            continue
        pending.append(b)
        pending_rows += b.num_rows
        if pending_rows >= a.row_group_rows:
            flush()
    flush()
    nbytes = 0
    if writer is not None:
        writer.close()
        nbytes = os.path.getsize(a.out)
    report(tool=tool + ("(discard)" if a.discard else ""), rows=rows,
           seconds=round(time.perf_counter() - t0, 3), bytes=nbytes)
