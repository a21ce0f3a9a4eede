"""sync_to_sql_server from every kind of source, for every operation, with the target's exact
state after each; and bad input raising the right exception with nothing written."""

from __future__ import annotations

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from bridge_operator import (
    BridgeConnectionError,
    BridgeError,
    BridgeOperator,
    DataError,
    LimitExceededError,
    SchemaMismatchError,
)

TABLE = "dbo.customers"


def _create(server):
    server.tsql(
        f"CREATE TABLE {TABLE} (id INT NOT NULL PRIMARY KEY, name NVARCHAR(50) NULL, "
        "score DECIMAL(10,2) NULL, tier TINYINT NULL)"
    )


def _state(server):
    return server.rows(f"SELECT id, name, CAST(score AS FLOAT), tier FROM {TABLE} ORDER BY id")


def _arrow(rows):
    """Rows (id, name, score, tier) as a pyarrow Table of Spark-like types."""
    return pa.table({
        "id": pa.array([r[0] for r in rows], pa.int32()),
        "name": pa.array([r[1] for r in rows], pa.string()),
        "score": pa.array([None if r[2] is None else pa.scalar(r[2]).as_py() for r in rows],
                          pa.float64()),
        "tier": pa.array([r[3] for r in rows], pa.int16()),
    })


def _keys(ids):
    return pa.table({"id": pa.array(ids, pa.int32())})


def as_table(t, spark):
    return t


def as_reader(t, spark):
    return pa.RecordBatchReader.from_batches(t.schema, t.to_batches(max_chunksize=1))


def as_pandas(t, spark):
    # Nullable integer dtypes: with NumPy's, a column holding None becomes float64 (which an
    # integer column refuses).
    nullable = {pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype()}
    return t.to_pandas(types_mapper=nullable.get)


def as_polars(t, spark):
    return pl.from_arrow(t)


def as_spark(t, spark):
    return spark.createDataFrame(t).repartition(2)


SOURCES = [as_table, as_reader, as_pandas, as_polars, as_spark]


@pytest.mark.parametrize("convert", SOURCES, ids=[f.__name__ for f in SOURCES])
def test_four_operations_leave_the_exact_state(server, op, convert, request):
    spark = request.getfixturevalue("spark") if convert is as_spark else None
    _create(server)
    inserted = op.sync_to_sql_server(
        convert(_arrow([(1, "ana", 1.5, 1), (2, "bo", None, 2), (3, "cy", 3.25, None)]), spark),
        TABLE, "INSERT",
    )
    assert inserted == 3
    assert _state(server) == [(1, "ana", 1.5, 1), (2, "bo", None, 2), (3, "cy", 3.25, None)]

    upserted = op.sync_to_sql_server(
        convert(_arrow([(2, "bob", 2.0, 3), (4, "di", 4.0, 4)]), spark),
        TABLE, "UPSERT", primary_keys=["id"],
    )
    assert upserted == 2
    assert _state(server) == [
        (1, "ana", 1.5, 1), (2, "bob", 2.0, 3), (3, "cy", 3.25, None), (4, "di", 4.0, 4)
    ]

    updated = op.sync_to_sql_server(
        convert(_arrow([(1, "ANA", None, 9), (99, "nobody", 0.0, 0)]), spark),
        TABLE, "update", primary_keys=["id"],
    )
    assert updated == 1  # key 99 matches no row and is ignored
    assert _state(server) == [
        (1, "ANA", None, 9), (2, "bob", 2.0, 3), (3, "cy", 3.25, None), (4, "di", 4.0, 4)
    ]

    deleted = op.sync_to_sql_server(
        convert(_keys([2, 4, 77]), spark), TABLE, "DELETE", primary_keys=["id"], max_delete_rows=2
    )
    assert deleted == 2
    assert _state(server) == [(1, "ANA", None, 9), (3, "cy", 3.25, None)]


def test_a_table_name_is_read_with_the_spark_session(server, op, spark):
    _create(server)
    spark.createDataFrame(_arrow([(5, "ed", 5.0, 5), (6, "fa", None, None)])) \
        .createOrReplaceTempView("calibrated_panel")
    rows = op.sync_to_sql_server(source_table="calibrated_panel", target_table=TABLE,
                                 operation="INSERT", primary_keys=["id"], spark=spark)
    assert rows == 2
    assert _state(server) == [(5, "ed", 5.0, 5), (6, "fa", None, None)]


