"""run_pipeline: a pipeline file run in-process, as `bridge run` runs it."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

import bridge_operator
from bridge_operator import BridgeError
from conftest import REPO


@pytest.fixture
def project(tmp_path):
    for folder in ("pipelines", "queries", "config"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    return tmp_path


def test_the_demo_runs_in_process(project):
    summary = bridge_operator.run_pipeline(project / "pipelines" / "demo.yaml", country="colombia")
    assert summary["pipeline"] == "demo" and summary["country"] == "colombia"
    steps = {s["id"]: s for s in summary["steps"]}
    assert steps["sales"]["rows"] > 0
    assert steps["summary_to_delta"]["rows"] == steps["sales_by_region"]["rows"] > 0
    files = list((project / "output" / "volume" / "colombia" / "sales_by_region").rglob("*.parquet"))
    assert sum(pq.read_metadata(f).num_rows for f in files) == steps["sales_by_region"]["rows"]
    assert (project / "output" / "delta" / "colombia" / "sales_by_region" / "_delta_log").is_dir()
    json.dumps(summary)  # plain data


def test_the_operator_runs_pipelines_on_its_own_connection(project, server, op, monkeypatch):
    for var in ("SQLSERVER_HOST", "SQLSERVER_USERNAME", "SQLSERVER_PASSWORD", "SQLSERVER_PORT"):
        monkeypatch.delenv(var, raising=False)
    server.tsql("CREATE TABLE dbo.regions (code NVARCHAR(5) NOT NULL PRIMARY KEY, name NVARCHAR(40) NULL)")
    (project / "data").mkdir()
    (project / "data" / "regions.csv").write_text("code,name\nN,North\nS,South\n")
    (project / "pipelines" / "regions.yaml").write_text(
        "name: regions\n"
        "steps:\n"
        "  - id: regions\n"
        "    source: {type: csv, path: data/regions.csv}\n"
        "  - id: to_sql\n"
        "    sink: {type: sqlserver, from: regions, table: dbo.regions, mode: upsert, primary_keys: [code]}\n"
    )
    summary = op.run_pipeline(project / "pipelines" / "regions.yaml")
    assert {s["id"]: s["rows"] for s in summary["steps"]}["to_sql"] == 2
    assert server.rows("SELECT code, name FROM dbo.regions ORDER BY code") == [("N", "North"), ("S", "South")]


def test_a_broken_pipeline_names_its_file_and_line(project):
    broken = project / "pipelines" / "broken.yaml"
    broken.write_text("name: broken\nsteps:\n  - id: a\n    source: {type: nope}\n")
    with pytest.raises(BridgeError, match=r"broken\.yaml:\d+"):
        bridge_operator.run_pipeline(broken)
    with pytest.raises(BridgeError, match="missing.yaml"):
        bridge_operator.run_pipeline(project / "pipelines" / "missing.yaml")
