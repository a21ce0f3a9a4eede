"""The objects the server returns, parsed from its JSON.

Fields the SDK does not know are ignored (they stay in ``raw``), so a newer server works with an
older SDK; a status the SDK does not know becomes a non-final pseudo-member of its enum.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

__all__ = [
    "JobStatus",
    "EventStatus",
    "Operation",
    "StepSummary",
    "Job",
    "JobPage",
    "SyncEvent",
    "Readiness",
]


class _OpenStrEnum(str, Enum):
    """A string enum that accepts values it does not know (from a newer server)."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if not isinstance(value, str):
            return None
        for member in cls:
            if member.value == value.lower():
                return member
        pseudo = str.__new__(cls, value)
        pseudo._name_ = value.upper()
        pseudo._value_ = value
        return pseudo

    def __str__(self) -> str:
        return str(self.value)

    @property
    def known(self) -> bool:
        """Whether this SDK knows the value."""
        return self._name_ in type(self).__members__


class JobStatus(_OpenStrEnum):
    """Where a job is in its life. ``succeeded``, ``failed``, ``cancelled`` and ``interrupted``
    are final."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def is_final(self) -> bool:
        return self in _FINAL_JOB

    @property
    def is_failure(self) -> bool:
        """Final without success: failed, cancelled or interrupted."""
        return self.is_final and self is not JobStatus.SUCCEEDED


_FINAL_JOB = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.INTERRUPTED}
)


class EventStatus(_OpenStrEnum):
    """Where a sync event is: ``pending`` -> ``running`` -> ``completed`` or ``failed``."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (EventStatus.COMPLETED, EventStatus.FAILED)


class Operation(str, Enum):
    """What an event does: a sync to a SQL Server table (INSERT, UPSERT, UPDATE, DELETE) or a
    run of a pipeline of the server's project (RUN)."""

    INSERT = "INSERT"
    UPSERT = "UPSERT"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    RUN = "RUN"

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if isinstance(value, str):
            upper = value.strip().upper()
            for member in cls:
                if member.value == upper:
                    return member
        return None

    def __str__(self) -> str:
        return str(self.value)

    @property
    def needs_keys(self) -> bool:
        """UPSERT, UPDATE and DELETE identify rows by ``primary_keys``."""
        return self in (Operation.UPSERT, Operation.UPDATE, Operation.DELETE)

    @property
    def is_sync(self) -> bool:
        """Whether the operation syncs a table (every operation but RUN)."""
        return self is not Operation.RUN