def test_a_table_name_outside_databricks_is_read_through_statement_execution(
    server, op, workspace, monkeypatch, tmp_path
):
    workspace.sql("CREATE TABLE main.crm.customers (id INT, name STRING, score DOUBLE, tier SMALLINT)")
    workspace.sql("INSERT INTO main.crm.customers VALUES (7, 'gi', 7.5, 3), (8, NULL, NULL, NULL)")
    _create(server)
    workspace.environment(monkeypatch, tmp_path)
    monkeypatch.setattr("bridge_operator._operator.active_spark", lambda: None)  # not in Databricks
    assert op.sync_to_sql_server("main.crm.customers", TABLE, "INSERT") == 2
    assert _state(server) == [(7, "gi", 7.5, 3), (8, None, None, None)]
    with pytest.raises(BridgeError, match="nowhere"):
        op.sync_to_sql_server("main.crm.nowhere", TABLE, "INSERT")
    assert len(_state(server)) == 2


def test_a_table_name_without_spark_or_workspace_says_what_to_set(op, monkeypatch, tmp_path):
    for var in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "DATABRICKS_CONFIG_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "no-databrickscfg"))
    monkeypatch.setattr("bridge_operator._operator.active_spark", lambda: None)
    with pytest.raises(BridgeError, match="DATABRICKS_HOST"):
        op.sync_to_sql_server("main.crm.customers", TABLE, "INSERT")


def test_an_idempotency_key_writes_once(server, op):
    _create(server)
    data = _arrow([(1, "ana", 1.0, 1)])
    assert op.sync_to_sql_server(data, TABLE, "INSERT", idempotency_key="batch-7") == 1
    assert op.sync_to_sql_server(data, TABLE, "INSERT", idempotency_key="batch-7") == 1
    assert _state(server) == [(1, "ana", 1.0, 1)]


def test_an_unknown_table_is_a_schema_mismatch(server, op):
    with pytest.raises(SchemaMismatchError, match="dbo.nowhere does not exist"):
        op.sync_to_sql_server(_arrow([(1, "a", 1.0, 1)]), "dbo.nowhere", "INSERT")


def test_a_type_mismatch_is_refused_before_any_row(server, op):
    _create(server)
    bad = pa.table({"id": pa.array([1], pa.int32()), "name": pa.array([b"\x00"], pa.binary())})
    with pytest.raises(SchemaMismatchError, match="name"):
        op.sync_to_sql_server(bad, TABLE, "INSERT")
    missing = pa.table({"id": [1], "colour": ["red"]})
    with pytest.raises(SchemaMismatchError, match="colour"):
        op.sync_to_sql_server(missing, TABLE, "INSERT")
    assert _state(server) == []


def test_a_value_the_column_cannot_hold_writes_nothing(server, op):
    _create(server)
    rows = [(i, "ok", 1.0, 1) for i in range(1, 50)] + [(50, "too big", 1.0, 300)]
    with pytest.raises(DataError, match="tier"):
        op.sync_to_sql_server(_arrow(rows), TABLE, "INSERT")
    assert _state(server) == []


def test_deleting_over_the_cap_changes_nothing(server, op):
    _create(server)
    op.sync_to_sql_server(_arrow([(1, "a", 1.0, 1), (2, "b", 2.0, 2), (3, "c", 3.0, 3)]), TABLE, "INSERT")
    with pytest.raises(LimitExceededError, match="would delete 3 rows .* over max_delete_rows 2"):
        op.sync_to_sql_server(_keys([1, 2, 3]), TABLE, "DELETE", primary_keys=["id"], max_delete_rows=2)
    assert len(_state(server)) == 3


def test_a_wrong_password_writes_nothing(server):
    server.tsql(f"CREATE TABLE {TABLE} (id INT NOT NULL)")
    bad = BridgeOperator("127.0.0.1", "master", "sa", "wrong-password", port=server.port,
                         encrypt="danger_plaintext")
    with pytest.raises(BridgeConnectionError, match="Login failed") as e:
        bad.sync_to_sql_server(pa.table({"id": [1]}), TABLE, "INSERT")
    assert "wrong-password" not in str(e.value)
    assert server.rows(f"SELECT COUNT(*) FROM {TABLE}") == [(0,)]


def test_bad_arguments_are_value_errors(op, monkeypatch):
    data = pa.table({"id": [1]})
    with pytest.raises(ValueError, match="operation"):
        op.sync_to_sql_server(data, TABLE, "MERGE")
    with pytest.raises(ValueError, match="primary_keys"):
        op.sync_to_sql_server(data, TABLE, "UPSERT")
    with pytest.raises(TypeError, match="source"):
        op.sync_to_sql_server(42, TABLE, "INSERT")
    with pytest.raises(ValueError, match="primary_keys: column `nope` is not in the input"):
        op.sync_to_sql_server(data, TABLE, "DELETE", primary_keys=["nope"])
    with pytest.raises(ValueError, match="max_delete_rows applies"):
        op.sync_to_sql_server(data, TABLE, "INSERT", max_delete_rows=5)
    # A table name is validated and quoted before it reaches any SQL.
    monkeypatch.setattr("bridge_operator._operator.active_spark", lambda: None)
    with pytest.raises(ValueError, match="invalid identifier"):
        op.sync_to_sql_server("main.sales.x; DROP TABLE y", TABLE, "INSERT")
