#!/usr/bin/env python3
"""The Parquet encode limit: the cost of writing the table to Parquet and nothing else.

Loads the data set into memory first (not measured: the --parquet file, which holds the generated
rows, or benchlib.generate with --rows), then writes it once with pyarrow using the bridge's
settings: zstd at the default level (1 in Arrow C++ as in the Rust parquet crate the bridge uses)
and row groups of 262,144 rows (the volume sink's DEFAULT_ROW_GROUP_SIZE). No database, no
network, no type conversion: the CPU an extraction to Parquet cannot avoid.

Prints one JSON line: {"rows", "seconds", "encode_cpu_s", "bytes", "peak_rss_mb", ...}: "seconds"
is the wall time of the write alone, "encode_cpu_s" its CPU seconds (time.process_time, every
thread of the process); peak RSS includes the table held in memory.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import report  # noqa: E402

ROW_GROUP_SIZE = 262_144  # src/sinks/volume/mod.rs DEFAULT_ROW_GROUP_SIZE


def load(a: argparse.Namespace):
    if a.parquet:
        import pyarrow.parquet as pq

        return pq.read_table(a.parquet)
    sys.path.insert(0, os.path.dirname(HERE))
    import benchlib

    return benchlib.generate(0, a.rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--parquet", help="read the table from this file (the generated data set)")
    g.add_argument("--rows", type=int, help="generate this many rows (benchlib.generate)")
    p.add_argument("--out", default="encode.parquet")
    p.add_argument("--compression", default="zstd")
    p.add_argument("--row-group-size", type=int, default=ROW_GROUP_SIZE)
    a = p.parse_args()

    import pyarrow.parquet as pq

    table = load(a).combine_chunks()
    c0, t0 = time.process_time(), time.perf_counter()
    pq.write_table(table, a.out, compression=a.compression, row_group_size=a.row_group_size)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    report(tool="pyarrow-encode", rows=table.num_rows, seconds=round(seconds, 3), encode_cpu_s=round(cpu, 3),
           bytes=os.path.getsize(a.out))


if __name__ == "__main__":
    main()
