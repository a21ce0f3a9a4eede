"""Python SDK of sql-databricks-bridge.

* :class:`BridgeClient`: the REST API of ``bridge serve`` (pipeline runs, extractions, jobs,
  sync and RUN events, health).
* :class:`BridgeEventsClient`: events from Databricks notebooks and jobs (syncs to SQL Server,
  and RUN events that run a pipeline of the server's project), written into the events table
  with Spark or sent through the REST API.

No dependency outside the standard library.
"""

from ._version import __version__
from .client import BridgeClient, ParamValue
from .errors import (
    AuthenticationError,
    BridgeConnectionError,
    BridgeError,
    BridgeTimeoutError,
    ConflictError,
    EventFailedError,
    JobFailedError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from .events import DEFAULT_EVENTS_TABLE, BridgeEventsClient
from .models import (
    EventStatus,
    Job,
    JobPage,
    JobStatus,
    Operation,
    Readiness,
    StepSummary,
    SyncEvent,
)

__all__ = [
    "__version__",
    "BridgeClient",
    "BridgeEventsClient",
    "DEFAULT_EVENTS_TABLE",
    "ParamValue",
    "Job",
    "JobPage",
    "JobStatus",
    "StepSummary",
    "SyncEvent",
    "EventStatus",
    "Operation",
    "Readiness",
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
