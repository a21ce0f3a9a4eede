"""extract_to_spark on a local Spark session (local[2]): the partitioned read, where each key
range is read by a Spark task, equals the plain read through the driver."""

from __future__ import annotations

import datetime as dt
import decimal


def _orders(server, count):
    server.tsql(
        "CREATE TABLE dbo.orders (id BIGINT NULL, region NVARCHAR(20) NOT NULL, "
        "amount DECIMAL(18,4) NULL, placed DATETIME2(7) NULL, paid DATETIMEOFFSET(3) NULL, "
        "flag TINYINT NULL)"
    )
    values = ", ".join(
        f"({i}, N'r{i % 7}', {i}.1250, '2024-01-{1 + i % 28:02d} 10:00:00.1234567', "
        f"'2024-02-{1 + i % 28:02d} 08:00:00.500 +02:00', {i % 256})"
        for i in range(1, count + 1)
    )
    server.tsql(f"INSERT INTO dbo.orders VALUES {values}, (NULL, N'no key', NULL, NULL, NULL, NULL)")


def _rows(df):
    return sorted((tuple(r) for r in df.collect()), key=repr)


def test_partitioned_spark_read_equals_the_plain_one(server, op, spark):
    _orders(server, 500)
    query = "SELECT * FROM dbo.orders"
    plain = op.extract_to_spark(query, spark=spark)
    split = op.extract_to_spark(query, partition_on="id", partitions=4, spark=spark)
    assert split.schema == plain.schema
    assert split.rdd.getNumPartitions() == 4
    plain_rows, split_rows = _rows(plain), _rows(split)
    assert len(split_rows) == 501
    assert split_rows == plain_rows
    by_id = {r[0]: r for r in split_rows}
    assert by_id[None][1] == "no key"
    assert by_id[3] == (
        3, "r3", decimal.Decimal("3.1250"), dt.datetime(2024, 1, 4, 10, 0, 0, 123456),
        dt.datetime(2024, 2, 4, 6, 0, 0, 500000), 3,
    )


def test_a_partitioned_spark_read_binds_its_values(server, op, spark):
    _orders(server, 50)
    df = op.extract_to_spark(
        "SELECT id, region FROM dbo.orders WHERE region = @P1", ["r3"],
        partition_on="id", partitions=3, spark=spark,
    )
    assert sorted(r.id for r in df.collect()) == [i for i in range(1, 51) if i % 7 == 3]