def _str(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        # Spark returns naive datetimes in the session time zone: keep them without a zone.
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    return str(value)


def _params(value: Any) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """A RUN event's ``params`` (the text of a JSON object) as (dict, text). Text that is not a
    JSON object gives no dict but stays available as text; an object (not text) is taken as is."""
    if value is None:
        return None, None
    if isinstance(value, Mapping):
        params = dict(value)
        return params, json.dumps(params, sort_keys=True)
    text = str(value)
    try:
        parsed = json.loads(text)
    except ValueError:
        return None, text
    return (dict(parsed) if isinstance(parsed, dict) else None), text


def _int(value: Any) -> Optional[int]:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class StepSummary:
    """One step of a finished run: rows, bytes, duration and the files or tables it wrote."""

    id: str
    kind: str
    rows: int
    bytes: int
    duration_ms: int
    outputs: List[str] = field(default_factory=list)
    scans: Optional[int] = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StepSummary":
        return cls(
            id=str(data.get("id", "")),
            kind=str(data.get("kind", "")),
            rows=_int(data.get("rows")) or 0,
            bytes=_int(data.get("bytes")) or 0,
            duration_ms=_int(data.get("duration_ms")) or 0,
            outputs=[str(o) for o in data.get("outputs") or []],
            scans=_int(data.get("scans")),
        )


@dataclass(frozen=True)
class Job:
    """A job of the server (a pipeline run, an extraction or a scheduled run)."""

    id: str
    kind: str
    pipeline: str
    status: JobStatus
    pipeline_file: Optional[str] = None
    country: Optional[str] = None
    params: Dict[str, Any] = field(default_factory=dict)
    submitted_by: Optional[str] = None
    created_at: Optional[str] = None
    started_at: Optional[str] = None
    finished_at: Optional[str] = None
    error: Optional[str] = None
    summary: Optional[Dict[str, Any]] = None
    request: Dict[str, Any] = field(default_factory=dict)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Job":
        params = data.get("params")
        request = data.get("request")
        summary = data.get("summary")
        return cls(
            id=str(data["id"]),
            kind=str(data.get("kind", "")),
            pipeline=str(data.get("pipeline", "")),
            status=JobStatus(str(data.get("status", ""))),
            pipeline_file=_str(data.get("pipeline_file")),
            country=_str(data.get("country")),
            params=dict(params) if isinstance(params, Mapping) else {},
            submitted_by=_str(data.get("submitted_by")),
            created_at=_str(data.get("created_at")),
            started_at=_str(data.get("started_at")),
            finished_at=_str(data.get("finished_at")),
            error=_str(data.get("error")),
            summary=dict(summary) if isinstance(summary, Mapping) else None,
            request=dict(request) if isinstance(request, Mapping) else {},
            raw=dict(data),
        )

    @property
    def is_final(self) -> bool:
        return self.status.is_final

    @property
    def succeeded(self) -> bool:
        return self.status is JobStatus.SUCCEEDED

    @property
    def steps(self) -> List[StepSummary]:
        """The per-step summary of a finished run (empty before it finishes)."""
        steps = (self.summary or {}).get("steps") or []
        return [StepSummary.from_dict(s) for s in steps if isinstance(s, Mapping)]

    @property
    def rows_by_step(self) -> Dict[str, int]:
        """Rows per step id."""
        return {s.id: s.rows for s in self.steps}


@dataclass(frozen=True)
class JobPage:
    """A page of ``GET /jobs``: ``items`` newest first, ``total`` matching jobs, and the offset
    of the next page (``None`` on the last page)."""

    items: List[Job]
    total: int
    next_offset: Optional[int] = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "JobPage":
        return cls(
            items=[Job.from_dict(j) for j in data.get("items") or []],
            total=_int(data.get("total")) or 0,
            next_offset=_int(data.get("next_offset")),
        )

    def __iter__(self) -> Iterator[Job]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class SyncEvent:
    """An event of the events table and its outcome: a Databricks -> SQL Server sync, or (RUN)
    a run of a pipeline of the server's project.

    A RUN event has empty ``source_table`` and ``target_table``, names ``pipeline`` (and
    ``country``, ``params``), and once the server started its job, ``job_id`` (read the job with
    :meth:`BridgeClient.get_job`). ``rows_affected`` of a completed RUN is the rows its sinks
    wrote. ``params`` is the overrides parsed from ``params_text``, the JSON object text stored
    with the event (``None`` when there are none, or when the text is not a JSON object)."""

    event_id: str
    operation: Operation
    source_table: str
    target_table: str
    status: EventStatus
    primary_keys: List[str] = field(default_factory=list)
    filter: Optional[str] = None
    rows_affected: Optional[int] = None
    error_message: Optional[str] = None
    created_at: Optional[str] = None
    started_at: Optional[str] = None
    completed_at: Optional[str] = None
    created_by: Optional[str] = None
    claimed_by: Optional[str] = None
    pipeline: Optional[str] = None
    country: Optional[str] = None
    params: Optional[Dict[str, Any]] = None
    params_text: Optional[str] = None
    job_id: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SyncEvent":
        keys = data.get("primary_keys")
        params, params_text = _params(data.get("params"))
        return cls(
            event_id=str(data["event_id"]),
            operation=Operation(str(data.get("operation", ""))),
            source_table=str(data.get("source_table", "")),
            target_table=str(data.get("target_table", "")),
            status=EventStatus(str(data.get("status", ""))),
            primary_keys=[str(k) for k in keys] if keys else [],
            filter=_str(data.get("filter")),
            rows_affected=_int(data.get("rows_affected")),
            error_message=_str(data.get("error_message")),
            created_at=_str(data.get("created_at")),
            started_at=_str(data.get("started_at")),
            completed_at=_str(data.get("completed_at")),
            created_by=_str(data.get("created_by")),
            claimed_by=_str(data.get("claimed_by")),
            pipeline=_str(data.get("pipeline")),
            country=_str(data.get("country")),
            params=params,
            params_text=params_text,
            job_id=_str(data.get("job_id")),
            raw=dict(data),
        )

    @property
    def id(self) -> str:
        return self.event_id

    @property
    def is_run(self) -> bool:
        """Whether the event runs a pipeline (RUN) rather than syncing a table."""
        return self.operation is Operation.RUN

    @property
    def is_final(self) -> bool:
        return self.status.is_final


@dataclass(frozen=True)
class Readiness:
    """``GET /health/ready``: whether the server can take work, and each check's result."""

    ready: bool
    checks: Dict[str, str] = field(default_factory=dict)
    version: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Readiness":
        checks = data.get("checks")
        return cls(
            ready=bool(data.get("ready")),
            checks={str(k): str(v) for k, v in checks.items()} if isinstance(checks, Mapping) else {},
            version=_str(data.get("version")),
            raw=dict(data),
        )

