#!/usr/bin/env python3
"""Real SQL Server clients against tds-test-server: the server is a double, so the clients judge it.

Each check starts from a fresh server (the binary given by --server, a scratch SQLite file) and
uses a client the way its users do; any difference from what SQL Server answers fails the run:

- Microsoft's mssql-python (bundled ODBC Driver 18 + its Rust bulk-copy core):
  parameterised statements (`sp_prepexec`, then `sp_execute` on the same handle, `sp_unprepare`),
  `bulkcopy` of Arrow data with a DATE column followed by others (SqlBulkCopy's metadata batch,
  a DATE TYPE_INFO without a length byte, a bulk load ending with a short DONE), Arrow fetch;
- arrow-odbc over FreeTDS' ODBC driver (Debian `tdsodbc`): a query to Arrow;
- FreeTDS' `freebcp` (Debian `freetds-bin`): `SET FMTONLY ON` metadata and a bulk load that ends
  without a DONE token;
- `SET FMTONLY ON` itself: column metadata, no rows, no writes.

Run by benches/check.sh (CI) with the bench venv: `python check_clients.py --server PATH`.
Exits non-zero listing every failed check.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A tds-test-server process on a free port with a scratch database."""

    def __init__(self, binary: str, workdir: str):
        self.port = free_port()
        self.log = open(os.path.join(workdir, f"server-{self.port}.log"), "w")
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--db",
                                      os.path.join(workdir, f"db-{self.port}.db")],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"tds-test-server did not listen on {self.port}")

    def mssql(self):
        import mssql_python

        conn = mssql_python.connect(f"Server=127.0.0.1,{self.port};Database=master;UID=sa;PWD=x;"
                                    "Encrypt=no;TrustServerCertificate=yes")
        conn.autocommit = True
        return conn

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


def expect(what: str, got, want) -> None:
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, expected {want!r}")


def mssql_python_prepared(s: Server) -> None:
    cur = s.mssql().cursor()
    cur.execute("CREATE TABLE p (id INT NOT NULL, name NVARCHAR(20))")
    # executemany prepares once and executes the handle for each row.
    cur.executemany("INSERT INTO p (id, name) VALUES (?, ?)", [(1, "a"), (2, "b"), (3, None)])
    cur.execute("SELECT name FROM p WHERE id >= ? ORDER BY id", 2)
    expect("rows of a parameterised query", [tuple(r) for r in cur.fetchall()], [("b",), (None,)])
    cur.execute("SELECT name FROM p WHERE id >= ? ORDER BY id", 3)
    expect("the same statement again", [tuple(r) for r in cur.fetchall()], [(None,)])


def mssql_python_bulkcopy(s: Server) -> None:
    import pyarrow as pa

    cur = s.mssql().cursor()
    cur.execute("CREATE TABLE b (id INT NOT NULL, d DATE, name NVARCHAR(20), amount DECIMAL(18,4))")
    import decimal

    t = pa.table({
        "id": pa.array([1, 2, 3], pa.int32()),
        "d": pa.array([dt.date(2024, 2, 29), None, dt.date(1, 1, 1)], pa.date32()),
        "name": pa.array(["x", None, "zz"]),
        "amount": pa.array([decimal.Decimal("1.5000"), None, decimal.Decimal("-2.0001")],
                           pa.decimal128(18, 4)),
    })
    r = cur.bulkcopy_arrow("b", t)
    expect("rows copied", r["rows_copied"], 3)
    cur.execute("SELECT id, d, name, amount FROM b ORDER BY id")
    expect("table after bulkcopy", [tuple(r) for r in cur.fetchall()], [
        (1, dt.date(2024, 2, 29), "x", decimal.Decimal("1.5000")),
        (2, None, None, None),
        (3, dt.date(1, 1, 1), "zz", decimal.Decimal("-2.0001")),
    ])
    cur.execute("SELECT id, name FROM b ORDER BY id")
    got = cur.arrow()
    expect("arrow fetch", got.to_pydict(), {"id": [1, 2, 3], "name": ["x", None, "zz"]})


def fmtonly(s: Server) -> None:
    cur = s.mssql().cursor()
    cur.execute("CREATE TABLE f (id INT NOT NULL, name NVARCHAR(20))")
    cur.execute("INSERT INTO f VALUES (1, N'a')")
    cur.execute("SET FMTONLY ON; SELECT * FROM f; INSERT INTO f VALUES (2, N'b'); SET FMTONLY OFF")
    expect("columns under FMTONLY", [d[0] for d in cur.description], ["id", "name"])
    expect("rows under FMTONLY", cur.fetchall(), [])
    cur.execute("SELECT COUNT(*) FROM f")
    expect("writes under FMTONLY did not run", cur.fetchone()[0], 1)


def arrow_odbc(s: Server) -> None:
    import arrow_odbc as ao

    cur = s.mssql().cursor()
    cur.execute("CREATE TABLE o (id INT NOT NULL, name NVARCHAR(20), score FLOAT)")
    cur.execute("INSERT INTO o VALUES (1, N'é', 0.5), (2, NULL, NULL)")
    reader = ao.read_arrow_batches_from_odbc(
        query="SELECT id, name, score FROM o ORDER BY id", batch_size=1000,
        connection_string=f"Driver={{FreeTDS}};Server=127.0.0.1;Port={s.port};Database=master;"
                          "UID=sa;PWD=x;TDS_Version=7.4;ClientCharset=UTF-8")
    rows = {k: [] for k in ("id", "name", "score")}
    for batch in reader:
        for k, v in batch.to_pydict().items():
            rows[k] += v
    expect("arrow-odbc rows", rows, {"id": [1, 2], "name": ["é", None], "score": [0.5, None]})


def freebcp(s: Server, workdir: str) -> None:
    cur = s.mssql().cursor()
    cur.execute("CREATE TABLE fb (id INT NOT NULL, name NVARCHAR(20))")
    path = os.path.join(workdir, "fb.txt")
    with open(path, "w") as f:
        f.write("".join(f"{i}\tname {i}\n" for i in range(1, 1001)))
    out = subprocess.run(["freebcp", "fb", "in", path, "-S", f"127.0.0.1:{s.port}", "-U", "sa", "-P", "x",
                          "-D", "master", "-c", "-b", "400"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0 or "1000 rows copied" not in out.stdout:
        raise AssertionError(f"freebcp exit {out.returncode}: {out.stdout}{out.stderr}")
    cur.execute("SELECT COUNT(*), MIN(name), MAX(id) FROM fb")
    expect("table after freebcp", tuple(cur.fetchone()), (1000, "name 1", 1000))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", required=True, help="tds-test-server binary")
    a = p.parse_args()
    work = tempfile.mkdtemp(prefix="tds-clients-")
    checks = [mssql_python_prepared, mssql_python_bulkcopy, fmtonly, arrow_odbc,
              lambda s: freebcp(s, work)]
    names = ["mssql-python prepared statements", "mssql-python bulkcopy + Arrow fetch", "SET FMTONLY",
             "arrow-odbc (FreeTDS ODBC)", "freebcp"]
    failed = []
    for name, check in zip(names, checks):
        server = Server(a.server, work)
        try:
            check(server)
            print(f"ok   {name}", flush=True)
        except Exception as e:  # every client error is a finding about the server
            failed.append(name)
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
            traceback.print_exc()
        finally:
            server.stop()
    if failed:
        print(f"{len(failed)} of {len(checks)} client checks failed (server logs in {work}): "
              + ", ".join(failed), file=sys.stderr)
        return 1
    print(f"{len(checks)} client checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
