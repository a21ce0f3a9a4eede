"""BridgeClient against the real `bridge serve`."""

from __future__ import annotations

import pickle
import traceback
import uuid

import pytest

from conftest import READER_TOKEN, WRITER_TOKEN, Server, wait_until
from sql_databricks_bridge_sdk import (
    AuthenticationError,
    BridgeClient,
    BridgeError,
    BridgeTimeoutError,
    ConflictError,
    EventFailedError,
    EventStatus,
    JobFailedError,
    JobStatus,
    NotFoundError,
    Operation,
    PermissionDeniedError,
    ValidationError,
)


def test_health_and_ready(reader: BridgeClient) -> None:
    assert reader.health() == {"status": "ok"}
    ready = reader.ready()
    assert ready.ready is True, ready
    assert ready.checks["config"] == "ok"
    assert ready.checks["permissions"] == "ok"
    assert ready.version
    assert "/runs" in reader.openapi()["paths"]


def test_run_pipeline_and_wait_for_job(reader: BridgeClient) -> None:
    job = reader.run_pipeline("demo", country="colombia")
    assert job.id
    assert job.pipeline == "demo"
    assert job.kind == "run"
    assert job.status in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED)
    done = reader.wait_for_job(job.id, timeout=120, poll_interval=0.1, max_interval=0.5)
    assert done.status is JobStatus.SUCCEEDED
    assert done.succeeded and done.is_final
    assert done.country == "colombia"
    assert done.submitted_by == "reader"
    assert done.pipeline_file == "pipelines/demo.yaml"
    # The run went through the queue: its request names the queue item it ran as.
    item = done.request.pop("event_id")
    assert uuid.UUID(item)
    assert done.request == {"pipeline": "demo", "country": "colombia", "params": {}}
    assert done.error is None
    assert done.created_at and done.started_at and done.finished_at
    steps = {s.id: s for s in done.steps}
    assert {"sales", "products", "sales_by_region", "sales_to_volume"} <= set(steps)
    sinks = [s for s in done.steps if s.kind == "sink"]
    assert sinks and all(s.rows > 0 for s in sinks), done.steps
    assert steps["sales_to_volume"].rows == steps["sales"].rows
    assert any(o.endswith(".parquet") for o in steps["sales_to_volume"].outputs)
    assert all(s.duration_ms >= 0 for s in done.steps)
    assert done.rows_by_step["sales_by_region"] == steps["sales_by_region"].rows
    # A Job object works as an id too.
    assert reader.get_job(done).id == done.id


def test_run_pipeline_with_params(reader: BridgeClient) -> None:
    job = reader.run_pipeline("demo.yaml", country="mexico", params={"start_date": "2024-03-01"})
    done = reader.wait_for_job(job, timeout=120, poll_interval=0.1, max_interval=0.5)
    assert done.params == {"start_date": "2024-03-01"}
    assert done.country == "mexico"


def test_list_jobs_filters(reader: BridgeClient) -> None:
    first = reader.wait_for_job(reader.run_pipeline("demo", country="colombia"), poll_interval=0.1)
    second = reader.wait_for_job(reader.run_pipeline("demo", country="mexico"), poll_interval=0.1)

    page = reader.list_jobs(status=JobStatus.SUCCEEDED, pipeline="demo")
    assert page.total >= 2
    ids = [j.id for j in page.items]
    assert first.id in ids and second.id in ids
    assert ids.index(second.id) < ids.index(first.id), "newest first"
    assert all(j.status is JobStatus.SUCCEEDED and j.pipeline == "demo" for j in page)

    assert all(j.pipeline != "demo" for j in reader.list_jobs(pipeline="colombia").items)
    failed = reader.list_jobs(status="failed", pipeline="demo")
    assert first.id not in [j.id for j in failed.items]

    # Pagination: one per page, next_offset chains the pages, the last page has none.
    one = reader.list_jobs(pipeline="demo", status="succeeded", limit=1)
    assert len(one) == 1 and one.total == page.total and one.next_offset == 1
    last = reader.list_jobs(pipeline="demo", status="succeeded", limit=1, offset=page.total - 1)
    assert len(last) == 1 and last.next_offset is None
    everything = list(reader.iter_jobs(pipeline="demo", status="succeeded", page_size=1))
    assert len(everything) == page.total

    with pytest.raises(ValidationError) as info:
        reader.list_jobs(status="sleeping")
    assert info.value.field == "status"
    assert info.value.status == 400


