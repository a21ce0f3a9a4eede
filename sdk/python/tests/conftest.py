"""Fixtures: the real `bridge serve` on a scratch copy of the project.

The binary comes from ``BRIDGE_BIN`` (default ``<repo>/target/debug/bridge``). A missing binary
fails the tests that need it (it is never a silent skip).
"""

from __future__ import annotations

import hashlib
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import pytest

from sql_databricks_bridge_sdk import BridgeClient

REPO = Path(__file__).resolve().parents[3]
READER_TOKEN = "reader-token-0123456789-sdk"
WRITER_TOKEN = "writer-token-9876543210-sdk"

# A run long enough to cancel: a few hundred million generated rows.
SLOW_PIPELINE = """name: slow
steps:
  - id: numbers
    source:
      type: sqlite
      database: output/slow.db
      seed: config/slow_seed.sql
      sql: "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 500000000) SELECT x, x * 2 AS y FROM n"
  - id: out
    sink:
      type: volume
      from: numbers
      destination: output/slow
      path: numbers
"""


@dataclass
class Server:
    base_url: str
    root: Path
    process: "subprocess.Popen[str]"
    log: Path

    def client(self, token: str = READER_TOKEN, **kwargs: object) -> BridgeClient:
        return BridgeClient(self.base_url, token, **kwargs)  # type: ignore[arg-type]

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _bridge_bin() -> Path:
    configured = os.environ.get("BRIDGE_BIN")
    path = Path(configured) if configured else REPO / "target" / "debug" / "bridge"
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"the bridge binary is missing at {path}: run `cargo build` in {REPO} "
            "(or point BRIDGE_BIN at a built `bridge`)",
            pytrace=False,
        )
    return path


def _permissions() -> str:
    writer_sha256 = hashlib.sha256(WRITER_TOKEN.encode("utf-8")).hexdigest()
    return f"""users:
  - name: reader
    token: "{READER_TOKEN}"
    permissions:
      - table: "*"
        access: read
      - lakehouse_table: "*"
        access: read_write
  - name: writer
    token_sha256: "{writer_sha256}"
    permissions:
      - table: dbo.Results
        access: read_write
      - lakehouse_table: "main.*"
        access: read
"""


@pytest.fixture(scope="session")
def bridge_bin() -> Path:
    return _bridge_bin()


@pytest.fixture(scope="session")
def server(bridge_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("bridge-project")
    for folder in ("config", "queries", "pipelines"):
        shutil.copytree(REPO / folder, root / folder)
    (root / "config" / "permissions.yaml").write_text(_permissions())
    (root / "config" / "slow_seed.sql").write_text("CREATE TABLE IF NOT EXISTS unused (x INTEGER);\n")
    (root / "pipelines" / "slow.yaml").write_text(SLOW_PIPELINE)

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SQLSERVER_", "BRIDGE_", "DATABRICKS_")) and k != "RUST_LOG"
    }
    env["RUST_LOG"] = "info"
    log = root.parent / "bridge-serve.log"
    log_file = open(log, "w")
    process = subprocess.Popen(
        [
            str(bridge_bin),
            "--root",
            str(root),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-schedules",
            "--poll-interval",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=log_file,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    lines: "queue.Queue[str]" = queue.Queue()

    def read_stdout() -> None:
        assert process.stdout is not None
        for line in process.stdout:  # keep draining so the server never blocks on the pipe
            lines.put(line.rstrip("\n"))

    threading.Thread(target=read_stdout, daemon=True).start()
    try:
        first = lines.get(timeout=60)
    except queue.Empty:
        process.kill()
        process.wait()
        log_file.close()
        pytest.fail(f"bridge serve printed no address within 60 s:\n{log.read_text()}", pytrace=False)
    prefix = "listening on "
    if not first.startswith(prefix):
        process.kill()
        process.wait()
        log_file.close()
        pytest.fail(f"unexpected first line of bridge serve: {first!r}\n{log.read_text()}", pytrace=False)
    srv = Server(base_url=first[len(prefix):].strip(), root=root, process=process, log=log)
    try:
        yield srv
    finally:
        code: Optional[int]
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                code = None
        else:
            code = process.returncode
        log_file.close()
        assert code == 0, f"bridge serve exited {code} after SIGTERM\n{srv.log_tail()}"


@pytest.fixture
def reader(server: Server) -> BridgeClient:
    return server.client(READER_TOKEN)


@pytest.fixture
def writer(server: Server) -> BridgeClient:
    return server.client(WRITER_TOKEN)


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition never held")
        time.sleep(interval)
