#!/usr/bin/env python3
"""In-memory Arrow extraction: the operator's `extract_to_arrow` against ConnectorX's
`read_sql(..., return_type="arrow")`, the same query into a pyarrow Table in this process.

Only the extraction is timed (wall and this process's CPU over all its threads); imports before
and the checksum of the rows after are not. Prints one JSON line: {"rows", "seconds", "cpu_s",
"peak_rss_mb", "checksum_rows", "checksum"}; the harness checks the checksum (benchlib.py).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from urllib.parse import quote

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from common import connection_parser  # noqa: E402


def main() -> None:
    p = connection_parser(__doc__)
    p.add_argument("--client", choices=("operator", "connectorx"), required=True)
    p.add_argument("--query", default="SELECT * FROM dbo.bench")
    a = p.parse_args()

    import pyarrow as pa

    import benchlib

    if a.client == "operator":
        from bridge_operator import BridgeOperator

        op = BridgeOperator(a.host, a.database, a.user, a.password, port=a.port, encrypt="danger_plaintext")

        def fetch() -> pa.Table:
            return op.extract_to_arrow(a.query).read_all()
    else:
        import connectorx as cx

        url = f"mssql://{quote(a.user)}:{quote(a.password)}@{a.host}:{a.port}/{a.database}"

        def fetch() -> pa.Table:
            t = cx.read_sql(url, a.query, return_type="arrow")
            return t.read_all() if hasattr(t, "read_all") else t

    c0, t0 = time.process_time(), time.perf_counter()
    table = fetch()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    ck = benchlib.Checksum()
    for batch in table.to_batches(max_chunksize=1_000_000):
        ck.add_table(batch)
    print(json.dumps({
        "rows": table.num_rows, "seconds": seconds, "cpu_s": cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "checksum_rows": ck.rows, "checksum": ck.value,
    }))


if __name__ == "__main__":
    main()
