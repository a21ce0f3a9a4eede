#!/usr/bin/env python3
"""The original Python path: a DB-API driver (python-tds or pymssql) reads the rows, Polars writes Parquet.

Prints one JSON line: {"rows", "seconds", "bytes", "peak_rss_mb", ...}; "bytes" is the Parquet
file size (0 with --discard, which only iterates over the rows: the read ceiling of the driver).

--mode fetchall   (default, what the original CLI did) cursor.fetchall() -> pl.DataFrame -> write_parquet
--mode chunked    fetchmany(--batch-rows) -> one Polars frame per chunk -> pyarrow ParquetWriter
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import connection_parser, report  # noqa: E402


def connect(a):
    if a.driver == "pytds":
        import pytds

        return pytds.connect(server=a.host, port=a.port, user=a.user, password=a.password,
                             database=a.database, autocommit=True)
    import pymssql

    return pymssql.connect(server=a.host, port=a.port, user=a.user, password=a.password,
                           database=a.database, autocommit=True, tds_version="7.4")


def frame(rows, names):
    import polars as pl

    # infer_schema_length=None: a column that starts with NULLs still gets its real type
    return pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)


def to_polars_safe(df):
    """Polars has no UUID dtype: it keeps uuid.UUID values as Object, which Parquet cannot store."""
    import warnings

    import polars as pl

    warnings.simplefilter("ignore", pl.exceptions.PolarsInefficientMapWarning)  # Object -> String needs it
    casts = [pl.col(n).map_elements(str, return_dtype=pl.String) for n, t in df.schema.items() if t == pl.Object]
    return df.with_columns(casts) if casts else df


def main() -> None:
    p = connection_parser(__doc__)
    p.add_argument("--driver", choices=["pytds", "pymssql"], default="pytds")
    p.add_argument("--query", default="SELECT * FROM bench")
    p.add_argument("--mode", choices=["fetchall", "chunked"], default="fetchall")
    p.add_argument("--batch-rows", type=int, default=50_000)
    p.add_argument("--out", default="python.parquet")
    p.add_argument("--compression", default="zstd")
    p.add_argument("--discard", action="store_true", help="iterate over the rows and drop them; write nothing")
    a = p.parse_args()

    t0 = time.perf_counter()
    conn = connect(a)
    cur = conn.cursor()
    cur.execute(a.query)
    names = [d[0] for d in cur.description]
    nrows = 0
    nbytes = 0
    if a.discard:
        for _ in cur:
            nrows += 1
    elif a.mode == "fetchall":
        df = to_polars_safe(frame(cur.fetchall(), names))
        nrows = df.height
        df.write_parquet(a.out, compression=a.compression)
        nbytes = os.path.getsize(a.out)
    else:
        import pyarrow.parquet as pq

        writer = None
        while True:
            chunk = cur.fetchmany(a.batch_rows)
            if not chunk:
                break
            t = to_polars_safe(frame(chunk, names)).to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(a.out, t.schema, compression=a.compression)
            writer.write_table(t.cast(writer.schema))
            nrows += len(chunk)
        if writer is not None:
            writer.close()
            nbytes = os.path.getsize(a.out)
    conn.close()
    seconds = time.perf_counter() - t0
    report(tool=f"{a.driver}+polars" + ("(discard)" if a.discard else f"({a.mode})"), rows=nrows,
           seconds=round(seconds, 3), bytes=nbytes)


if __name__ == "__main__":
    main()
