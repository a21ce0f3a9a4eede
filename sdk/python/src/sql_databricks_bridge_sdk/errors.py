"""Exceptions raised by the SDK.

Every exception derives from :class:`BridgeError`. Errors answered by the server carry its
``{"error", "detail", "field"}`` body, the HTTP status and the ``x-request-id`` of the request
(the same id is in the server's audit log). No exception ever holds the API token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple, Type

if TYPE_CHECKING:  # pragma: no cover
    from .models import Job, SyncEvent

__all__ = [
    "BridgeError",
    "BridgeConnectionError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "ValidationError",
    "BridgeTimeoutError",
    "JobFailedError",
    "EventFailedError",
]


class BridgeError(Exception):
    """A request to the bridge failed, or a job or event did not end well.

    Attributes:
        status: the HTTP status of the answer (``None`` when there was no answer).
        error: the server's short code (``forbidden``, ``invalid_request``, ...).
        detail: what is wrong, for people.
        field: the request field at fault, when the server named one.
        request_id: the ``x-request-id`` of the request, to find it in the audit log.
    """

    def __init__(
        self,
        detail: str,
        *,
        status: Optional[int] = None,
        error: Optional[str] = None,
        field: Optional[str] = None,
        request_id: Optional[str] = None,
    ) -> None:
        self.status = status
        self.error = error
        self.detail = detail
        self.field = field
        self.request_id = request_id
        super().__init__(self._message())

    def _message(self) -> str:
        head = " ".join(str(p) for p in (self.status, self.error) if p is not None)
        text = f"{head}: {self.detail}" if head else self.detail
        if self.field and self.field not in self.detail:
            text += f" (field: {self.field})"
        if self.request_id:
            text += f" [request id {self.request_id}]"
        return text

    def __str__(self) -> str:
        return self._message()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, error={self.error!r}, "
            f"detail={self.detail!r}, field={self.field!r}, request_id={self.request_id!r})"
        )

    def __reduce__(self) -> Tuple[Any, Tuple[Any, ...]]:
        # Keeps the attributes when pickled (by multiprocessing, Spark, ...).
        return (
            _rebuild,
            (
                type(self),
                self.detail,
                self.status,
                self.error,
                self.field,
                self.request_id,
                dict(self.__dict__),
            ),
        )


def _rebuild(
    cls: Type[BridgeError],
    detail: str,
    status: Optional[int],
    error: Optional[str],
    field: Optional[str],
    request_id: Optional[str],
    state: Dict[str, Any],
) -> BridgeError:
    exc = cls.__new__(cls)
    exc.__dict__.update(state)  # first: subclasses' messages read their own attributes
    BridgeError.__init__(
        exc, detail, status=status, error=error, field=field, request_id=request_id
    )
    return exc


class BridgeConnectionError(BridgeError):
    """The server could not be reached (after the retries)."""


class AuthenticationError(BridgeError):
    """401: no token, or a token that is not in the server's permissions file."""


class PermissionDeniedError(BridgeError):
    """403: the caller lacks a right on a table (the detail names the table and the right)."""


class NotFoundError(BridgeError):
    """404: no such job, event, pipeline or endpoint."""


class ConflictError(BridgeError):
    """409: the job has already finished, or the server has no valid project files loaded."""


class ValidationError(BridgeError):
    """400 or 422: the request is malformed (``field`` names the culprit) or the pipeline does
    not plan (the detail has ``file:line``)."""


class BridgeTimeoutError(BridgeError):
    """A job or event did not finish within the time given to wait for it."""

    def __init__(self, detail: str, *, last_status: Optional[str] = None) -> None:
        self.last_status = last_status
        super().__init__(detail, error="timeout")


class JobFailedError(BridgeError):
    """A job ended ``failed``, ``cancelled`` or ``interrupted``.

    ``detail`` is the server's error for the job; ``job`` is the job as last read.
    """

    def __init__(self, job: "Job") -> None:
        self.job = job
        super().__init__(job.error or "no error given", error=f"job_{job.status}")

    def _message(self) -> str:
        job = self.job
        return f"job {job.id} ({job.pipeline}) ended {job.status}: {self.detail}"

    @property
    def job_error(self) -> Optional[str]:
        """The server's error message for the job."""
        return self.job.error


class EventFailedError(BridgeError):
    """An event (a sync or a pipeline run) ended ``failed``; ``detail`` holds the server's
    ``error_message``."""

    def __init__(self, event: "SyncEvent") -> None:
        self.event = event
        super().__init__(event.error_message or "no error given", error="event_failed")

    def _message(self) -> str:
        event = self.event
        if str(event.operation) == "RUN":
            what = f"RUN of pipeline {event.pipeline}"
            if event.country:
                what += f" for {event.country}"
            if event.job_id:
                what += f", job {event.job_id}"
        else:
            what = f"{event.operation} {event.source_table} -> {event.target_table}"
        return f"event {event.event_id} ({what}) ended {event.status}: {self.detail}"

    @property
    def error_message(self) -> Optional[str]:
        """The server's error message for the event."""
        return self.event.error_message


_BY_STATUS = {
    400: ValidationError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationError,
}


def error_for_status(
    status: int,
    *,
    error: Optional[str],
    detail: str,
    field: Optional[str],
    request_id: Optional[str],
) -> BridgeError:
    """The exception for an error answer of the server."""
    cls = _BY_STATUS.get(status, BridgeError)
    return cls(detail, status=status, error=error, field=field, request_id=request_id)
