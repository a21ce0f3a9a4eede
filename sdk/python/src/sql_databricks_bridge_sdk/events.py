"""`BridgeEventsClient`: ask for Databricks -> SQL Server syncs from a notebook or a job.

Two ways to submit an event:

* **Spark** (in Databricks): the event is a row INSERTed into the events table
  (``bridge.events.bridge_events``) with ``spark.sql`` and bound parameters; a ``bridge serve``
  polling that table claims and applies it as the user named in ``created_by``.
* **REST**: ``POST /sync`` on the server with a bearer token; the event runs as the token's user.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import _validation as check
from .client import BridgeClient, wait_for_event_with
from .errors import NotFoundError
from .models import Operation, SyncEvent

__all__ = ["BridgeEventsClient", "DEFAULT_EVENTS_TABLE"]

#: The events table of ``schemas/bridge_events.sql``.
DEFAULT_EVENTS_TABLE = "bridge.events.bridge_events"

_COLUMNS = (
    "event_id",
    "operation",
    "source_table",
    "target_table",
    "primary_keys",
    "filter",
    "status",
    "rows_affected",
    "error_message",
    "created_at",
    "started_at",
    "completed_at",
    "created_by",
    "claimed_by",
)


def _active_spark_session() -> Any:
    """The active SparkSession, if pyspark is importable and one exists."""
    try:
        from pyspark.sql import SparkSession  # type: ignore[import-not-found]
    except Exception:  # ImportError, or a broken pyspark install
        return None
    try:
        return SparkSession.getActiveSession()
    except Exception:
        return None


def _spark_version(spark: Any) -> Optional[Tuple[int, ...]]:
    version = getattr(spark, "version", None)
    if not isinstance(version, str):
        return None
    numbers = []
    for piece in version.split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit())
        if not digits:
            return None
        numbers.append(int(digits))
    return tuple(numbers)


def _row_dict(row: Any) -> Dict[str, Any]:
    if isinstance(row, Mapping):
        return dict(row)
    as_dict = getattr(row, "asDict", None)
    if callable(as_dict):
        return dict(as_dict(recursive=True))
    raise TypeError(f"cannot read a row of type {type(row).__name__}")


class BridgeEventsClient:
    """Submits sync events and follows them, through Spark or the REST API.

    In a Databricks notebook::

        events = BridgeEventsClient(spark=spark, created_by="calibration-team")
        event_id = events.create_upsert_event(
            "main.calibration.results", "dbo.CalibrationResults", ["household_id", "period"],
            filter="period = '2024-06'",
        )
        events.wait_for_completion(event_id)

    Elsewhere: ``BridgeEventsClient(base_url="http://bridge:8000", token=TOKEN)``.

    Args:
        spark: a SparkSession; events are INSERTed into ``events_table``. Without ``spark`` and
            without ``base_url``, the active SparkSession is used when pyspark is importable.
        created_by: the user of the server's permissions file the event runs as (required with
            Spark; ignored by the REST API, where the token decides).
        events_table: the events table (1 to 3 dotted names).
        base_url, token, timeout, retries: the REST API, through :class:`BridgeClient`.
        client: an existing :class:`BridgeClient` to use instead of ``base_url`` and ``token``.
    """

    def __init__(
        self,
        spark: Any = None,
        *,
        created_by: Optional[str] = None,
        events_table: str = DEFAULT_EVENTS_TABLE,
        base_url: Optional[str] = None,
        token: Optional[str] = None,
        timeout: float = 30.0,
        retries: int = 3,
        client: Optional[BridgeClient] = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._sleep = sleep
        self._table_name = events_table
        self._quoted_table = check.quote_table(events_table, "events_table")
        self._spark: Any = None
        self._client: Optional[BridgeClient] = None
        if spark is None and client is None and base_url is None:
            spark = _active_spark_session()
        if spark is not None:
            if not callable(getattr(spark, "sql", None)):
                raise ValueError("spark: expected a SparkSession (an object with .sql)")
            version = _spark_version(spark)
            if version is not None and version < (3, 4):
                raise ValueError(
                    f"spark: Spark {spark.version} cannot bind SQL parameters; 3.4 or later is "
                    "needed (or use base_url and token for the REST API)"
                )
            self._spark = spark
            self._created_by: Optional[str] = check.created_by(created_by)
        elif client is not None:
            self._client = client
            self._created_by = created_by
        elif base_url is not None:
            if token is None:
                raise ValueError("token: required with base_url")
            self._client = BridgeClient(base_url, token, timeout=timeout, retries=retries, sleep=sleep)
            self._created_by = created_by
        else:
            raise ValueError(
                "spark: no SparkSession is active and pyspark is not importable; pass spark= "
                "or base_url= and token= for the REST API"
            )

    @property
    def transport(self) -> str:
        """``"spark"`` or ``"rest"``."""
        return "spark" if self._spark is not None else "rest"

    @property
    def events_table(self) -> str:
        return self._table_name

    def __repr__(self) -> str:
        if self._spark is not None:
            return (
                f"BridgeEventsClient(transport='spark', events_table={self._table_name!r}, "
                f"created_by={self._created_by!r})"
            )
        assert self._client is not None
        return f"BridgeEventsClient(transport='rest', base_url={self._client.base_url!r})"

    # -----------------------------------------------------------------------------------------
    # Submitting

    def create_insert_event(
        self, source_table: str, target_table: str, filter: Optional[str] = None
    ) -> str:
        """Adds the source's rows (those matching ``filter``) to the SQL Server table; returns
        the event id."""
        return self._create(Operation.INSERT, source_table, target_table, None, filter)

    def create_upsert_event(
        self,
        source_table: str,
        target_table: str,
        primary_keys: Sequence[str],
        filter: Optional[str] = None,
    ) -> str:
        """Updates the rows whose keys match and inserts the others; returns the event id."""
        return self._create(Operation.UPSERT, source_table, target_table, primary_keys, filter)

    def create_update_event(
        self,
        source_table: str,
        target_table: str,
        primary_keys: Sequence[str],
        filter: Optional[str] = None,
    ) -> str:
        """Updates the rows whose keys match (others are ignored); returns the event id."""
        return self._create(Operation.UPDATE, source_table, target_table, primary_keys, filter)

    def create_delete_event(
        self,
        source_table: str,
        target_table: str,
        primary_keys: Sequence[str],
        filter: Optional[str] = None,
    ) -> str:
        """Deletes the rows whose keys match the source's; returns the event id."""
        return self._create(Operation.DELETE, source_table, target_table, primary_keys, filter)

    def create_event(
        self,
        operation: Union[Operation, str],
        source_table: str,
        target_table: str,
        primary_keys: Optional[Sequence[str]] = None,
        filter: Optional[str] = None,
    ) -> str:
        """Any operation by name (``"upsert"``, ``Operation.DELETE``, ...); returns the event id."""
        return self._create(check.operation(operation), source_table, target_table, primary_keys, filter)

    def _create(
        self,
        operation: Operation,
        source_table: str,
        target_table: str,
        primary_keys: Optional[Sequence[str]],
        filter: Optional[str],
    ) -> str:
        check.table_parts(source_table, "source_table")
        check.table_parts(target_table, "target_table")
        keys = check.primary_keys(operation, primary_keys)
        condition = check.filter_expression(filter)
        if self._spark is None:
            assert self._client is not None
            return self._client._post_sync(operation, source_table, target_table, keys, condition)
        event_id = str(uuid.uuid4())
        query, args = self._insert_statement(
            event_id, operation, source_table, target_table, keys, condition
        )
        self._spark.sql(query, args=args)
        return event_id

    def _insert_statement(
        self,
        event_id: str,
        operation: Operation,
        source_table: str,
        target_table: str,
        keys: List[str],
        condition: Optional[str],
    ) -> Tuple[str, Dict[str, str]]:
        # Every value is a bound string parameter: nothing from the caller is formatted into the
        # SQL text (the table name is validated and quoted). Keys travel as one comma-joined
        # string (validated column names hold no comma) and the filter as '' for NULL, so the
        # statement needs no array or NULL parameters, which Spark Connect and Spark 3.4 bind
        # differently.
        query = (
            f"INSERT INTO {self._quoted_table} "
            "(`event_id`, `operation`, `source_table`, `target_table`, `primary_keys`, `filter`, "
            "`status`, `created_at`, `created_by`) "
            "SELECT :event_id, :operation, :source_table, :target_table, "
            "filter(split(:primary_keys, ','), k -> k <> ''), NULLIF(:filter, ''), "
            "'pending', current_timestamp(), :created_by"
        )
        args = {
            "event_id": event_id,
            "operation": operation.value,
            "source_table": source_table,
            "target_table": target_table,
            "primary_keys": ",".join(keys),
            "filter": condition or "",
            "created_by": self._created_by or "",
        }
        return query, args

    # -----------------------------------------------------------------------------------------
    # Following

    def get_event(self, event_id: str) -> SyncEvent:
        """The event as it is now. Raises :class:`NotFoundError` for an unknown id."""
        if self._spark is None:
            assert self._client is not None
            return self._client.get_event(event_id)
        event_id = check.event_id(event_id)
        columns = ", ".join(f"`{c}`" for c in _COLUMNS)
        query = f"SELECT {columns} FROM {self._quoted_table} WHERE `event_id` = :event_id"
        rows = self._spark.sql(query, args={"event_id": event_id}).collect()
        if not rows:
            raise NotFoundError(f"no event `{event_id}` in {self._table_name}", error="not_found")
        return SyncEvent.from_dict(_row_dict(rows[0]))

    def wait_for_completion(
        self,
        event_id: str,
        timeout: float = 600,
        poll_interval: float = 2.0,
        max_interval: float = 15.0,
    ) -> SyncEvent:
        """Polls the event until it is ``completed`` (returned) or ``failed``
        (:class:`EventFailedError` with the server's ``error_message``); raises
        :class:`BridgeTimeoutError` after ``timeout`` seconds."""
        return wait_for_event_with(
            lambda: self.get_event(event_id),
            event_id,
            timeout=timeout,
            poll_interval=poll_interval,
            max_interval=max_interval,
            sleep=self._sleep,
        )
