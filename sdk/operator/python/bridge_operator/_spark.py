"""``extract_to_spark``: small results through the driver, large ones read on executors."""

from __future__ import annotations

from typing import Any, Iterator, List, Optional, Sequence, Tuple

import pyarrow as pa


def spark_schema(schema: pa.Schema) -> Any:
    """The Spark schema of Arrow columns as the bridge's outputs map them: a timestamp without
    a time zone (``datetime2``, ``datetime``) is ``TIMESTAMP_NTZ``, one with (``datetimeoffset``,
    read as UTC) is ``TIMESTAMP``."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema, prefer_timestamp_ntz=True)


def read_small(spark: Any, reader: pa.RecordBatchReader) -> Any:
    """The rows, read on the driver, as ``spark.createDataFrame`` of the Arrow data."""
    table = reader.read_all()
    schema = spark_schema(table.schema)
    try:
        return spark.createDataFrame(table, schema=schema)
    except TypeError:
        # pyspark before 4.0 takes pandas, not Arrow.
        return spark.createDataFrame(table.to_pandas(), schema=schema)


def read_partitioned(
    spark: Any,
    operator: Any,
    ranges: Sequence[Tuple[str, List[Any]]],
    schema: pa.Schema,
    batch_size: Optional[int],
) -> Any:
    """One Spark task per key range; each reads its range with its own connection."""
    queries = list(ranges)

    def read(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for index in batch.column(0).to_pylist():
                sql, values = queries[index]
                reader = operator._connection.extract(sql, values, batch_size=batch_size)
                for out in reader:
                    yield out

    ids = spark.range(0, len(queries), 1, numPartitions=max(1, len(queries)))
    return ids.mapInArrow(read, spark_schema(schema))
