"""Fixtures: a fresh TDS test server per test (crates/tds-test-server, SQLite-backed), a
python-tds connection to set tables up and read them back, an operator pointed at the server,
and one local Spark session (``local[2]``) for the whole run."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import urllib.request

import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]


def _binary(name: str, variable: str) -> str:
    explicit = os.environ.get(variable)
    if explicit:
        return explicit
    target = os.environ.get("CARGO_TARGET_DIR") or str(REPO / "target")
    path = pathlib.Path(target) / "debug" / name
    if not path.exists():
        pytest.fail(f"{path} is missing: build it with `cargo build -p {name}`")
    return str(path)


def _start(cmd: list, ready: str) -> tuple:
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = process.stdout.readline()
    if ready not in line:
        process.kill()
        pytest.fail(f"{cmd[0]} did not start: {line}")
    return process, line


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
    port = _free_port()
    process, _ = _start([_binary("tds-test-server", "TDS_TEST_SERVER"), "--port", str(port)], "listening")
    yield Server(port, process)
    process.terminate()
    process.wait(timeout=10)


class Workspace:
    """crates/databricks-double: a Databricks REST double (Statement Execution on SQLite)."""

    def __init__(self, line: str):
        words = line.split()
        self.url = words[words.index("on") + 1]
        self.token = words[words.index("token") + 1]
        self.warehouse = words[words.index("warehouse") + 1]

    def sql(self, statement: str) -> dict:
        request = urllib.request.Request(
            f"{self.url}/api/2.0/sql/statements",
            data=json.dumps({"warehouse_id": self.warehouse, "statement": statement,
                             "wait_timeout": "30s"}).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request) as answer:
            body = json.load(answer)
        assert body["status"]["state"] == "SUCCEEDED", body
        return body

    def environment(self, monkeypatch, tmp_path) -> None:
        """Points the operator at this workspace through the environment, as a job outside
        Databricks would."""
        monkeypatch.setenv("DATABRICKS_HOST", self.url)
        monkeypatch.setenv("DATABRICKS_TOKEN", self.token)
        monkeypatch.setenv("DATABRICKS_WAREHOUSE_ID", self.warehouse)
        monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "no-databrickscfg"))


@pytest.fixture
def workspace():
    process, line = _start([_binary("databricks-double", "DATABRICKS_DOUBLE")], "listening")
    yield Workspace(line)
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
