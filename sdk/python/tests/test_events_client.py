"""BridgeEventsClient: the Spark transport with a fake SparkSession, the REST transport against
the real server, and the client-side checks."""

from __future__ import annotations

import json
import sys
import types
import uuid
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

from conftest import READER_TOKEN, WRITER_TOKEN, Server
from sql_databricks_bridge_sdk import (
    BridgeError,
    BridgeEventsClient,
    BridgeTimeoutError,
    EventFailedError,
    EventStatus,
    NotFoundError,
    Operation,
    PermissionDeniedError,
)


class FakeRow:
    def __init__(self, data: Dict[str, Any]) -> None:
        self._data = data

    def asDict(self, recursive: bool = False) -> Dict[str, Any]:
        return dict(self._data)


class FakeDataFrame:
    def __init__(self, rows: List[FakeRow]) -> None:
        self._rows = rows

    def collect(self) -> List[FakeRow]:
        return list(self._rows)


class FakeSpark:
    """Records every statement and its bound parameters; plays the events table in memory,
    evaluating the INSERT's expressions the way Spark would."""

    def __init__(self, version: str = "3.5.1") -> None:
        self.version = version
        self.calls: List[Tuple[str, Optional[Dict[str, Any]]]] = []
        self.table: Dict[str, Dict[str, Any]] = {}

    def sql(self, query: str, args: Optional[Dict[str, Any]] = None, **kwargs: Any) -> FakeDataFrame:
        assert not kwargs, "no Python-formatter variables"
        self.calls.append((query, None if args is None else dict(args)))
        assert args is not None, "every statement is parameterised"
        if query.startswith("INSERT INTO"):
            # A column the statement leaves out is NULL; NULLIF(:x, '') is NULL for ''.
            keys = args.get("primary_keys")
            self.table[args["event_id"]] = {
                "event_id": args["event_id"], "operation": args["operation"],
                "source_table": args["source_table"], "target_table": args["target_table"],
                "primary_keys": None if keys is None else [k for k in keys.split(",") if k != ""],
                "filter": args.get("filter") or None, "status": "pending",
                "rows_affected": None, "error_message": None, "created_at": "2026-01-01T00:00:00",
                "started_at": None, "completed_at": None, "created_by": args["created_by"],
                "claimed_by": None, "pipeline": args.get("pipeline"),
                "country": args.get("country") or None, "params": args.get("params") or None,
                "job_id": None,
            }
            return FakeDataFrame([])
        if query.startswith("SELECT"):
            row = self.table.get(args["event_id"])
            return FakeDataFrame([FakeRow(row)] if row else [])
        raise AssertionError(f"unexpected statement {query}")


def test_spark_insert_binds_every_value() -> None:
    spark = FakeSpark()
    events = BridgeEventsClient(spark=spark, created_by="calibration-team")
    assert events.transport == "spark"
    nasty_filter = "region = 'north'); DROP TABLE bridge.events.bridge_events; --"
    event_id = events.create_upsert_event(
        "main.calibration.results", "dbo.CalibrationResults", ["household_id", "period"],
        filter=nasty_filter,
    )
    assert str(uuid.UUID(event_id)) == event_id and uuid.UUID(event_id).version == 4
    (query, args), = spark.calls
    assert query.startswith("INSERT INTO `bridge`.`events`.`bridge_events` ")
    assert args == {
        "event_id": event_id,
        "operation": "UPSERT",
        "source_table": "main.calibration.results",
        "target_table": "dbo.CalibrationResults",
        "primary_keys": "household_id,period",
        "filter": nasty_filter,
        "created_by": "calibration-team",
    }
    # No value is in the SQL text: each appears as its parameter marker.
    for name, value in args.items():
        assert f":{name}" in query
        assert value not in query, f"{name} formatted into the SQL"
    for literal in ("calibration", "household_id", "DROP", "north", event_id):
        assert literal not in query
    assert "'pending'" in query and "current_timestamp()" in query
    for column in ("event_id", "operation", "source_table", "target_table", "primary_keys",
                   "filter", "status", "created_at", "created_by"):
        assert f"`{column}`" in query

    event = events.get_event(event_id)
    assert event.status is EventStatus.PENDING
    assert event.primary_keys == ["household_id", "period"]
    assert event.filter == nasty_filter and event.created_by == "calibration-team"
    select, select_args = spark.calls[-1]
    assert select.startswith("SELECT ") and ":event_id" in select and event_id not in select
    assert select_args == {"event_id": event_id}


