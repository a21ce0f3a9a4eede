"""`BridgeEventsClient`: ask for Databricks -> SQL Server syncs and for pipeline runs from a
notebook or a job.

Two ways to submit an event:

* **Spark** (in Databricks): the event is a row INSERTed into the events table
  (``bridge.events.bridge_events``) with ``spark.sql`` and bound parameters; a ``bridge serve``
  polling that table claims and applies it as the user named in ``created_by``.
* **REST**: ``POST /sync`` (syncs) or ``POST /events`` (RUN events) on the server with a bearer
  token; the event runs as the token's user.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import _validation as check
from .client import BridgeClient, ParamValue, wait_for_event_with
from .errors import BridgeError, NotFoundError
from .models import Operation, SyncEvent

__all__ = ["BridgeEventsClient", "DEFAULT_EVENTS_TABLE"]

#: The events table of ``schemas/bridge_events.sql``.
DEFAULT_EVENTS_TABLE = "bridge.events.bridge_events"


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


def _lacks_run_columns(error: BaseException) -> bool:
    """Whether Spark refused an INSERT because the table has no ``pipeline`` column
    (``UNRESOLVED_COLUMN`` on Spark 3.4 to 4, Delta's own wording on Databricks)."""
    text = str(error)
    if "TABLE_OR_VIEW_NOT_FOUND" in text or not _PIPELINE_COLUMN.search(text):
        return False
    return any(marker in text for marker in _MISSING_COLUMN_MARKERS)


_PIPELINE_COLUMN = re.compile(r"`pipeline`|column[^.]*\bpipeline\b", re.IGNORECASE)
_MISSING_COLUMN_MARKERS = (
    "UNRESOLVED_COLUMN",
    "MISSING_COLUMN",
    "cannot be resolved",
    "Cannot find",
    "does not exist",
)


def _row_dict(row: Any) -> Dict[str, Any]:
    if isinstance(row, Mapping):
        return dict(row)
    as_dict = getattr(row, "asDict", None)
    if callable(as_dict):
        return dict(as_dict(recursive=True))
    raise TypeError(f"cannot read a row of type {type(row).__name__}")


class BridgeEventsClient:
    """Submits events (syncs and pipeline runs) and follows them, through Spark or the REST API.

    In a Databricks notebook::

        events = BridgeEventsClient(spark=spark, created_by="calibration-team")
        event_id = events.create_upsert_event(
            "main.calibration.results", "dbo.CalibrationResults", ["household_id", "period"],
            filter="period = '2024-06'",
        )
        events.wait_for_completion(event_id)

        run_id = events.create_run_event("demo", country="colombia", params={"day": "2024-06-01"})
        job_id = events.wait_for_completion(run_id).job_id

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

    def create_run_event(
        self,
        pipeline: str,
        country: Optional[str] = None,
        params: Optional[Mapping[str, ParamValue]] = None,
    ) -> str:
        """Asks the server to run a pipeline of its project (a RUN event) and returns the event
        id.

        ``pipeline`` is the pipeline's name (or file name) under ``pipelines/``; ``country``
        the country whose parameters the run uses; ``params`` overrides of the parameters the
        pipeline declares (names of letters, digits and ``_``; values strings, numbers or
        booleans). They are checked first (:class:`ValueError` naming the argument); whether
        the pipeline exists, lists the country and declares the parameters, the server checks:
        through Spark, that makes the event ``failed``; through REST, the call raises.

        With Spark the run is done as ``created_by``; the events table needs the RUN columns
        (``bridge setup-events-table --apply`` adds them to an older table). Once the event is
        ``completed``, its ``job_id`` is the job that ran the pipeline and ``rows_affected`` the
        rows its sinks wrote."""
        name, country_name, overrides, text = check.run_request(pipeline, country, params)
        if self._spark is None:
            assert self._client is not None
            return self._client._post_run(name, country_name, overrides)
        event_id = str(uuid.uuid4())
        query, args = self._run_insert_statement(event_id, name, country_name, text)
        try:
            self._spark.sql(query, args=args)
        except Exception as e:
            if _lacks_run_columns(e):
                raise BridgeError(
                    f"{self._table_name} has no RUN columns (pipeline, country, params, job_id): "
                    "it was made by an older bridge; `bridge setup-events-table --apply` adds "
                    f"them ({type(e).__name__}: {str(e)[:300]})",
                    error="events_table_outdated",
                ) from e
            raise
        return event_id

    def _run_insert_statement(
        self,
        event_id: str,
        pipeline: str,
        country: Optional[str],
        params_text: Optional[str],
    ) -> Tuple[str, Dict[str, str]]:
        # As _insert_statement: every value a bound string parameter, '' for NULL. A RUN event
        # has no source or target table ('': the columns are NOT NULL) and leaves primary_keys
        # and filter NULL.
        query = (
            f"INSERT INTO {self._quoted_table} "
            "(`event_id`, `operation`, `source_table`, `target_table`, "
            "`status`, `created_at`, `created_by`, `pipeline`, `country`, `params`) "
            "SELECT :event_id, :operation, :source_table, :target_table, "
            "'pending', current_timestamp(), :created_by, :pipeline, NULLIF(:country, ''), "
            "NULLIF(:params, '')"
        )
        args = {
            "event_id": event_id,
            "operation": Operation.RUN.value,
            "source_table": "",
            "target_table": "",
            "created_by": self._created_by or "",
            "pipeline": pipeline,
            "country": country or "",
            "params": params_text or "",
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
        # Every column: a table made by an older bridge lacks the RUN columns (pipeline,
        # country, params, job_id), and SyncEvent reads missing ones as None.
        query = f"SELECT * FROM {self._quoted_table} WHERE `event_id` = :event_id"
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
        """Polls the event (a sync or a RUN) until it is ``completed`` (returned) or ``failed``
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
