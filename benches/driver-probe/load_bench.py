"""Creates and fills the `bench` table of a TDS test server with benches/benchlib.py's data set.

    python load_bench.py PORT [ROWS]   # default 1,000,000 rows, in chunks of 200,000

Needs mssql_python, polars and pyarrow (benches/requirements.txt). The server must be empty of a
`bench` table (it is dropped first when present).
"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import benchlib  # noqa: E402
import mssql_python  # noqa: E402

port = int(sys.argv[1])
rows = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
chunk = 200_000

conn = mssql_python.connect(
    f"Server=127.0.0.1,{port};Database=master;UID=sa;PWD=x;Encrypt=no", autocommit=True
)
cur = conn.cursor()
cur.execute("IF OBJECT_ID('bench') IS NOT NULL DROP TABLE bench")
# benchlib's columns without the PRIMARY KEY (the probe reads the table as a heap).
cur.execute(
    "CREATE TABLE bench (id INT NOT NULL, big BIGINT, amount DECIMAL(18,4), name NVARCHAR(50), "
    "ts DATETIME2, flag BIT, guid UNIQUEIDENTIFIER, score FLOAT, d DATE, note VARCHAR(200))"
)
t0 = time.time()
for start in range(0, rows, chunk):
    t = benchlib.generate(start, min(chunk, rows - start))
    cur.bulkcopy_arrow("bench", t)
    print(f"loaded {start + t.num_rows} rows ({time.time() - t0:.1f} s)", flush=True)
cur.execute("SELECT COUNT(*) FROM bench")
print("rows in bench:", cur.fetchone()[0])
conn.close()
