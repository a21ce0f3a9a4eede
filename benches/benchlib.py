"""Shared pieces of the benchmark harness: the bench table, deterministic data generation, and an
order-independent checksum over normalised values that every extraction/write-back path must match.

Row i (0-based id) of the data set, variant v (0 = the table that is loaded and extracted,
1 = the rows an upsert writes):

| column | type | value (NULL when) |
|---|---|---|
| id | INT NOT NULL PRIMARY KEY | i |
| big | BIGINT | i * 1000003 + v |
| amount | DECIMAL(18,4) | "{(i*7+v) % 10^7 - 5*10^6}.{i % 10^4 :04}" (i % 10 == 7) |
| name | NVARCHAR(50) | "name-{i}-ñ" / "upd-{i}-ñ" (i % 10 == 7) |
| ts | DATETIME2 | 2024-01-01 + i s + (i*7919 + v) % 10^6 µs |
| flag | BIT | (i + v) % 3 == 0 (i % 10 == 5) |
| guid | UNIQUEIDENTIFIER | hex of (i+v) * 0x9E3779B97F4A7C15 and (i+v) * 0xBF58476D1CE4E5B9 (wrapping u64) |
| score | FLOAT | (i + v) / 7 |
| d | DATE | 2020-01-01 + (i + v) % 3650 days |
| note | VARCHAR(200) | "note {i} " + "x" * ((i + v) % 50) |

Normalisation for the checksum (so that every client's types compare): integers and bits as
int64, decimals as exact strings with 4 decimals, timestamps truncated to microseconds (int64 µs
since 1970), dates as days since 1970, GUIDs lowercase text, floats as their IEEE-754 bit
pattern, text as is. Each normalised row is hashed (polars `hash_rows`, fixed seed); the
checksum is the wrapping sum of the row hashes mod 2^64, so it ignores row order and is additive
(the checksum of a union of disjoint row sets is the sum of their checksums).
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

COLUMNS = [
    ("id", "INT NOT NULL PRIMARY KEY"),
    ("big", "BIGINT NULL"),
    ("amount", "DECIMAL(18,4) NULL"),
    ("name", "NVARCHAR(50) NULL"),
    ("ts", "DATETIME2 NULL"),
    ("flag", "BIT NULL"),
    ("guid", "UNIQUEIDENTIFIER NULL"),
    ("score", "FLOAT NULL"),
    ("d", "DATE NULL"),
    ("note", "VARCHAR(200) NULL"),
]
NAMES = [c for c, _ in COLUMNS]
MASK64 = (1 << 64) - 1


def create_table_sql(table: str) -> str:
    return f"CREATE TABLE {table} ({', '.join(f'{c} {t}' for c, t in COLUMNS)})"


def generate(start: int, count: int, variant: int = 0) -> pa.Table:
    """Rows start .. start+count-1 of the data set (see the module doc), as an Arrow table."""
    v = variant
    df = pl.DataFrame({"i": pl.int_range(start, start + count, dtype=pl.Int64, eager=True)})
    iv = (pl.col("i") + v).cast(pl.UInt64)
    null = pl.col("i") % 10 == 7
    g = df.with_columns(
        (iv * pl.lit(0x9E3779B97F4A7C15, pl.UInt64)).alias("h1"),
        (iv * pl.lit(0xBF58476D1CE4E5B9, pl.UInt64)).alias("h2"),
    )
    hexes = []
    for h in ("h1", "h2"):
        a = g[h].to_arrow()
        if isinstance(a, pa.ChunkedArray):
            a = a.combine_chunks()
        b = pa.Array.from_buffers(pa.binary(8), len(a), [None, a.buffers()[1]], offset=a.offset)
        hexes.append(pl.from_arrow(b).cast(pl.Binary).bin.encode("hex"))
    hx = pl.Series("hx", hexes[0] + hexes[1])
    g = g.with_columns(hx)
    t0 = dt.datetime(2024, 1, 1)
    out = g.select(
        pl.col("i").cast(pl.Int32).alias("id"),
        (pl.col("i") * 1_000_003 + v).alias("big"),
        pl.when(null).then(None).otherwise(
            pl.format("{}.{}", (pl.col("i") * 7 + v) % 10_000_000 - 5_000_000,
                      (pl.col("i") % 10_000).cast(pl.String).str.zfill(4))
        ).str.to_decimal(scale=4).cast(pl.Decimal(18, 4)).alias("amount"),
        pl.when(null).then(None).otherwise(
            pl.format("{}-{}-ñ", pl.lit("upd" if v else "name"), pl.col("i"))).alias("name"),
        (pl.lit(t0) + pl.duration(seconds=pl.col("i"),
                                  microseconds=(pl.col("i") * 7919 + v) % 1_000_000)
         ).cast(pl.Datetime("us")).alias("ts"),
        pl.when(pl.col("i") % 10 == 5).then(None).otherwise((pl.col("i") + v) % 3 == 0).alias("flag"),
        pl.concat_str([pl.col("hx").str.slice(0, 8), pl.col("hx").str.slice(8, 4),
                       pl.col("hx").str.slice(12, 4), pl.col("hx").str.slice(16, 4),
                       pl.col("hx").str.slice(20, 12)], separator="-").alias("guid"),
        ((pl.col("i") + v).cast(pl.Float64) / 7.0).alias("score"),
        (pl.lit(dt.date(2020, 1, 1)) + pl.duration(days=(pl.col("i") + v) % 3650)).cast(pl.Date).alias("d"),
        pl.concat_str([pl.lit("note "), pl.col("i").cast(pl.String), pl.lit(" "),
                       pl.lit("x" * 50).str.slice(0, (pl.col("i") + v) % 50)]).alias("note"),
    )
    t = out.to_arrow()
    # Plain Arrow types every reader understands (polars may emit string_view / large types).
    schema = pa.schema([
        pa.field("id", pa.int32(), nullable=False), pa.field("big", pa.int64()),
        pa.field("amount", pa.decimal128(18, 4)), pa.field("name", pa.string()),
        pa.field("ts", pa.timestamp("us")), pa.field("flag", pa.bool_()),
        pa.field("guid", pa.string()), pa.field("score", pa.float64()),
        pa.field("d", pa.date32()), pa.field("note", pa.string()),
    ])
    return t.cast(schema)


def write_parquet(path: str, start: int, count: int, variant: int = 0, cuts: list[int] = (),
                  chunk: int = 1_000_000) -> tuple[int, dict[int, "Checksum"]]:
    """Writes rows start..start+count-1 to one Parquet file (zstd). Returns the Arrow bytes and,
    for each id in `cuts`, the checksum of the rows written with id < cut."""
    writer = None
    nbytes = 0
    prefix = {c: Checksum() for c in cuts}
    for s in list(range(start, start + count, chunk)) or [start]:
        t = generate(s, min(chunk, start + count - s), variant)
        e = s + t.num_rows
        nbytes += t.nbytes
        if writer is None:
            writer = pq.ParquetWriter(path, t.schema, compression="zstd")
        writer.write_table(t, row_group_size=chunk)
        whole = None
        for c in cuts:
            if c >= e:
                whole = whole or Checksum().add_table(t)
                prefix[c] = prefix[c] + whole
            elif c > s:
                prefix[c].add_table(t.slice(0, c - s))
    writer.close()
    return nbytes, prefix


# ---------------------------------------------------------------- normalisation and checksum


def _col(t: pa.Table | pa.RecordBatch, name: str) -> pa.Array:
    for n in t.schema.names:
        if n.lower() == name:
            c = t.column(n)
            return c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c
    raise KeyError(f"column `{name}` missing (have {t.schema.names})")


def _float_bits(a: pa.Array) -> pa.Array:
    a = a.cast(pa.float64())
    if isinstance(a, pa.ChunkedArray):
        a = a.combine_chunks()
    return pa.Array.from_buffers(pa.int64(), len(a), [a.buffers()[0], a.buffers()[1]], offset=a.offset)


def _canon(name: str, a: pa.Array) -> pa.Array:
    """One column in its normalised form (the same Arrow type whatever the client sent)."""
    ty = a.type
    if pa.types.is_dictionary(ty):
        a = a.cast(ty.value_type)
        ty = a.type
    if pa.types.is_string_view(ty) or pa.types.is_large_string(ty):
        a = a.cast(pa.string())
        ty = a.type
    if name in ("id", "big", "flag"):
        return a.cast(pa.int64())
    if name == "amount":  # exact text with 4 decimals
        if pa.types.is_decimal(ty):
            return a.cast(pa.decimal128(38, 4)).cast(pa.string())  # safe: fails if digits are lost
        if pa.types.is_floating(ty):
            raise TypeError("amount arrived as a float: exactness lost")
        return a.cast(pa.string()).cast(pa.decimal128(38, 4)).cast(pa.string())
    if name == "ts":  # microseconds since 1970 (truncated)
        if not pa.types.is_timestamp(ty):
            # storage text `YYYY-MM-DD HH:MM:SS.fffffff`, or a shorter literal: pad, cut to µs
            s = pc.replace_substring(a.cast(pa.string()), "T", " ")
            s = pc.if_else(pc.equal(pc.utf8_length(s), 19), pc.binary_join_element_wise(s, ".", ""), s)
            s = pc.utf8_slice_codeunits(pc.utf8_rpad(s, 26, "0"), 0, 26)
            a = pl.from_arrow(s).str.to_datetime(format="%Y-%m-%d %H:%M:%S%.f", time_unit="us").to_arrow()
        return a.cast(pa.timestamp("us"), safe=False).cast(pa.int64())
    if name == "d":  # days since 1970
        if pa.types.is_string(ty):
            a = pc.utf8_slice_codeunits(a, 0, 10)
        return a.cast(pa.date32()).cast(pa.int32())
    if name == "guid":
        if pa.types.is_fixed_size_binary(ty) or pa.types.is_binary(ty):
            raise TypeError("guid arrived as binary")
        return pc.utf8_lower(a.cast(pa.string()))
    if name == "score":  # IEEE-754 bits: exact
        return _float_bits(a)
    return a.cast(pa.string())  # name, note


def canonical(t: pa.Table | pa.RecordBatch) -> pl.DataFrame:
    """The rows with every column normalised (see the module doc)."""
    return pl.DataFrame([pl.from_arrow(_canon(n, _col(t, n))).alias(n) for n in NAMES])


class Checksum:
    """Row count and an order-independent checksum (sum of 64-bit row hashes, wrapping)."""

    def __init__(self, rows: int = 0, value: int = 0):
        self.rows = rows
        self.value = value

    def add_table(self, t: pa.Table | pa.RecordBatch) -> "Checksum":
        if t.num_rows == 0:
            return self
        h = canonical(t).hash_rows(seed=0x5EED)
        lo = int((h % (1 << 32)).sum())
        hi = int((h // (1 << 32)).sum())
        self.value = (self.value + lo + (hi << 32)) & MASK64
        self.rows += t.num_rows
        return self

    def __add__(self, other: "Checksum") -> "Checksum":
        return Checksum(self.rows + other.rows, (self.value + other.value) & MASK64)

    def __sub__(self, other: "Checksum") -> "Checksum":
        return Checksum(self.rows - other.rows, (self.value - other.value) & MASK64)

    def __eq__(self, other) -> bool:
        return isinstance(other, Checksum) and (self.rows, self.value) == (other.rows, other.value)

    def __repr__(self) -> str:
        return f"{self.rows} rows, checksum {self.value:016x}"


def checksum_generated(start: int, count: int, variant: int = 0, chunk: int = 1_000_000) -> Checksum:
    c = Checksum()
    for s in range(start, start + count, chunk):
        c.add_table(generate(s, min(chunk, start + count - s), variant))
    return c


def checksum_parquet(paths: list[str]) -> Checksum:
    """Checksum of Parquet files, read one row group at a time (bounded memory)."""
    c = Checksum()
    for p in paths:
        f = pq.ParquetFile(p)
        for i in range(f.num_row_groups):
            c.add_table(f.read_row_group(i))
    return c


def rtrim_delta(path: str, column: str, below: int | None = None) -> Checksum:
    """How trimming the trailing blanks of `column` changes the checksum of a Parquet file's rows
    (those with id < below, if given): trimmed minus as written, over the rows that end with a
    blank (the checksum is additive). freebcp trims them (see baselines/FINDINGS.md)."""
    d = Checksum()
    f = pq.ParquetFile(path)
    for i in range(f.num_row_groups):
        t = f.read_row_group(i)
        mask = pc.ends_with(t.column(column), " ")
        if below is not None:
            mask = pc.and_(mask, pc.less(t.column("id"), below))
        t = t.filter(pc.fill_null(mask, False))
        k = t.schema.get_field_index(column)
        d = d + Checksum().add_table(t.set_column(k, column, pc.utf8_rtrim(t.column(column), characters=" ")))
        d = d - Checksum().add_table(t)
    return d


def checksum_sqlite(db: str, table: str, batch: int = 200_000) -> Checksum:
    """Checksum of a table read straight from the test server's SQLite file (its storage
    encoding: decimals/dates/GUIDs as text, bit as 0/1): the independent oracle for write-back."""
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        cur = conn.execute(f'SELECT {", ".join(NAMES)} FROM "{table}"')
        c = Checksum()
        types = [pa.int64(), pa.int64(), pa.string(), pa.string(), pa.string(), pa.int64(),
                 pa.string(), pa.float64(), pa.string(), pa.string()]
        while True:
            rows = cur.fetchmany(batch)
            if not rows:
                break
            cols = list(zip(*rows))
            c.add_table(pa.table([pa.array(col, ty) for col, ty in zip(cols, types)], names=NAMES))
        return c
    finally:
        conn.close()


def events_project(proj: str, bridge: str, env: dict, token: str) -> None:
    """A scratch project for the events measures: `lakehouse_root` set, a `bench` user (`token`)
    who may write every SQL Server table and read every lakehouse table, and the lakehouse Delta
    table `main.bench.ev` of 10 generated rows (written by `bridge run` from a Parquet file)."""
    import os
    import subprocess

    os.makedirs(os.path.join(proj, "pipelines"), exist_ok=True)
    os.makedirs(os.path.join(proj, "config"), exist_ok=True)
    with open(os.path.join(proj, "config", "defaults.yaml"), "w") as f:
        f.write("params:\n  lakehouse_root: output/delta\n")
    with open(os.path.join(proj, "config", "permissions.yaml"), "w") as f:
        f.write(f'users:\n  - name: bench\n    token: "{token}"\n    permissions:\n'
                f'      - table: "*"\n        access: read_write\n'
                f'      - lakehouse_table: "*"\n        access: read\n')
    write_parquet(os.path.join(proj, "ev.parquet"), 0, 10, 0)
    pipe = os.path.join(proj, "pipelines", "mkdelta.yaml")
    with open(pipe, "w") as f:
        f.write("name: mkdelta\nsteps:\n  - id: rows\n    source: {type: parquet, path: ev.parquet}\n"
                "  - id: out\n    sink: {type: delta, from: rows, path: output/delta/main/bench/ev, mode: overwrite}\n")
    subprocess.run([bridge, "--root", proj, "run", pipe], check=True, env=env, stdout=subprocess.DEVNULL)
    os.remove(pipe)
