"""Fixtures: a fresh TDS test server per test (crates/tds-test-server, SQLite-backed), a
python-tds connection to set tables up and read them back, an operator pointed at the server,
and one local Spark session (``local[2]``) for the whole run."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]


def _server_binary() -> str:
    explicit = os.environ.get("TDS_TEST_SERVER")
    if explicit:
        return explicit
    target = os.environ.get("CARGO_TARGET_DIR") or str(REPO / "target")
    return str(pathlib.Path(target) / "debug" / "tds-test-server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, port: int, process: subprocess.Popen):
        self.port = port
        self.process = process

    def tsql(self, sql: str) -> None:
        """Runs statements (setup) with python-tds."""
        with self.connect() as c, c.cursor() as cur:
            cur.execute(sql)

    def rows(self, sql: str) -> list:
        with self.connect() as c, c.cursor() as cur:
            cur.execute(sql)
            return [tuple(r) for r in cur.fetchall()]

    def connect(self):
        import pytds

        return pytds.connect(
            dsn="127.0.0.1", port=self.port, database="master", user="sa",
            password="setup", autocommit=True,
        )


@pytest.fixture
def server():
    binary = _server_binary()
    if not os.path.exists(binary):
        pytest.fail(f"{binary} is missing: build it with `cargo build -p tds-test-server`")
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    line = process.stdout.readline()
    if "listening" not in line:
        process.kill()
        pytest.fail(f"tds-test-server did not start: {line}")
    yield Server(port, process)
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def op(server):
    from bridge_operator import BridgeOperator

    return BridgeOperator(
        "127.0.0.1", "master", "sa", "s3cr3t-pw", port=server.port, encrypt="danger_plaintext"
    )


@pytest.fixture(scope="session")
def spark():
    from pyspark.sql import SparkSession

    # Spark's Python workers run this interpreter (the one with pyarrow and this package).
    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local[2]")
        .appName("bridge-operator-tests")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    yield session
    session.stop()
