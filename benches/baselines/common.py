"""Shared helpers for the baseline scripts: the bench table, deterministic rows, the JSON line."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import resource
import sys
import uuid

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
