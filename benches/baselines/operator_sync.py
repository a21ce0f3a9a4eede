#!/usr/bin/env python3
"""The operator's `sync_to_sql_server` from Arrow: a Parquet file streamed batch by batch (a
pyarrow RecordBatchReader) into a table of the TDS test server, in one transaction.

Only the write is timed (wall and this process's CPU over all its threads). Prints one JSON
line: {"rows", "seconds", "cpu_s"}.
"""

from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import connection_parser  # noqa: E402


def main() -> None:
    p = connection_parser(__doc__)
    p.add_argument("--parquet", required=True)
    p.add_argument("--table", required=True)
    p.add_argument("--mode", choices=("insert", "upsert"), default="insert")
    a = p.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq
    from bridge_operator import BridgeOperator

    op = BridgeOperator(a.host, a.database, a.user, a.password, port=a.port, encrypt="danger_plaintext")
    f = pq.ParquetFile(a.parquet)
    reader = pa.RecordBatchReader.from_batches(f.schema_arrow, f.iter_batches(batch_size=65_536))
    c0, t0 = time.process_time(), time.perf_counter()
    rows = op.sync_to_sql_server(reader, a.table, a.mode.upper(),
                                 primary_keys=["id"] if a.mode == "upsert" else None)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"rows": rows, "seconds": seconds, "cpu_s": cpu}))


if __name__ == "__main__":
    main()