def test_spark_each_operation_and_a_custom_table() -> None:
    spark = FakeSpark()
    events = BridgeEventsClient(spark=spark, created_by="job:42", events_table="ops.sync_events")
    ids = [
        events.create_insert_event("main.s.a", "dbo.A"),
        events.create_update_event("main.s.a", "dbo.A", ["id"]),
        events.create_delete_event("main.s.a", "dbo.A", ["id"], filter="id < 10"),
        events.create_event("upsert", "a", "A", ["id"]),
    ]
    assert len(set(ids)) == 4
    ops = [args["operation"] for _, args in spark.calls if args and "operation" in args]
    assert ops == ["INSERT", "UPDATE", "DELETE", "UPSERT"]
    assert all(q.startswith("INSERT INTO `ops`.`sync_events` ") for q, _ in spark.calls)
    insert_args = spark.calls[0][1]
    assert insert_args is not None
    assert insert_args["primary_keys"] == "" and insert_args["filter"] == ""
    assert events.get_event(ids[0]).primary_keys == [] and events.get_event(ids[0]).filter is None


def test_spark_wait_for_completion() -> None:
    spark = FakeSpark()
    sleeps: List[float] = []
    events = BridgeEventsClient(spark=spark, created_by="calibration-team", sleep=sleeps.append)
    done_id = events.create_insert_event("main.s.a", "dbo.A")
    fail_id = events.create_insert_event("main.s.b", "dbo.A")
    stuck_id = events.create_insert_event("main.s.c", "dbo.A")
    spark.table[done_id].update(status="completed", rows_affected=12)
    spark.table[fail_id].update(status="failed", error_message="`dbo.A` does not exist")
    event = events.wait_for_completion(done_id, timeout=5)
    assert event.status is EventStatus.COMPLETED and event.rows_affected == 12
    with pytest.raises(EventFailedError) as info:
        events.wait_for_completion(fail_id, timeout=5)
    assert info.value.error_message == "`dbo.A` does not exist"
    with pytest.raises(BridgeTimeoutError) as timeout:
        events.wait_for_completion(stuck_id, timeout=0.2, poll_interval=0.05, max_interval=0.1)
    assert timeout.value.last_status == "pending"
    with pytest.raises(NotFoundError):
        events.get_event(str(uuid.uuid4()))
    with pytest.raises(ValueError, match="event_id"):
        events.get_event("x' OR '1'='1")


def test_client_side_checks_name_the_argument() -> None:
    events = BridgeEventsClient(spark=FakeSpark(), created_by="team")
    cases = [
        (lambda: events.create_insert_event("a;b", "dbo.A"), "source_table"),
        (lambda: events.create_insert_event("a.b.c.d", "dbo.A"), "source_table"),
        (lambda: events.create_insert_event("main.s.a", "dbo.A; DROP"), "target_table"),
        (lambda: events.create_insert_event("main.s.a", ""), "target_table"),
        (lambda: events.create_insert_event("main.s.a", "1dbo.A"), "target_table"),
        (lambda: events.create_upsert_event("main.s.a", "dbo.A", []), "primary_keys"),
        (lambda: events.create_upsert_event("main.s.a", "dbo.A", "id"), "primary_keys"),  # type: ignore[arg-type]
        (lambda: events.create_delete_event("main.s.a", "dbo.A", ["a.b"]), "primary_keys"),
        (lambda: events.create_delete_event("main.s.a", "dbo.A", ["id", "id"]), "primary_keys"),
        (lambda: events.create_update_event("main.s.a", "dbo.A", ["id,x"]), "primary_keys"),
        (lambda: events.create_insert_event("main.s.a", "dbo.A", filter="  "), "filter"),
        (lambda: events.create_insert_event("main.s.a", "dbo.A", filter="x" * 4001), "filter"),
        (lambda: events.create_event("merge", "main.s.a", "dbo.A", ["id"]), "operation"),
    ]
    for call, argument in cases:
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value).startswith(f"{argument}:"), (argument, info.value)
    assert events.create_event(Operation.DELETE, "main.s.a", "dbo.A", ["id"])

    for bad in ("", "a.b.c.d", "bridge.events.`x`"):
        with pytest.raises(ValueError, match="^events_table:"):
            BridgeEventsClient(spark=FakeSpark(), created_by="team", events_table=bad)
    with pytest.raises(ValueError, match="^created_by:"):
        BridgeEventsClient(spark=FakeSpark())
    with pytest.raises(ValueError, match="^spark:.*3.4"):
        BridgeEventsClient(spark=FakeSpark(version="3.3.2"), created_by="team")
    with pytest.raises(ValueError, match="^token:"):
        BridgeEventsClient(base_url="http://127.0.0.1:1")


