"""``BridgeOperator``: the calls of the original SDK's operator, on the bridge's Rust engine."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import pyarrow as pa

from . import _native
from ._sources import active_spark, arrow_stream, bind_values


def _encrypt(value: Union[bool, str]) -> str:
    if value is True:
        return "required"
    if value is False:
        return "off"
    if value in ("required", "off", "danger_plaintext"):
        return value
    raise ValueError(
        f"encrypt: {value!r} is not True, False, 'required', 'off' or 'danger_plaintext'"
    )


class BridgeOperator:
    """SQL Server, from a notebook or job, through the bridge's engine (no server needed).

    Credentials are held by the extension and never appear in ``repr``, messages or logs. The
    object pickles (with its credentials) so Spark can ship it to executors for
    ``extract_to_spark(partition_on=...)``; treat a pickled operator as a secret.

    :param sql_server_host: host name of SQL Server.
    :param sql_server_database: database to use.
    :param sql_server_user: SQL login (with ``sql_server_password``).
    :param sql_server_password: its password, e.g. ``dbutils.secrets.get("scope", "sql_pass")``.
    :param port: TCP port (1433).
    :param encrypt: ``True``/``"required"`` (TLS for the whole session, the default),
        ``False``/``"off"`` (TLS for the login only) or ``"danger_plaintext"`` (no TLS; local
        test servers only).
    :param trust_server_certificate: accept the server's certificate without validating it.
    :param aad_token: an Azure AD access token, instead of a SQL login.
    :param read_driver: ``"mssql_tds"`` (default) or ``"tiberius"``, the client library that
        reads query results.
    :param connect_timeout_secs: seconds to wait for a connection (15).
    """

    def __init__(
        self,
        sql_server_host: str,
        sql_server_database: str,
        sql_server_user: Optional[str] = None,
        sql_server_password: Optional[str] = None,
        port: int = 1433,
        encrypt: Union[bool, str] = True,
        trust_server_certificate: bool = False,
        aad_token: Optional[str] = None,
        *,
        read_driver: Optional[str] = None,
        connect_timeout_secs: Optional[int] = None,
    ) -> None:
        self._args: Dict[str, Any] = dict(
            sql_server_host=sql_server_host,
            sql_server_database=sql_server_database,
            sql_server_user=sql_server_user,
            sql_server_password=sql_server_password,
            port=port,
            encrypt=encrypt,
            trust_server_certificate=trust_server_certificate,
            aad_token=aad_token,
            read_driver=read_driver,
            connect_timeout_secs=connect_timeout_secs,
        )
        self._connection = _native.Connection(
            sql_server_host,
            sql_server_database,
            user=sql_server_user,
            password=sql_server_password,
            port=port,
            encrypt=_encrypt(encrypt),
            trust_server_certificate=trust_server_certificate,
            aad_token=aad_token,
            read_driver=read_driver,
            connect_timeout_secs=connect_timeout_secs,
        )

    def __repr__(self) -> str:
        return f"BridgeOperator({self._connection.target()})"

    def __reduce__(self) -> Any:
        return (_rebuild, (self._args,))

    # Extraction ---------------------------------------------------------------------------

    def extract_to_arrow(
        self,
        query: str,
        params: Optional[Sequence[Any]] = None,
        partition_on: Optional[str] = None,
        partitions: int = 1,
        *,
        batch_size: Optional[int] = None,
    ) -> pa.RecordBatchReader:
        """Runs ``query`` and streams its rows as a ``pyarrow.RecordBatchReader``.

        Values in ``params`` are bound as ``@P1``, ``@P2``, ... (never pasted into the SQL).
        With ``partition_on`` (an integer column of the query) and ``partitions``, the column's
        [min, max] range is split and the ranges are read on as many connections at once; the
        query may then not end with ``ORDER BY``. Column types follow the bridge's outputs:
        ``tinyint`` becomes int16, ``datetime2(7)`` microseconds (finer digits dropped),
        ``datetimeoffset`` a UTC timestamp, ``uniqueidentifier`` text, ``time`` text.

        Connecting, the query's schema and its first batch are read before this returns, so
        their failures raise this package's exceptions; a failure later surfaces from pyarrow
        (``OSError``) with the same message.
        """
        return self._connection.extract(
            query,
            bind_values(params),
            partition_on=partition_on,
            partitions=partitions,
            batch_size=batch_size,
        )

    def extract_to_pandas(
        self,
        query: str,
        params: Optional[Sequence[Any]] = None,
        partition_on: Optional[str] = None,
        partitions: int = 1,
    ) -> Any:
        """``extract_to_arrow(...)`` read into a pandas DataFrame."""
        return self.extract_to_arrow(query, params, partition_on, partitions).read_pandas()

    def extract_to_polars(
        self,
        query: str,
        params: Optional[Sequence[Any]] = None,
        partition_on: Optional[str] = None,
        partitions: int = 1,
    ) -> Any:
        """``extract_to_arrow(...)`` read into a polars DataFrame."""
        import polars as pl

        return pl.from_arrow(self.extract_to_arrow(query, params, partition_on, partitions).read_all())

    def extract_to_spark(
        self,
        query: str,
        params: Optional[Sequence[Any]] = None,
        partition_on: Optional[str] = None,
        partitions: int = 1,
        *,
        spark: Optional[Any] = None,
        batch_size: Optional[int] = None,
    ) -> Any:
        """Runs ``query`` into a Spark DataFrame.

        Without ``partition_on`` the rows are read on the driver and become
        ``spark.createDataFrame`` of the Arrow data: for small results. With ``partition_on``
        and ``partitions``, the driver only computes the key ranges; each range is read by a
        Spark task on an executor (``mapInArrow``), so a large table is read in parallel across
        the cluster and never passes through the driver. Executors need this package installed
        and network access to SQL Server.
        """
        from ._spark import read_partitioned, read_small

        session = spark or _spark_session()
        if partition_on is None:
            reader = self.extract_to_arrow(query, params, None, partitions, batch_size=batch_size)
            return read_small(session, reader)
        values = bind_values(params)
        ranges = self._connection.partition_queries(query, values, partition_on, partitions)
        schema = self._connection.extract(
            f"SELECT TOP 0 * FROM ({query}) AS bridge_schema", values
        ).schema
        return read_partitioned(session, self, ranges, schema, batch_size)

    # Write-back ---------------------------------------------------------------------------

    def sync_to_sql_server(
        self,
        source: Any = None,
        target_table: Optional[str] = None,
        operation: str = "INSERT",
        primary_keys: Optional[Sequence[str]] = None,
        max_delete_rows: Optional[int] = None,
        *,
        idempotency_key: Optional[str] = None,
        source_table: Optional[str] = None,
        spark: Optional[Any] = None,
        warehouse_id: Optional[str] = None,
    ) -> int:
        """Writes ``source`` into ``target_table`` in one SQL Server transaction; returns the
        rows written (inserted, updated, upserted or deleted).

        ``source`` is a Unity Catalog table name, a Spark DataFrame (streamed to the driver one
        partition at a time, never collected whole), a pyarrow Table or RecordBatchReader, or a
        pandas or polars DataFrame. ``source_table=`` is the original SDK's name for a table-name
        source. A table name is read with ``spark`` or the active Spark session (inside
        Databricks); without one, through the Statement Execution API of the workspace the
        environment names (``DATABRICKS_HOST`` and ``DATABRICKS_TOKEN``, or a
        ``~/.databrickscfg`` profile) on ``warehouse_id`` (default ``DATABRICKS_WAREHOUSE_ID``),
        its result fetched as Arrow.

        ``operation``: ``INSERT`` (bulk load), ``UPSERT`` and ``UPDATE`` (by ``primary_keys``),
        ``DELETE`` (rows whose keys match; ``max_delete_rows`` caps them) or ``REPLACE`` (empty
        the table, then insert). The input is checked against the table's columns before
        anything is written; any failure rolls the whole write back. With ``idempotency_key``
        the write happens at most once per key: a repeated call changes nothing and returns the
        rows of the first.
        """
        if source is None:
            source = source_table
        elif source_table is not None:
            raise ValueError("give source or source_table, not both")
        if source is None:
            raise ValueError("source: required (a table name, DataFrame or Arrow data)")
        if not target_table:
            raise ValueError("target_table: required")
        # A table name without a Spark session goes to the extension as it is (Statement
        # Execution API); everything else becomes an Arrow C stream.
        if not (isinstance(source, str) and (spark or active_spark()) is None):
            source = arrow_stream(source, spark)
        rows, _already_applied = self._connection.sync(
            source,
            target_table,
            operation,
            primary_keys=list(primary_keys or []),
            max_delete_rows=max_delete_rows,
            idempotency_key=idempotency_key,
            warehouse_id=warehouse_id,
        )
        return rows

    # Pipelines ----------------------------------------------------------------------------

    def run_pipeline(
        self,
        path: Union[str, os.PathLike],
        country: Optional[str] = None,
        params: Optional[Mapping[str, Any]] = None,
        *,
        root: Optional[Union[str, os.PathLike]] = None,
    ) -> Dict[str, Any]:
        """Runs a pipeline file in-process with this operator's SQL Server connection (over
        ``config/`` and ``SQLSERVER_*``); returns its summary. See :func:`run_pipeline`."""
        return run_pipeline(path, country, params, root=root, _connection=self._connection)


def run_pipeline(
    path: Union[str, os.PathLike],
    country: Optional[str] = None,
    params: Optional[Mapping[str, Any]] = None,
    *,
    root: Optional[Union[str, os.PathLike]] = None,
    _connection: Optional[Any] = None,
) -> Dict[str, Any]:
    """Runs a pipeline file in-process, as ``bridge run`` does, and returns its summary (what
    ``bridge run --output json`` prints: run id, steps with their rows and outputs).

    The project is ``root``, else the folder above ``pipelines/`` when the file is in one, else
    the current directory; ``config/`` and the ``SQLSERVER_*`` / ``DATABRICKS_*`` variables are
    read from there as the CLI reads them. ``params`` override the country's parameters.
    """
    pairs: List[tuple] = [(str(k), str(v)) for k, v in (params or {}).items()]
    text = _native.run_pipeline(
        os.fspath(path),
        country,
        pairs,
        root=None if root is None else os.fspath(root),
        connection=_connection,
    )
    return json.loads(text)


def _rebuild(args: Dict[str, Any]) -> BridgeOperator:
    return BridgeOperator(**args)


def _spark_session() -> Any:
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession()
    return session if session is not None else SparkSession.builder.getOrCreate()
