"""`BridgeClient`: the REST API of ``bridge serve``."""

from __future__ import annotations

import time
import urllib.parse
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Union

from . import _validation as check
from ._http import Transport
from ._polling import poll_until
from .errors import BridgeError, EventFailedError, JobFailedError
from .models import EventStatus, Job, JobPage, JobStatus, Operation, Readiness, SyncEvent

__all__ = ["BridgeClient", "ParamValue"]

#: A parameter override: the server takes strings, numbers and booleans.
ParamValue = Union[str, int, float, bool]


def _id(value: Union[str, Job, SyncEvent], argument: str) -> str:
    if isinstance(value, Job):
        return value.id
    if isinstance(value, SyncEvent):
        return value.event_id
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{argument}: expected a non-empty id, got {value!r}")
    return value.strip()


def _path_id(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _params(params: Optional[Mapping[str, ParamValue]]) -> Dict[str, ParamValue]:
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise ValueError("params: expected a mapping of parameter names to values")
    return dict(params)


class BridgeClient:
    """A client of the bridge server's REST API.

    >>> client = BridgeClient("https://bridge.internal:8000", token=os.environ["BRIDGE_TOKEN"])
    >>> job = client.wait_for_job(client.run_pipeline("demo", country="colombia").id)

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:8000`` (a path prefix is kept).
        token: the bearer token of a user of the server's ``config/permissions.yaml``.
        timeout: seconds one HTTP request may take.
        retries: how many times a request is sent again after a connection error, a 429 or a
            503 (see the module ``_http`` for which requests are safe to resend).
        backoff: the first wait between two attempts, in seconds; it doubles each time (with
            jitter), up to ``max_backoff``, unless the server sent ``Retry-After``.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        timeout: float = 30.0,
        retries: int = 3,
        *,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._sleep = sleep
        self._transport = Transport(
            base_url,
            token,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            max_backoff=max_backoff,
            sleep=sleep,
        )

    @property
    def base_url(self) -> str:
        return self._transport.base_url

    def __repr__(self) -> str:
        return f"BridgeClient(base_url={self.base_url!r})"

    # -----------------------------------------------------------------------------------------
    # Jobs

    def run_pipeline(
        self,
        pipeline: str,
        country: Optional[str] = None,
        params: Optional[Mapping[str, ParamValue]] = None,
    ) -> Job:
        """Starts a run of a pipeline (``POST /runs``) and returns the new job (queued or
        already running). Not retried once the server has answered.

        ``pipeline`` is a name or a file name under ``pipelines/``; ``params`` may override
        only the parameters the pipeline declares in its own ``params:`` (the server refuses
        others with :class:`ValidationError`, ``field == "params.<name>"``)."""
        body: Dict[str, Any] = {"pipeline": pipeline}
        if country is not None:
            body["country"] = country
        if params is not None:
            body["params"] = _params(params)
        accepted = self._transport.request("POST", "/runs", body=body)
        return self._started(accepted.body, "run", pipeline, body)

    def extract(
        self,
        country: str,
        destination: str,
        queries: Optional[Sequence[str]] = None,
        queries_path: Optional[str] = None,
        config_path: Optional[str] = None,
    ) -> Job:
        """Starts the extraction of a country's queries (``POST /extract``, the original
        system's request) and returns the new job.

        ``destination`` is a folder under the project root or a cloud URL; ``queries`` limits
        the extraction to those query names; ``queries_path`` and ``config_path`` are folders of
        the project. Parameters come from the project's ``config/``; a request cannot override
        them."""
        if isinstance(queries, str):
            raise ValueError("queries: expected a list of query names, not one string")
        body: Dict[str, Any] = {"country": country, "destination": destination}
        if queries is not None:
            body["queries"] = list(queries)
        if queries_path is not None:
            body["queries_path"] = queries_path
        if config_path is not None:
            body["config_path"] = config_path
        accepted = self._transport.request("POST", "/extract", body=body)
        return self._started(accepted.body, "extract", "extract", body)

    def _started(self, accepted: Any, kind: str, pipeline: str, request: Dict[str, Any]) -> Job:
        """The job a 202 started. The answer holds only its id: read the job, and if that read
        fails, still hand back what is known rather than lose the id of a running job."""
        job_id = _accepted_id(accepted)
        try:
            return self.get_job(job_id)
        except BridgeError:
            return Job(
                id=job_id,
                kind=kind,
                pipeline=pipeline,
                status=JobStatus(str(accepted.get("status") or "queued")),
                country=request.get("country"),
                params=dict(request.get("params") or {}),
                request=dict(request),
                raw=dict(accepted),
            )

    def get_job(self, id: Union[str, Job]) -> Job:
        """A job: status, per-step summary once finished, error, the original request."""
        job_id = _id(id, "id")
        response = self._transport.request("GET", f"/jobs/{_path_id(job_id)}")
        return Job.from_dict(_object(response.body, "job"))

    def list_jobs(
        self,
        status: Optional[Union[JobStatus, str]] = None,
        pipeline: Optional[str] = None,
        limit: int = 50,
        offset: int = 0,
    ) -> JobPage:
        """A page of jobs, newest first (``limit`` at most 500 on the server)."""
        query = {
            "status": None if status is None else str(status),
            "pipeline": pipeline,
            "limit": int(limit),
            "offset": int(offset),
        }
        response = self._transport.request("GET", "/jobs", query=query)
        return JobPage.from_dict(_object(response.body, "page of jobs"))

    def iter_jobs(
        self,
        status: Optional[Union[JobStatus, str]] = None,
        pipeline: Optional[str] = None,
        page_size: int = 100,
    ) -> Iterator[Job]:
        """Every matching job, newest first, fetching pages as needed."""
        offset: Optional[int] = 0
        while offset is not None:
            page = self.list_jobs(status=status, pipeline=pipeline, limit=page_size, offset=offset)
            yield from page.items
            offset = page.next_offset if page.items else None

    def cancel_job(self, id: Union[str, Job]) -> Job:
        """Cancels a queued or running job (``DELETE /jobs/{id}``) and returns it as it is right
        after (usually still ``running`` while its steps stop). Raises
        :class:`ConflictError` when the job has already finished."""
        job_id = _id(id, "id")
        self._transport.request("DELETE", f"/jobs/{_path_id(job_id)}")
        return self.get_job(job_id)

    def wait_for_job(
        self,
        id: Union[str, Job],
        timeout: float = 600,
        poll_interval: float = 1.0,
        max_interval: float = 10.0,
    ) -> Job:
        """Polls a job until it finishes; returns it when it ``succeeded``.

        Raises:
            JobFailedError: it ended ``failed``, ``cancelled`` or ``interrupted`` (``detail``
                is the server's error, ``job`` the job).
            BridgeTimeoutError: it had not finished after ``timeout`` seconds.
        """
        job_id = _id(id, "id")
        job = poll_until(
            lambda: self.get_job(job_id),
            lambda j: j.status.is_final,
            lambda j: str(j.status),
            f"job {job_id}",
            timeout=timeout,
            poll_interval=poll_interval,
            max_interval=max_interval,
            sleep=self._sleep,
        )
        if job.status is not JobStatus.SUCCEEDED:
            raise JobFailedError(job)
        return job

    # -----------------------------------------------------------------------------------------
    # Events: syncs and pipeline runs

    def _post_sync(
        self,
        operation: Union[Operation, str],
        source_table: str,
        target_table: str,
        primary_keys: Optional[Sequence[str]],
        filter: Optional[str],
    ) -> str:
        if isinstance(primary_keys, str):
            raise ValueError("primary_keys: expected a list of column names, not one string")
        name = str(operation.value if isinstance(operation, Operation) else operation)
        if name.strip().upper() == Operation.RUN.value:
            raise ValueError(
                "operation: RUN runs a pipeline, not a sync; use submit_run_event(pipeline, "
                "country, params)"
            )
        body: Dict[str, Any] = {
            "operation": name,
            "source_table": source_table,
            "target_table": target_table,
            "primary_keys": list(primary_keys or []),
        }
        if filter is not None:
            body["filter"] = filter
        accepted = self._transport.request("POST", "/sync", body=body)
        return _accepted_id(accepted.body)

    def submit_sync_event(
        self,
        operation: Union[Operation, str],
        source_table: str,
        target_table: str,
        primary_keys: Optional[Sequence[str]] = None,
        filter: Optional[str] = None,
    ) -> SyncEvent:
        """Asks for a Databricks -> SQL Server sync (``POST /sync``) as the token's user and
        returns the new event (``pending``). The server checks the caller's ``write`` right on
        ``target_table`` (:class:`PermissionDeniedError` otherwise) and every field
        (:class:`ValidationError` naming it).

        The event is then read back; if that read fails, the event (already submitted) is still
        returned with what is known, so its id is never lost."""
        event_id = self._post_sync(operation, source_table, target_table, primary_keys, filter)
        try:
            return self.get_event(event_id)
        except BridgeError:
            return SyncEvent(
                event_id=event_id,
                operation=Operation(operation),
                source_table=source_table,
                target_table=target_table,
                status=EventStatus.PENDING,
                primary_keys=list(primary_keys or []),
                filter=filter,
                raw={"event_id": event_id, "status": "pending"},
            )

    def _post_run(
        self,
        pipeline: str,
        country: Optional[str],
        params: Optional[Mapping[str, Any]],
    ) -> str:
        """``POST /events`` of a checked RUN event; the new event's id."""
        body: Dict[str, Any] = {"operation": Operation.RUN.value, "pipeline": pipeline}
        if country is not None:
            body["country"] = country
        if params:
            body["params"] = dict(params)
        accepted = self._transport.request("POST", "/events", body=body)
        return _accepted_id(accepted.body)

    def submit_run_event(
        self,
        pipeline: str,
        country: Optional[str] = None,
        params: Optional[Mapping[str, ParamValue]] = None,
    ) -> SyncEvent:
        """Asks for a run of a pipeline of the server's project as an event (``POST /events``,
        operation RUN) as the token's user, and returns the new event (``pending``). Not
        retried once the server has answered.

        ``pipeline``, ``country`` and ``params`` are checked first (:class:`ValueError` naming
        the argument). The server answers :class:`NotFoundError` (``field == "pipeline"``) for
        an unknown pipeline and :class:`ValidationError` for a country the pipeline does not
        list (``field == "country"``) or a parameter it does not declare
        (``field == "params.<name>"``).

        Follow it with :meth:`wait_for_event`; the completed event's ``job_id`` is the job that
        ran the pipeline (:meth:`get_job`) and ``rows_affected`` the rows its sinks wrote. If
        reading the event back fails, the event (already submitted) is still returned with what
        is known, so its id is never lost."""
        name, country, overrides, text = check.run_request(pipeline, country, params)
        event_id = self._post_run(name, country, overrides)
        try:
            return self.get_event(event_id)
        except BridgeError:
            return SyncEvent(
                event_id=event_id,
                operation=Operation.RUN,
                source_table="",
                target_table="",
                status=EventStatus.PENDING,
                pipeline=name,
                country=country,
                params=overrides,
                params_text=text,
                raw={"event_id": event_id, "status": "pending"},
            )

    def get_event(self, id: Union[str, SyncEvent]) -> SyncEvent:
        """An event (a sync or a RUN): status, rows affected, error, and for a RUN its
        pipeline, country, params and job."""
        event_id = _id(id, "id")
        response = self._transport.request("GET", f"/events/{_path_id(event_id)}")
        return SyncEvent.from_dict(_object(response.body, "event"))

    def wait_for_event(
        self,
        id: Union[str, SyncEvent],
        timeout: float = 600,
        poll_interval: float = 1.0,
        max_interval: float = 10.0,
    ) -> SyncEvent:
        """Polls an event (a sync or a RUN) until it is ``completed`` (returned) or ``failed``
        (:class:`EventFailedError` with the server's ``error_message``); raises
        :class:`BridgeTimeoutError` after ``timeout`` seconds."""
        event_id = _id(id, "id")
        return wait_for_event_with(
            lambda: self.get_event(event_id),
            event_id,
            timeout=timeout,
            poll_interval=poll_interval,
            max_interval=max_interval,
            sleep=self._sleep,
        )

    # -----------------------------------------------------------------------------------------
    # Health and metadata

    def health(self) -> Dict[str, Any]:
        """``GET /health/live``: ``{"status": "ok"}`` while the process is up (no token sent)."""
        response = self._transport.request("GET", "/health/live", auth=False)
        return _object(response.body, "health answer")

    def ready(self) -> Readiness:
        """``GET /health/ready``: whether the server can take work, with each check. A
        not-ready server (503 with its checks) is returned, not raised."""
        response = self._transport.request(
            "GET", "/health/ready", auth=False, retry_statuses=(429,), accept_statuses=(503,)
        )
        body = response.body
        if not isinstance(body, dict) or "ready" not in body:
            raise BridgeError(
                f"unexpected answer to /health/ready: {str(body)[:200]}",
                status=response.status,
                request_id=response.request_id,
            )
        return Readiness.from_dict(body)

    def openapi(self) -> Dict[str, Any]:
        """The server's OpenAPI document."""
        response = self._transport.request("GET", "/openapi.json", auth=False)
        return _object(response.body, "OpenAPI document")


def wait_for_event_with(
    fetch: Callable[[], SyncEvent],
    event_id: str,
    *,
    timeout: float,
    poll_interval: float,
    max_interval: float,
    sleep: Callable[[float], None] = time.sleep,
) -> SyncEvent:
    event = poll_until(
        fetch,
        lambda e: e.status.is_final,
        lambda e: str(e.status),
        f"event {event_id}",
        timeout=timeout,
        poll_interval=poll_interval,
        max_interval=max_interval,
        sleep=sleep,
    )
    if event.status is not EventStatus.COMPLETED:
        raise EventFailedError(event)
    return event


def _object(body: Any, what: str) -> Dict[str, Any]:
    if not isinstance(body, dict):
        raise BridgeError(f"the server answered something that is not a {what}: {str(body)[:200]}")
    return body


def _accepted_id(body: Any) -> str:
    job_id = body.get("id") if isinstance(body, dict) else None
    if not isinstance(job_id, str) or not job_id:
        raise BridgeError(f"the server accepted the request but sent no id: {str(body)[:200]}")
    return job_id