def test_active_spark_session_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    spark = FakeSpark()
    pyspark = types.ModuleType("pyspark")
    pyspark_sql = types.ModuleType("pyspark.sql")

    class SparkSession:
        @staticmethod
        def getActiveSession() -> FakeSpark:
            return spark

    pyspark_sql.SparkSession = SparkSession  # type: ignore[attr-defined]
    pyspark.sql = pyspark_sql  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pyspark", pyspark)
    monkeypatch.setitem(sys.modules, "pyspark.sql", pyspark_sql)
    events = BridgeEventsClient(created_by="calibration-team")
    assert events.transport == "spark"
    events.create_insert_event("main.s.a", "dbo.A")
    assert len(spark.calls) == 1
    # An explicit base_url means REST even inside a Spark session.
    rest = BridgeEventsClient(base_url="http://127.0.0.1:1", token="t0ken-xyz")
    assert rest.transport == "rest" and "t0ken-xyz" not in repr(rest)


def test_no_spark_and_no_url_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyspark", None)  # import fails
    with pytest.raises(ValueError, match="^spark:"):
        BridgeEventsClient(created_by="team")


def test_rest_transport_against_the_server(server: Server) -> None:
    events = BridgeEventsClient(base_url=server.base_url, token=WRITER_TOKEN)
    assert events.transport == "rest"
    assert WRITER_TOKEN not in repr(events)
    event_id = events.create_upsert_event("main.calibration.results", "dbo.Results", ["id"],
                                          filter="amount > 10")
    event = events.get_event(event_id)
    assert event.event_id == event_id and event.operation is Operation.UPSERT
    assert event.created_by == "writer" and event.filter == "amount > 10"
    with pytest.raises(EventFailedError) as info:
        events.wait_for_completion(event_id, timeout=60, poll_interval=0.1, max_interval=0.5)
    assert info.value.event.status is EventStatus.FAILED and info.value.error_message

    reader = BridgeEventsClient(base_url=server.base_url, token=READER_TOKEN)
    with pytest.raises(PermissionDeniedError) as denied:
        reader.create_delete_event("main.calibration.results", "dbo.Results", ["id"])
    assert "dbo.Results" in str(denied.value)
    assert READER_TOKEN not in str(denied.value) + repr(denied.value)


