"""What ``sync_to_sql_server`` accepts as a source, turned into an Arrow C stream.

Every source becomes an object with ``__arrow_c_stream__``, which the extension reads batch by
batch while it writes; nothing here collects a Spark DataFrame on the driver.
"""

from __future__ import annotations

import datetime as _dt
import decimal as _decimal
import uuid as _uuid
from typing import Any, Iterator, Optional, Sequence

import pyarrow as pa


def _is_spark_dataframe(obj: Any) -> bool:
    cls = type(obj)
    return cls.__name__ == "DataFrame" and cls.__module__.startswith("pyspark.sql")


def _is_pandas_dataframe(obj: Any) -> bool:
    cls = type(obj)
    return cls.__name__ == "DataFrame" and cls.__module__.startswith("pandas.")


def spark_batches(df: Any) -> Any:
    """A Spark DataFrame's rows as Arrow batches, one partition at a time on the driver.

    pyspark 4.2 and later do this themselves (``DataFrame.__arrow_c_stream__``); for older
    versions the same technique: each partition is serialised to Arrow IPC on the executors and
    fetched with ``toLocalIterator``, so the driver holds one partition at a time.
    """
    if hasattr(df, "__arrow_c_stream__"):
        return df
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import BinaryType, StructField, StructType

    schema = to_arrow_schema(df.schema)

    def to_ipc(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, schema) as writer:
            for batch in batches:
                writer.write_batch(batch)
        yield pa.record_batch([pa.array([sink.getvalue().to_pybytes()])], names=["ipc"])

    ipc = df.mapInArrow(to_ipc, StructType([StructField("ipc", BinaryType())]))

    def batches() -> Iterator[pa.RecordBatch]:
        for row in ipc.toLocalIterator():
            with pa.ipc.open_stream(row.ipc) as reader:
                yield from reader

    return pa.RecordBatchReader.from_batches(schema, batches())


def arrow_stream(source: Any, spark: Optional[Any] = None) -> Any:
    """``source`` as an object with ``__arrow_c_stream__``.

    Accepted: a pyarrow Table, RecordBatchReader or RecordBatch; a pandas DataFrame (its index
    is not written); a polars DataFrame or LazyFrame; a Spark DataFrame; a Unity Catalog table
    name (read with ``spark`` or the active Spark session). Anything else exporting ``__arrow_c_stream__``
    is read as it is.
    """
    if isinstance(source, str):
        session = spark or active_spark()
        if session is None:
            raise ValueError(f"source: `{source}` is a table name, which needs a Spark session")
        return spark_batches(session.table(source))
    if isinstance(source, pa.RecordBatch):
        return pa.Table.from_batches([source])
    if _is_spark_dataframe(source):
        return spark_batches(source)
    if _is_pandas_dataframe(source):
        return pa.Table.from_pandas(source, preserve_index=False)
    if type(source).__module__.startswith("polars") and type(source).__name__ == "LazyFrame":
        return source.collect()
    if hasattr(source, "__arrow_c_stream__"):
        return source
    raise TypeError(
        f"source: a {type(source).__module__}.{type(source).__name__} is not a table name, "
        "pyarrow Table/RecordBatchReader, pandas or polars DataFrame, or Spark DataFrame"
    )


def active_spark() -> Optional[Any]:
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        return None
    return SparkSession.getActiveSession()


def bind_values(params: Optional[Sequence[Any]]) -> list:
    """Query parameters as the extension binds them: ``None``, ``bool``, ``int``, ``float`` and
    ``str`` as they are; dates, times and datetimes as ISO 8601 text, ``Decimal`` and ``UUID``
    as text (SQL Server converts the text to the column's type on comparison)."""
    if params is None:
        return []
    if isinstance(params, (str, bytes)) or not isinstance(params, Sequence):
        raise TypeError("params: a list or tuple of values bound as @P1, @P2, ...")
    values = []
    for i, value in enumerate(params, start=1):
        if value is None or isinstance(value, (bool, int, float, str)):
            values.append(value)
        elif isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
            values.append(value.isoformat())
        elif isinstance(value, (_decimal.Decimal, _uuid.UUID)):
            values.append(str(value))
        else:
            raise TypeError(
                f"params: @P{i} is a {type(value).__name__}, which cannot be bound; use None, "
                "bool, int, float, str, date, datetime, time, Decimal or UUID"
            )
    return values
