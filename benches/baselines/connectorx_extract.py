#!/usr/bin/env python3
"""ConnectorX baseline: read a query from SQL Server (or tds-test-server) into Arrow, write Parquet.

Prints one JSON line: {"rows", "seconds", "bytes", "peak_rss_mb", ...}; "bytes" is the Parquet
file size (0 with --discard, which only fetches into Arrow: the read ceiling of this client).

Note: do NOT put `encrypt=false` in the URL for tds-test-server. ConnectorX maps it to tiberius
EncryptionLevel::Off (PRELOGIN ENCRYPT_OFF = "encrypt the login only"); the server answers
ENCRYPT_NOT_SUP, tiberius then starts a TLS handshake and panics. Without `encrypt`, ConnectorX
sends ENCRYPT_NOT_SUP and the connection is plaintext. Use --url-params to add it for a real server.
"""

from __future__ import annotations

import os
import sys
import time
from urllib.parse import quote

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import connection_parser, report  # noqa: E402


def main() -> None:
    p = connection_parser(__doc__)
    p.add_argument("--query", default="SELECT * FROM bench")
    p.add_argument("--url-params", default="", help="extra URL query string, e.g. 'encrypt=true&trust_server_certificate=true'")
    p.add_argument("--partition-on", help="integer column to split the query on (ConnectorX partitioning)")
    p.add_argument("--partition-num", type=int, default=1)
    p.add_argument("--out", default="connectorx.parquet")
    p.add_argument("--compression", default="zstd")
    p.add_argument("--discard", action="store_true", help="fetch into Arrow and drop it; write nothing")
    a = p.parse_args()

    import connectorx as cx
    import pyarrow.parquet as pq

    url = f"mssql://{quote(a.user)}:{quote(a.password)}@{a.host}:{a.port}/{a.database}"
    if a.url_params:
        url += "?" + a.url_params
    kw = {}
    if a.partition_on:
        kw = {"partition_on": a.partition_on, "partition_num": a.partition_num}
    t0 = time.perf_counter()
    table = cx.read_sql(url, a.query, return_type="arrow", **kw)
    t_fetch = time.perf_counter() - t0
    nbytes = 0
    if not a.discard:
        pq.write_table(table, a.out, compression=a.compression)
        nbytes = os.path.getsize(a.out)
    seconds = time.perf_counter() - t0
    report(tool="connectorx", rows=table.num_rows, seconds=round(seconds, 3),
           fetch_seconds=round(t_fetch, 3), bytes=nbytes)


if __name__ == "__main__":
    main()
