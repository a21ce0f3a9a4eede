#!/usr/bin/env python3
"""arrow-odbc baseline: an ODBC driver (FreeTDS by default) fills column buffers that arrow-odbc
(Rust, odbc-api) turns into Arrow batches; each batch is written to Parquet as it arrives.

What it measures: the strongest ODBC route from SQL Server to Parquet in Python, streamed with
bounded memory (`read_arrow_batches_from_odbc` with `fetch_concurrently`: the next row set is
fetched on a second thread while the current one is converted and written).

Needs the system's unixODBC and the FreeTDS ODBC driver registered as `FreeTDS` in
/etc/odbcinst.ini (Debian: apt-get install tdsodbc unixodbc; benches/check.sh does it).

Prints one JSON line: {"rows", "seconds", "bytes", "peak_rss_mb", ...}; "bytes" is the Parquet
file size (0 with --discard, which only fetches the Arrow batches: the read ceiling of this client).
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import extract_parser, stream_to_parquet  # noqa: E402


def main() -> None:
    p = extract_parser(__doc__)
    p.add_argument("--driver", default="FreeTDS", help="ODBC driver name (default FreeTDS)")
    p.add_argument("--tds-version", default="7.4")
    a = p.parse_args()

    import arrow_odbc

    conn = (f"Driver={{{a.driver}}};Server={a.host};Port={a.port};Database={a.database};"
            f"UID={a.user};PWD={a.password};TDS_Version={a.tds_version}")
    t0 = time.perf_counter()
    reader = arrow_odbc.read_arrow_batches_from_odbc(query=a.query, connection_string=conn,
                                                     batch_size=a.batch_size)
    stream_to_parquet("arrow-odbc", reader.schema, reader, a, t0)


if __name__ == "__main__":
    main()
