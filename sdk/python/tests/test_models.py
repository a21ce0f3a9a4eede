"""Parsing of the server's JSON, enums and exceptions, without a server."""

from __future__ import annotations

import datetime as dt
import pickle
from typing import Any, Dict

from sql_databricks_bridge_sdk import (
    BridgeTimeoutError,
    EventFailedError,
    EventStatus,
    Job,
    JobFailedError,
    JobPage,
    JobStatus,
    Operation,
    PermissionDeniedError,
    SyncEvent,
)

EVENT: Dict[str, Any] = {
    "event_id": "0fc2575e-530e-4bcc-a45f-3cff759e16fd", "operation": "INSERT",
    "source_table": "main.calibration.results", "target_table": "dbo.Results", "primary_keys": [],
    "filter": None, "status": "failed", "rows_affected": None,
    "error_message": "source_table: not found", "created_at": "2026-11-25T14:34:15.894300Z",
    "started_at": None, "completed_at": None, "created_by": "writer", "claimed_by": None,
}


def test_unknown_fields_and_statuses_from_a_newer_server() -> None:
    job = Job.from_dict({"id": "j", "kind": "run", "pipeline": "demo", "status": "paused",
                         "params": {}, "request": {}, "priority": 3})
    assert not job.status.known and not job.is_final
    assert job.status == "paused"
    assert job.raw["priority"] == 3
    assert JobStatus("failed") is JobStatus.FAILED and JobStatus.FAILED.is_failure
    page = JobPage.from_dict({"items": [], "total": 0, "cursor": "x"})
    assert page.next_offset is None and len(page) == 0
    event = SyncEvent.from_dict({**EVENT, "lag_ms": 12})
    assert event.status is EventStatus.FAILED and event.operation is Operation.INSERT
    assert event.id == event.event_id


def test_spark_rows_with_datetimes() -> None:
    row = {**EVENT, "created_at": dt.datetime(2026, 1, 2, 3, 4, 5), "primary_keys": None,
           "rows_affected": 7, "status": "completed"}
    event = SyncEvent.from_dict(row)
    assert event.created_at == "2026-01-02T03:04:05"
    assert event.primary_keys == [] and event.rows_affected == 7
    aware = dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)
    assert SyncEvent.from_dict({**EVENT, "created_at": aware}).created_at == "2026-01-02T00:00:00Z"


def test_operations_and_statuses_are_strings() -> None:
    assert Operation("upsert") is Operation.UPSERT and str(Operation.DELETE) == "DELETE"
    assert not Operation.INSERT.needs_keys and Operation.UPDATE.needs_keys
    assert JobStatus.SUCCEEDED == "succeeded" and f"{JobStatus.RUNNING}" == "running"
    assert EventStatus.COMPLETED.is_final and not EventStatus.RUNNING.is_final


def test_exceptions_pickle_and_carry_their_object() -> None:
    e = PermissionDeniedError("`reader` may not write dbo.Results (has read)", status=403,
                              error="forbidden", request_id="abc")
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is PermissionDeniedError and back.status == 403 and str(back) == str(e)
    job = Job.from_dict({"id": "j", "kind": "run", "pipeline": "demo", "status": "interrupted",
                         "error": "the server stopped before the job finished; resubmit it"})
    failed = JobFailedError(job)
    assert failed.detail == failed.job_error == job.error and failed.error == "job_interrupted"
    assert str(failed) == f"job j (demo) ended interrupted: {job.error}"
    assert pickle.loads(pickle.dumps(failed)).job == job
    ev = EventFailedError(SyncEvent.from_dict(EVENT))
    assert "source_table: not found" in str(ev)
    assert pickle.loads(pickle.dumps(ev)).event.event_id == EVENT["event_id"]
    timeout = BridgeTimeoutError("job j did not finish", last_status="running")
    assert pickle.loads(pickle.dumps(timeout)).last_status == "running"