def test_extract_with_the_original_arguments(server: Server, reader: BridgeClient) -> None:
    job = reader.extract(
        country="Colombia",
        destination="output/extract",
        queries=["sales"],
        queries_path="queries",
        config_path="config",
    )
    assert job.kind == "extract"
    done = reader.wait_for_job(job.id, timeout=120, poll_interval=0.1, max_interval=0.5)
    assert done.status is JobStatus.SUCCEEDED
    assert done.request["queries"] == ["sales"]
    assert done.request["destination"] == "output/extract"
    assert done.request["queries_path"] == "queries"
    files = [p.relative_to(server.root / "output/extract/colombia").as_posix()
             for p in (server.root / "output/extract/colombia").rglob("*") if p.is_file()]
    assert any(f.startswith("sales/") and f.endswith(".parquet") for f in files), files
    assert not any(f.startswith("products/") for f in files), "only the asked query"


def test_extract_refusals_name_the_field(reader: BridgeClient) -> None:
    with pytest.raises(ValidationError) as info:
        reader.extract("colombia", "output/x", queries_path="../../etc")
    assert info.value.field == "queries_path"
    with pytest.raises(ValidationError) as info:
        reader.extract("colombia", "/etc/x")
    assert info.value.field == "destination"
    with pytest.raises(ValidationError) as info:
        reader.extract("colombia", "output/x", queries=["nope"])
    assert info.value.field == "queries"
    assert "nope" in info.value.detail


def test_wrong_token_is_authentication_error_without_the_token(server: Server) -> None:
    secret = "not-a-token-of-anyone-5f1e2d"
    client = BridgeClient(server.base_url, secret)
    with pytest.raises(AuthenticationError) as info:
        client.list_jobs()
    error = info.value
    assert error.status == 401
    assert error.error == "unauthorized"
    assert error.request_id
    rendered = [
        str(error),
        repr(error),
        repr(client),
        str(error.args),
        "".join(traceback.format_exception(type(error), error, error.__traceback__)),
        repr(vars(error)),
        repr(pickle.loads(pickle.dumps(error))),
    ]
    for text in rendered:
        assert secret not in text
    # Nor does a valid token show up anywhere of an error or a client.
    with pytest.raises(NotFoundError) as missing:
        server.client(READER_TOKEN).get_job("no-such-job")
    assert READER_TOKEN not in str(missing.value) + repr(missing.value) + repr(server.client(READER_TOKEN))


def test_reader_cannot_sync_to_results(reader: BridgeClient) -> None:
    with pytest.raises(PermissionDeniedError) as info:
        reader.submit_sync_event(
            "UPSERT", "main.calibration.results", "dbo.Results", primary_keys=["id"]
        )
    error = info.value
    assert error.status == 403
    assert error.error == "forbidden"
    assert "dbo.Results" in str(error)
    assert "write" in error.detail and "reader" in error.detail
    assert isinstance(error, BridgeError)


def test_writer_sync_event_is_pending_then_fails_without_sqlserver(writer: BridgeClient) -> None:
    event = writer.submit_sync_event(
        Operation.UPSERT,
        "main.calibration.results",
        "dbo.Results",
        primary_keys=["id"],
        filter="period = '2024-06'",
    )
    assert event.status in (EventStatus.PENDING, EventStatus.RUNNING, EventStatus.FAILED)
    assert event.operation is Operation.UPSERT
    assert event.target_table == "dbo.Results"
    assert event.primary_keys == ["id"]
    assert event.filter == "period = '2024-06'"
    assert event.created_by == "writer"
    assert writer.get_event(event.event_id).event_id == event.event_id
    with pytest.raises(EventFailedError) as info:
        writer.wait_for_event(event.event_id, timeout=60, poll_interval=0.1, max_interval=0.5)
    failed = info.value.event
    assert failed.status is EventStatus.FAILED
    assert failed.error_message
    assert info.value.error_message == failed.error_message
    assert failed.error_message in str(info.value)
    assert failed.completed_at


def test_sync_validation_names_the_field(writer: BridgeClient) -> None:
    with pytest.raises(ValidationError) as info:
        writer.submit_sync_event("UPSERT", "main.calibration.results", "dbo.Results")
    assert info.value.field == "primary_keys"
    with pytest.raises(ValidationError) as info:
        writer.submit_sync_event("MERGE", "main.calibration.results", "dbo.Results", ["id"])
    assert info.value.field == "operation"
    with pytest.raises(ValidationError) as info:
        writer.submit_sync_event("INSERT", "a;b", "dbo.Results")
    assert info.value.field == "source_table"


