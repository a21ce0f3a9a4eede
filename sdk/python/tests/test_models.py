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


RUN_EVENT: Dict[str, Any] = {
    **EVENT, "operation": "RUN", "source_table": "", "target_table": "", "status": "completed",
    "error_message": None, "rows_affected": 9, "pipeline": "demo", "country": "colombia",
    "params": '{"flag": true, "limit": 3, "start_date": "2024-06-01"}', "job_id": "job-3",
}


def test_run_events_parse() -> None:
    event = SyncEvent.from_dict(RUN_EVENT)
    assert event.operation is Operation.RUN and event.is_run
    assert not Operation.RUN.is_sync and Operation.UPSERT.is_sync
    assert not Operation.RUN.needs_keys
    assert Operation("run") is Operation.RUN and str(Operation.RUN) == "RUN"
    assert (event.pipeline, event.country, event.job_id) == ("demo", "colombia", "job-3")
    assert event.params == {"flag": True, "limit": 3, "start_date": "2024-06-01"}
    assert event.params_text == RUN_EVENT["params"]
    assert event.rows_affected == 9 and event.source_table == ""
    # A Spark row of an older table, or a sync event of the REST API: no RUN keys at all.
    sync = SyncEvent.from_dict(EVENT)
    assert not sync.is_run
    assert (sync.pipeline, sync.country, sync.params, sync.params_text, sync.job_id) == (
        None, None, None, None, None)
    # Params text that is not a JSON object stays available as text.
    odd = SyncEvent.from_dict({**RUN_EVENT, "params": "[1, 2]"})
    assert odd.params is None and odd.params_text == "[1, 2]"
    assert SyncEvent.from_dict({**RUN_EVENT, "params": "{not json"}).params_text == "{not json"
    # A server that sends the params as an object (not text) works too.
    obj = SyncEvent.from_dict({**RUN_EVENT, "params": {"b": 1, "a": "x"}})
    assert obj.params == {"b": 1, "a": "x"} and obj.params_text == '{"a": "x", "b": 1}'


def test_failed_run_event_error() -> None:
    failed = SyncEvent.from_dict({**RUN_EVENT, "status": "failed", "rows_affected": None,
                                  "error_message": "step `sales`: no such table"})
    error = EventFailedError(failed)
    assert error.error_message == error.detail == "step `sales`: no such table"
    assert str(error) == (
        f"event {EVENT['event_id']} (RUN of pipeline demo for colombia, job job-3) ended "
        "failed: step `sales`: no such table"
    )
    back = pickle.loads(pickle.dumps(error))
    assert back.event == failed and str(back) == str(error)