def test_spark_run_event_binds_every_value() -> None:
    spark = FakeSpark()
    sleeps: List[float] = []
    events = BridgeEventsClient(spark=spark, created_by="job:calibration", sleep=sleeps.append)
    nasty = "2024-06-01'); DROP TABLE bridge.events.bridge_events; --"
    event_id = events.create_run_event(
        "demo", country="colombia",
        params={"start_date": nasty, "limit": 3, "dry_run": False, "ratio": 0.5},
    )
    assert str(uuid.UUID(event_id)) == event_id and uuid.UUID(event_id).version == 4
    (query, args), = spark.calls
    assert query.startswith("INSERT INTO `bridge`.`events`.`bridge_events` ")
    params_text = json.dumps(
        {"dry_run": False, "limit": 3, "ratio": 0.5, "start_date": nasty}, sort_keys=True
    )
    assert args == {
        "event_id": event_id,
        "operation": "RUN",
        "source_table": "",
        "target_table": "",
        "created_by": "job:calibration",
        "pipeline": "demo",
        "country": "colombia",
        "params": params_text,
    }
    assert all(isinstance(v, str) for v in args.values()), "every value a string parameter"
    for name, value in args.items():
        assert f":{name}" in query
        if value:
            assert value not in query, f"{name} formatted into the SQL"
    for literal in ("demo", "colombia", "DROP", "2024", "calibration", event_id):
        assert literal not in query
    assert "NULLIF(:country, '')" in query and "NULLIF(:params, '')" in query
    assert "'pending'" in query and "current_timestamp()" in query
    for column in ("event_id", "operation", "source_table", "target_table", "status",
                   "created_at", "created_by", "pipeline", "country", "params"):
        assert f"`{column}`" in query
    for column in ("primary_keys", "filter", "job_id", "rows_affected"):
        assert f"`{column}`" not in query, f"{column} is left NULL"

    event = events.get_event(event_id)
    assert event.operation is Operation.RUN and event.is_run
    assert event.status is EventStatus.PENDING
    assert (event.source_table, event.target_table) == ("", "")
    assert event.primary_keys == [] and event.filter is None
    assert (event.pipeline, event.country) == ("demo", "colombia")
    assert event.params == {"dry_run": False, "limit": 3, "ratio": 0.5, "start_date": nasty}
    assert event.params_text == params_text
    assert event.job_id is None and event.created_by == "job:calibration"
    select, select_args = spark.calls[-1]
    assert select.startswith("SELECT ") and event_id not in select
    assert select_args == {"event_id": event_id}

    # The server claims it, runs the job and writes back the job and the rows its sinks wrote.
    spark.table[event_id].update(status="completed", rows_affected=42, job_id="job-7")
    done = events.wait_for_completion(event_id, timeout=5)
    assert done.status is EventStatus.COMPLETED
    assert done.rows_affected == 42 and done.job_id == "job-7"


def test_spark_run_event_without_country_or_params() -> None:
    spark = FakeSpark()
    events = BridgeEventsClient(spark=spark, created_by="team", events_table="ops.sync_events")
    first = events.create_run_event("demo.yaml")
    second = events.create_run_event("Demo_2-x", params={})  # no overrides: NULL
    for (query, args), pipeline in zip(spark.calls, ("demo.yaml", "Demo_2-x")):
        assert query.startswith("INSERT INTO `ops`.`sync_events` ")
        assert args is not None
        assert args["pipeline"] == pipeline and args["country"] == "" and args["params"] == ""
    for event_id in (first, second):
        event = events.get_event(event_id)
        assert event.is_run and event.country is None
        assert event.params is None and event.params_text is None


def test_spark_failed_run_event_raises_with_the_message() -> None:
    spark = FakeSpark()
    events = BridgeEventsClient(spark=spark, created_by="team", sleep=lambda s: None)
    event_id = events.create_run_event("demo", country="peru")
    spark.table[event_id].update(
        status="failed", job_id="job-9",
        error_message="country: pipeline `demo` does not list `peru`",
    )
    with pytest.raises(EventFailedError) as info:
        events.wait_for_completion(event_id, timeout=5)
    assert info.value.error_message == "country: pipeline `demo` does not list `peru`"
    assert info.value.event.is_run and info.value.event.job_id == "job-9"
    text = str(info.value)
    assert "RUN of pipeline demo for peru" in text and "does not list" in text