def test_unknown_job_and_event_are_not_found(reader: BridgeClient) -> None:
    with pytest.raises(NotFoundError) as info:
        reader.get_job("no-such-job")
    assert info.value.status == 404 and "no-such-job" in info.value.detail
    with pytest.raises(NotFoundError):
        reader.get_event("00000000-0000-4000-8000-000000000000")
    with pytest.raises(NotFoundError) as info:
        reader.run_pipeline("nope")
    assert "demo" in info.value.detail, "lists the known pipelines"
    with pytest.raises(NotFoundError):
        reader.cancel_job("no-such-job")


def test_bad_body_is_validation_error_naming_country(reader: BridgeClient) -> None:
    with pytest.raises(ValidationError) as info:
        reader.run_pipeline("demo", country=7)  # type: ignore[arg-type]
    assert info.value.field == "country"
    assert info.value.status == 400
    assert info.value.error == "invalid_request"


def test_country_the_pipeline_does_not_list_is_400_naming_country(reader: BridgeClient) -> None:
    with pytest.raises(ValidationError) as info:
        reader.run_pipeline("demo", country="atlantis")
    assert info.value.status == 400
    assert info.value.field == "country"
    assert "colombia" in info.value.detail


def test_cancel_finished_job_conflicts(reader: BridgeClient) -> None:
    done = reader.wait_for_job(reader.run_pipeline("demo", country="colombia"), poll_interval=0.1)
    with pytest.raises(ConflictError) as info:
        reader.cancel_job(done.id)
    assert info.value.status == 409
    assert "succeeded" in info.value.detail


def test_cancel_running_job_and_wait_timeout(reader: BridgeClient) -> None:
    job = reader.run_pipeline("slow")
    try:
        wait_until(lambda: reader.get_job(job.id).status is JobStatus.RUNNING, timeout=60)
        with pytest.raises(BridgeTimeoutError) as info:
            reader.wait_for_job(job.id, timeout=0.3, poll_interval=0.1)
        assert info.value.last_status == "running"
    finally:
        cancelled = reader.cancel_job(job.id)
    assert cancelled.id == job.id
    with pytest.raises(JobFailedError) as failed:
        reader.wait_for_job(job.id, timeout=60, poll_interval=0.1, max_interval=0.5)
    assert failed.value.job.status is JobStatus.CANCELLED
    assert failed.value.error == "job_cancelled"
    assert "cancelled" in str(failed.value)


def test_writer_token_is_hashed_in_the_permissions_file(server: Server, writer: BridgeClient) -> None:
    text = (server.root / "config" / "permissions.yaml").read_text()
    assert WRITER_TOKEN not in text and "token_sha256" in text
    assert writer.list_jobs(limit=1).total >= 0


def test_run_event_runs_the_pipeline_and_reports_its_job(reader: BridgeClient) -> None:
    event = reader.submit_run_event("demo", country="colombia", params={"start_date": "2024-02-01"})
    assert event.operation is Operation.RUN
    assert event.pipeline == "demo" and event.country == "colombia"
    assert event.params == {"start_date": "2024-02-01"}
    done = reader.wait_for_event(event.event_id, timeout=120, poll_interval=0.1, max_interval=0.5)
    assert done.status is EventStatus.COMPLETED
    assert done.job_id and done.rows_affected and done.rows_affected > 0
    job = reader.get_job(done.job_id)
    assert job.status is JobStatus.SUCCEEDED
    assert job.kind == "event" and job.submitted_by == "reader"
    assert sum(s.rows for s in job.steps if s.kind == "sink") == done.rows_affected


def test_run_event_refusals_name_the_field(reader: BridgeClient) -> None:
    with pytest.raises(NotFoundError) as missing:
        reader.submit_run_event("nope")
    assert missing.value.field == "pipeline"
    with pytest.raises(ValidationError) as country:
        reader.submit_run_event("demo", country="atlantis")
    assert country.value.field == "country"
    with pytest.raises(ValidationError) as param:
        reader.submit_run_event("demo", params={"volume_root": "/tmp"})
    assert param.value.field == "params.volume_root"
