#!/usr/bin/env python3
"""mssql-python baseline: Microsoft's Python driver (its bundled ODBC driver 18) runs the query;
`cursor.arrow_reader()` returns the rows as Arrow batches (filled natively, no Python objects per
value), each written to Parquet as it arrives.

What it measures: Microsoft's own driver's fastest route to Arrow, streamed with bounded memory.
Plaintext connection (`Encrypt=no`): the test server has no TLS.

Prints one JSON line: {"rows", "seconds", "bytes", "peak_rss_mb", ...}; "bytes" is the Parquet
file size (0 with --discard, which only fetches the Arrow batches: the read ceiling of this client).
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import extract_parser, stream_to_parquet  # noqa: E402


def connection_string(host: str, port: int, database: str, user: str, password: str) -> str:
    return (f"Server={host},{port};Database={database};UID={user};PWD={password};"
            f"Encrypt=no;TrustServerCertificate=yes")


def main() -> None:
    a = extract_parser(__doc__).parse_args()

    import mssql_python

    t0 = time.perf_counter()
    conn = mssql_python.connect(connection_string(a.host, a.port, a.database, a.user, a.password),
                                autocommit=True)
    cur = conn.cursor()
    cur.execute(a.query)
    reader = cur.arrow_reader(batch_size=a.batch_size)
    stream_to_parquet("mssql-python", reader.schema, reader, a, t0)
    conn.close()


if __name__ == "__main__":
    main()
