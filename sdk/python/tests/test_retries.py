"""Retries, redirects and error parsing against a tiny local HTTP server with scripted answers."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

from sql_databricks_bridge_sdk import (
    BridgeClient,
    BridgeConnectionError,
    BridgeError,
    BridgeEventsClient,
    ConflictError,
    EventFailedError,
    EventStatus,
    JobStatus,
    NotFoundError,
    Operation,
    PermissionDeniedError,
    ValidationError,
)

# (status, headers, body, delay in seconds)
Answer = Tuple[int, Dict[str, str], object, float]


class Scripted:
    """A local server answering each (method, path) from a script; records every request."""

    def __init__(self) -> None:
        self.script: Dict[Tuple[str, str], List[Answer]] = {}
        self.requests: List[Tuple[str, str, Dict[str, str], bytes]] = []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                scripted.requests.append((self.command, self.path, dict(self.headers), body))
                answers = scripted.script.get((self.command, self.path.split("?")[0]))
                unscripted: Answer = (404, {}, {"error": "not_found", "detail": "unscripted"}, 0.0)
                answer = unscripted if not answers else answers.pop(0) if len(answers) > 1 else answers[0]
                status, headers, payload, delay = answer
                if delay:
                    time.sleep(delay)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("x-request-id", "scripted-request")
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_DELETE = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def on(self, method: str, path: str, *answers: Answer) -> None:
        self.script[(method, path)] = list(answers)

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p, _, _ in self.requests if m == method and p.split("?")[0] == path)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    server = Scripted()
    yield server
    server.close()


JOB = {
    "id": "j1", "kind": "run", "pipeline": "demo", "pipeline_file": "pipelines/demo.yaml",
    "country": None, "params": {}, "status": "queued", "submitted_by": "reader",
    "created_at": "2026-01-01T00:00:00.000000Z", "started_at": None, "finished_at": None,
    "error": None, "summary": None, "request": {"pipeline": "demo"},
}
TOKEN = "scripted-secret-token-abc"


def client(server: Scripted, sleeps: Optional[List[float]] = None, **kwargs: object) -> BridgeClient:
    record = sleeps if sleeps is not None else []
    return BridgeClient(server.base_url, TOKEN, sleep=record.append, **kwargs)  # type: ignore[arg-type]


def test_503_with_retry_after_is_retried_until_200(scripted: Scripted) -> None:
    busy: Answer = (503, {"Retry-After": "0"}, {"error": "not_ready", "detail": "busy"}, 0.0)
    scripted.on("GET", "/jobs/j1", busy, busy, (200, {}, JOB, 0.0))
    sleeps: List[float] = []
    job = client(scripted, sleeps).get_job("j1")
    assert job.id == "j1" and job.status is JobStatus.QUEUED
    assert scripted.count("GET", "/jobs/j1") == 3
    assert sleeps == [0.0, 0.0], "Retry-After: 0 honoured"
    # The same request id on every attempt, the token on every attempt.
    ids = {h.get("x-request-id") for _, _, h, _ in scripted.requests}
    assert len(ids) == 1
    assert all(h.get("Authorization") == f"Bearer {TOKEN}" for _, _, h, _ in scripted.requests)


def test_retry_after_seconds_are_honoured_and_429_retried(scripted: Scripted) -> None:
    scripted.on("GET", "/jobs/j1", (429, {"Retry-After": "2"}, {"error": "busy", "detail": "slow down"}, 0.0),
                (200, {}, JOB, 0.0))
    sleeps: List[float] = []
    client(scripted, sleeps).get_job("j1")
    assert sleeps == [2.0]


def test_gives_up_after_the_retries(scripted: Scripted) -> None:
    scripted.on("GET", "/jobs/j1", (503, {}, {"error": "not_ready", "detail": "still busy"}, 0.0))
    sleeps: List[float] = []
    with pytest.raises(BridgeError) as info:
        client(scripted, sleeps, retries=2, backoff=0.1).get_job("j1")
    assert info.value.status == 503 and info.value.detail == "still busy"
    assert scripted.count("GET", "/jobs/j1") == 3
    assert len(sleeps) == 2 and sleeps[0] <= 0.1 and sleeps[1] <= 0.2, "exponential backoff"


def test_400_is_not_retried(scripted: Scripted) -> None:
    scripted.on("GET", "/jobs/j1", (400, {}, {"error": "invalid_request", "detail": "bad", "field": "id"}, 0.0))
    with pytest.raises(ValidationError) as info:
        client(scripted).get_job("j1")
    assert scripted.count("GET", "/jobs/j1") == 1
    assert info.value.field == "id"
    assert info.value.request_id == "scripted-request"


def test_409_and_500_are_not_retried(scripted: Scripted) -> None:
    scripted.on("DELETE", "/jobs/j1", (409, {}, {"error": "conflict", "detail": "already succeeded"}, 0.0))
    with pytest.raises(ConflictError):
        client(scripted).cancel_job("j1")
    assert scripted.count("DELETE", "/jobs/j1") == 1
    scripted.on("POST", "/runs", (500, {}, {"error": "internal", "detail": "boom"}, 0.0))
    with pytest.raises(BridgeError) as info:
        client(scripted).run_pipeline("demo")
    assert info.value.status == 500 and info.value.error == "internal"
    assert scripted.count("POST", "/runs") == 1


def test_post_refused_with_503_is_retried_but_not_after_acceptance(scripted: Scripted) -> None:
    scripted.on("POST", "/runs", (503, {"Retry-After": "0"}, {"error": "not_ready", "detail": "x"}, 0.0),
                (202, {}, {"id": "j1", "status": "queued", "href": "/jobs/j1"}, 0.0))
    scripted.on("GET", "/jobs/j1", (200, {}, JOB, 0.0))
    job = client(scripted).run_pipeline("demo", country="colombia", params={"n": 3, "flag": True})
    assert job.id == "j1"
    assert scripted.count("POST", "/runs") == 2
    sent = json.loads(scripted.requests[-2][3])
    assert sent == {"pipeline": "demo", "country": "colombia", "params": {"n": 3, "flag": True}}


def test_post_that_times_out_is_not_resent(scripted: Scripted) -> None:
    scripted.on("POST", "/runs", (202, {}, {"id": "j1", "status": "queued", "href": "/jobs/j1"}, 1.5))
    with pytest.raises(BridgeConnectionError):
        client(scripted, timeout=0.3).run_pipeline("demo")
    assert scripted.count("POST", "/runs") == 1


def test_get_that_times_out_is_retried(scripted: Scripted) -> None:
    scripted.on("GET", "/jobs/j1", (200, {}, JOB, 1.0), (200, {}, JOB, 0.0))
    job = client(scripted, timeout=0.3).get_job("j1")
    assert job.id == "j1"
    assert scripted.count("GET", "/jobs/j1") == 2


def test_accepted_job_whose_read_fails_is_still_returned(scripted: Scripted) -> None:
    scripted.on("POST", "/runs", (202, {}, {"id": "j9", "status": "queued", "href": "/jobs/j9"}, 0.0))
    scripted.on("GET", "/jobs/j9", (500, {}, {"error": "internal", "detail": "db locked"}, 0.0))
    job = client(scripted).run_pipeline("demo", country="mexico")
    assert (job.id, job.status, job.pipeline, job.country) == ("j9", JobStatus.QUEUED, "demo", "mexico")
    assert scripted.count("POST", "/runs") == 1


def test_submitted_event_whose_read_fails_is_still_returned(scripted: Scripted) -> None:
    event_id = "0b9e8c1e-3f7a-4d0e-9d7e-1c2b3a4d5e6f"
    scripted.on("POST", "/sync", (202, {}, {"id": event_id, "status": "pending"}, 0.0))
    scripted.on("GET", f"/events/{event_id}", (500, {}, {"error": "internal", "detail": "db locked"}, 0.0))
    event = client(scripted).submit_sync_event(
        "upsert", "main.calibration.results", "dbo.Results", ["id"], filter="period = 202401"
    )
    assert event.event_id == event_id
    assert event.status == EventStatus.PENDING
    assert event.operation == Operation.UPSERT
    assert (event.source_table, event.target_table) == ("main.calibration.results", "dbo.Results")
    assert (event.primary_keys, event.filter) == (["id"], "period = 202401")
    assert scripted.count("POST", "/sync") == 1, "the event was submitted once"


def test_connection_refused_is_retried_then_raised() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps: List[float] = []
    c = BridgeClient(f"http://127.0.0.1:{port}", TOKEN, retries=2, sleep=sleeps.append)
    with pytest.raises(BridgeConnectionError) as info:
        c.run_pipeline("demo")  # refused: never sent, so even a POST is retried
    assert len(sleeps) == 2
    assert "3 attempt" in str(info.value)
    assert TOKEN not in str(info.value) + repr(info.value)


def test_redirects_are_not_followed(scripted: Scripted) -> None:
    other = Scripted()
    try:
        other.on("GET", "/jobs/j1", (200, {}, JOB, 0.0))
        scripted.on("GET", "/jobs/j1", (302, {"Location": other.base_url + "/jobs/j1"}, b"", 0.0))
        with pytest.raises(BridgeError) as info:
            client(scripted).get_job("j1")
        assert info.value.status == 302
        assert other.requests == [], "the token never goes to the redirect target"
    finally:
        other.close()


def test_non_json_errors_and_echoed_tokens(scripted: Scripted) -> None:
    scripted.on("GET", "/jobs/j1", (502, {}, b"<html>Bad gateway</html>", 0.0))
    with pytest.raises(BridgeError) as info:
        client(scripted).get_job("j1")
    assert info.value.status == 502 and "Bad gateway" in info.value.detail
    scripted.on("GET", "/jobs/j2", (401, {}, {"error": "unauthorized", "detail": f"token {TOKEN} unknown"}, 0.0))
    with pytest.raises(BridgeError) as info:
        client(scripted).get_job("j2")
    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value)


def test_ids_are_escaped_in_paths(scripted: Scripted) -> None:
    with pytest.raises(BridgeError):
        client(scripted).get_job("../runs?x=1")
    assert scripted.requests[-1][1] == "/jobs/..%2Fruns%3Fx%3D1"


def test_health_sends_no_token_and_ready_returns_503_checks(scripted: Scripted) -> None:
    scripted.on("GET", "/health/live", (200, {}, {"status": "ok"}, 0.0))
    scripted.on("GET", "/health/ready", (503, {}, {"ready": False, "checks": {"sqlserver": "refused"}, "version": None}, 0.0))
    c = client(scripted)
    assert c.health() == {"status": "ok"}
    ready = c.ready()
    assert ready.ready is False and ready.checks == {"sqlserver": "refused"}
    assert scripted.count("GET", "/health/ready") == 1
    assert all("Authorization" not in h for _, _, h, _ in scripted.requests)


def test_constructor_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="base_url"):
        BridgeClient("bridge:8000", TOKEN)
    with pytest.raises(ValueError, match="token"):
        BridgeClient("http://bridge:8000", "")
    with pytest.raises(ValueError, match="retries"):
        BridgeClient("http://bridge:8000", TOKEN, retries=-1)
    assert repr(BridgeClient("http://bridge:8000/", TOKEN)) == "BridgeClient(base_url='http://bridge:8000')"


RUN_ID = "5d1f3a9e-2b7c-4e8d-9a6f-0c1b2d3e4f5a"
RUN_EVENT = {
    "event_id": RUN_ID, "operation": "RUN", "source_table": "", "target_table": "",
    "primary_keys": [], "filter": None, "status": "pending", "rows_affected": None,
    "error_message": None, "created_at": "2026-01-01T00:00:00.000000Z", "started_at": None,
    "completed_at": None, "created_by": "writer", "claimed_by": None, "pipeline": "demo",
    "country": "colombia", "params": '{"limit": 3, "start_date": "2024-06-01"}',
}
ACCEPTED_RUN = {"id": RUN_ID, "status": "pending", "href": f"/events/{RUN_ID}"}


def test_submit_run_event_posts_to_events_and_reads_it_back(scripted: Scripted) -> None:
    scripted.on("POST", "/events", (202, {}, ACCEPTED_RUN, 0.0))
    scripted.on("GET", f"/events/{RUN_ID}", (200, {}, RUN_EVENT, 0.0))
    event = client(scripted).submit_run_event(
        "demo", country="colombia", params={"start_date": "2024-06-01", "limit": 3}
    )
    assert event.event_id == RUN_ID and event.operation is Operation.RUN and event.is_run
    assert event.status is EventStatus.PENDING
    assert (event.pipeline, event.country) == ("demo", "colombia")
    assert event.params == {"limit": 3, "start_date": "2024-06-01"}
    assert event.params_text == RUN_EVENT["params"]
    assert (event.source_table, event.target_table, event.job_id) == ("", "", None)
    assert scripted.count("POST", "/events") == 1
    method, path, headers, body = scripted.requests[0]
    assert headers.get("Content-Type") == "application/json"
    # params travel as a JSON object (not text) in the REST body.
    assert json.loads(body) == {
        "operation": "RUN", "pipeline": "demo", "country": "colombia",
        "params": {"limit": 3, "start_date": "2024-06-01"},
    }


def test_submit_run_event_sends_only_what_is_given(scripted: Scripted) -> None:
    scripted.on("POST", "/events", (202, {}, ACCEPTED_RUN, 0.0))
    scripted.on("GET", f"/events/{RUN_ID}", (200, {}, {**RUN_EVENT, "country": None, "params": None}, 0.0))
    c = client(scripted)
    event = c.submit_run_event("demo")
    assert event.country is None and event.params is None and event.params_text is None
    c.submit_run_event("demo", params={})
    bodies = [json.loads(b) for m, _, _, b in scripted.requests if m == "POST"]
    assert bodies == [{"operation": "RUN", "pipeline": "demo"}] * 2


def test_submitted_run_event_whose_read_fails_is_still_returned(scripted: Scripted) -> None:
    scripted.on("POST", "/events", (202, {}, ACCEPTED_RUN, 0.0))
    scripted.on("GET", f"/events/{RUN_ID}", (500, {}, {"error": "internal", "detail": "db locked"}, 0.0))
    event = client(scripted).submit_run_event("demo", country="mexico", params={"flag": True})
    assert event.event_id == RUN_ID and event.status is EventStatus.PENDING
    assert event.operation is Operation.RUN and (event.source_table, event.target_table) == ("", "")
    assert (event.pipeline, event.country, event.params) == ("demo", "mexico", {"flag": True})
    assert event.params_text == '{"flag": true}'
    assert scripted.count("POST", "/events") == 1, "the event was submitted once"


def test_wait_for_run_event(scripted: Scripted) -> None:
    running = {**RUN_EVENT, "status": "running", "started_at": "2026-01-01T00:00:01Z",
               "claimed_by": "bridge-1", "job_id": "job-7"}
    completed = {**running, "status": "completed", "rows_affected": 1234,
                 "completed_at": "2026-01-01T00:00:09Z"}
    scripted.on("GET", f"/events/{RUN_ID}", (200, {}, RUN_EVENT, 0.0), (200, {}, running, 0.0),
                (200, {}, completed, 0.0))
    sleeps: List[float] = []
    done = client(scripted, sleeps).wait_for_event(RUN_ID, timeout=30, poll_interval=0.01, max_interval=0.02)
    assert done.status is EventStatus.COMPLETED and done.rows_affected == 1234
    assert done.job_id == "job-7" and done.claimed_by == "bridge-1"
    assert len(sleeps) == 2

    failed = {**running, "status": "failed", "error_message": "step `sales`: no such table: sales"}
    scripted.on("GET", f"/events/{RUN_ID}", (200, {}, failed, 0.0))
    with pytest.raises(EventFailedError) as info:
        client(scripted).wait_for_event(RUN_ID, timeout=5)
    assert info.value.error_message == "step `sales`: no such table: sales"
    assert info.value.event.job_id == "job-7"
    assert str(info.value) == (
        f"event {RUN_ID} (RUN of pipeline demo for colombia, job job-7) ended failed: "
        "step `sales`: no such table: sales"
    )


def test_run_event_refusals_are_typed_and_not_retried(scripted: Scripted) -> None:
    c = client(scripted)
    scripted.on("POST", "/events", (404, {}, {"error": "not_found", "message": "no pipeline `nope`",
                                              "field": "pipeline"}, 0.0))
    with pytest.raises(NotFoundError) as missing:
        c.submit_run_event("nope")
    assert missing.value.field == "pipeline" and missing.value.detail == "no pipeline `nope`"
    scripted.on("POST", "/events", (400, {}, {"error": "invalid_request", "field": "params.x",
                                              "message": "pipeline `demo` declares no param `x`"}, 0.0))
    with pytest.raises(ValidationError) as undeclared:
        c.submit_run_event("demo", params={"x": "1"})
    assert undeclared.value.field == "params.x" and "declares no param" in undeclared.value.detail
    scripted.on("POST", "/events", (400, {}, {"error": "invalid_request", "field": "country",
                                              "message": "pipeline `demo` does not list `peru`"}, 0.0))
    with pytest.raises(ValidationError) as country:
        c.submit_run_event("demo", country="peru")
    assert country.value.field == "country"
    scripted.on("POST", "/events", (403, {}, {"error": "forbidden", "message": "`reader` may not run"}, 0.0))
    with pytest.raises(PermissionDeniedError):
        c.submit_run_event("demo")
    scripted.on("POST", "/events", (422, {}, {"error": "invalid_pipeline", "message": "demo.yaml:3: bad"}, 0.0))
    with pytest.raises(ValidationError) as invalid:
        c.submit_run_event("demo")
    assert invalid.value.status == 422
    assert scripted.count("POST", "/events") == 5, "each sent once"
    assert scripted.count("GET", f"/events/{RUN_ID}") == 0


def test_run_event_checks_come_before_any_request(scripted: Scripted) -> None:
    c = client(scripted)
    for call, argument in [
        (lambda: c.submit_run_event(".demo"), "pipeline"),
        (lambda: c.submit_run_event("demo", country="co lombia"), "country"),
        (lambda: c.submit_run_event("demo", params={"a": None}), "params.a"),  # type: ignore[dict-item]
        (lambda: c.submit_run_event("demo", params={"a": float("nan")}), "params.a"),
        (lambda: c.submit_run_event("demo", params={"a b": 1}), "params"),
        (lambda: c.submit_sync_event("RUN", "main.s.a", "dbo.A"), "operation"),
        (lambda: c.submit_sync_event(Operation.RUN, "main.s.a", "dbo.A"), "operation"),
    ]:
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value).startswith(f"{argument}:"), (argument, info.value)
    assert scripted.requests == []


def test_events_client_rest_run_event(scripted: Scripted) -> None:
    scripted.on("POST", "/events", (202, {}, ACCEPTED_RUN, 0.0))
    completed = {**RUN_EVENT, "status": "completed", "rows_affected": 5, "job_id": "job-1"}
    scripted.on("GET", f"/events/{RUN_ID}", (200, {}, completed, 0.0))
    events = BridgeEventsClient(client=client(scripted))
    assert events.transport == "rest"
    event_id = events.create_run_event("demo", country="colombia", params={"limit": 3})
    assert event_id == RUN_ID
    assert json.loads(scripted.requests[0][3]) == {
        "operation": "RUN", "pipeline": "demo", "country": "colombia", "params": {"limit": 3},
    }
    done = events.wait_for_completion(event_id, timeout=5)
    assert done.is_run and done.job_id == "job-1" and done.rows_affected == 5
    with pytest.raises(ValueError, match="^pipeline:"):
        events.create_run_event("a/b")
    assert scripted.count("POST", "/events") == 1