def test_run_event_checks_name_the_argument_before_any_statement() -> None:
    spark = FakeSpark()
    events = BridgeEventsClient(spark=spark, created_by="team")
    cases: List[Tuple[Callable[[], Any], str]] = [
        (lambda: events.create_run_event(""), "pipeline"),
        (lambda: events.create_run_event(".hidden"), "pipeline"),
        (lambda: events.create_run_event("../demo"), "pipeline"),
        (lambda: events.create_run_event("pipelines/demo"), "pipeline"),
        (lambda: events.create_run_event("demo; DROP"), "pipeline"),
        (lambda: events.create_run_event("de mo"), "pipeline"),
        (lambda: events.create_run_event("d" * 201), "pipeline"),
        (lambda: events.create_run_event(None), "pipeline"),  # type: ignore[arg-type]
        (lambda: events.create_run_event(3), "pipeline"),  # type: ignore[arg-type]
        (lambda: events.create_run_event("demo", country=""), "country"),
        (lambda: events.create_run_event("demo", country="col ombia"), "country"),
        (lambda: events.create_run_event("demo", country="colômbia"), "country"),
        (lambda: events.create_run_event("demo", country="c" * 65), "country"),
        (lambda: events.create_run_event("demo", country="x'; --"), "country"),
        (lambda: events.create_run_event("demo", country=7), "country"),  # type: ignore[arg-type]
        (lambda: events.create_run_event("demo", params="x=1"), "params"),  # type: ignore[arg-type]
        (lambda: events.create_run_event("demo", params=[("x", "1")]), "params"),  # type: ignore[arg-type]
        (lambda: events.create_run_event("demo", params={"": "1"}), "params"),
        (lambda: events.create_run_event("demo", params={"a-b": "1"}), "params"),
        (lambda: events.create_run_event("demo", params={"a.b": "1"}), "params"),
        (lambda: events.create_run_event("demo", params={1: "1"}), "params"),  # type: ignore[dict-item]
        (lambda: events.create_run_event("demo", params={"a": None}), "params.a"),  # type: ignore[dict-item]
        (lambda: events.create_run_event("demo", params={"a": {"b": 1}}), "params.a"),  # type: ignore[dict-item]
        (lambda: events.create_run_event("demo", params={"a": [1, 2]}), "params.a"),  # type: ignore[dict-item]
        (lambda: events.create_run_event("demo", params={"a": b"x"}), "params.a"),  # type: ignore[dict-item]
        (lambda: events.create_run_event("demo", params={"a": float("nan")}), "params.a"),
        (lambda: events.create_run_event("demo", params={"a": float("inf")}), "params.a"),
        (lambda: events.create_event("RUN", "main.s.a", "dbo.A"), "operation"),
        (lambda: events.create_event(Operation.RUN, "main.s.a", "dbo.A"), "operation"),
    ]
    for call, argument in cases:
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value).startswith(f"{argument}:"), (argument, info.value)
    assert spark.calls == [], "nothing was written"
    assert "create_run_event" in str(pytest.raises(ValueError, events.create_event, "run", "a", "A").value)

    # The limits themselves are accepted.
    events.create_run_event("d" * 200, country="c" * 64, params={"a_1": "", "B2": -1.5e300})
    events.create_run_event("päivä", country="COL-1_x")
    assert len(spark.calls) == 2


class AnalysisException(Exception):
    pass


class FailingSpark(FakeSpark):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def sql(self, query: str, args: Optional[Dict[str, Any]] = None, **kwargs: Any) -> FakeDataFrame:
        self.calls.append((query, args))
        raise self.error


def test_run_event_into_a_table_without_the_run_columns() -> None:
    # Spark's own words (4.x, local) for an INSERT naming a column the table lacks.
    unresolved = AnalysisException(
        "[UNRESOLVED_COLUMN.WITH_SUGGESTION] A column, variable, or function parameter with name "
        "`pipeline` cannot be resolved. Did you mean one of the following? [`event_id`, "
        "`operation`, `source_table`, `target_table`, `primary_keys`]. SQLSTATE: 42703"
    )
    events = BridgeEventsClient(spark=FailingSpark(unresolved), created_by="team")
    with pytest.raises(BridgeError) as info:
        events.create_run_event("demo")
    assert info.value.error == "events_table_outdated"
    assert "bridge setup-events-table --apply" in str(info.value)
    assert info.value.__cause__ is unresolved

    # Any other failure is Spark's, untouched.
    for other in (
        AnalysisException("[TABLE_OR_VIEW_NOT_FOUND] The table or view `bridge`.`pipeline`.`ev` "
                          "cannot be found."),
        AnalysisException("[INSUFFICIENT_PERMISSIONS] User does not have MODIFY on table"),
    ):
        events = BridgeEventsClient(spark=FailingSpark(other), created_by="team",
                                    events_table="bridge.pipeline.ev")
        with pytest.raises(AnalysisException) as raised:
            events.create_run_event("demo")
        assert raised.value is other
