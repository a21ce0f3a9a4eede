"""Type stubs of the extension module ``bridge_operator._native`` (Rust, PyO3)."""

from typing import Any, List, Optional, Sequence, Tuple

import pyarrow as pa

__version__: str

class BridgeError(Exception):
    """Base class of the operator's errors."""

class BridgeConnectionError(BridgeError):
    """SQL Server could not be reached, or refused the login."""

class QueryError(BridgeError):
    """SQL Server refused a statement."""

class SchemaMismatchError(BridgeError):
    """The input does not fit the target table, or the table does not exist."""

class LimitExceededError(BridgeError):
    """A write went over a limit the caller set; nothing was changed."""

class DataError(BridgeError):
    """A value the target cannot hold, duplicate keys, or an input that failed mid-stream."""

# A value bound as @Pn: None, bool, int, float or str.
_Value = Any

class Connection:
    """A SQL Server connection's settings; credentials stay in Rust and are never shown."""

    def __init__(
        self,
        host: str,
        database: str,
        user: Optional[str] = None,
        password: Optional[str] = None,
        port: int = 1433,
        encrypt: str = "required",
        trust_server_certificate: bool = False,
        aad_token: Optional[str] = None,
        read_driver: Optional[str] = None,
        connect_timeout_secs: Optional[int] = None,
    ) -> None: ...
    def target(self) -> str:
        """``host:port/database``."""
    def extract(
        self,
        query: str,
        params: Sequence[_Value] = ...,
        partition_on: Optional[str] = None,
        partitions: int = 1,
        batch_size: Optional[int] = None,
    ) -> pa.RecordBatchReader: ...
    def partition_queries(
        self,
        query: str,
        params: Sequence[_Value] = ...,
        partition_on: str = "",
        partitions: int = 1,
    ) -> List[Tuple[str, List[_Value]]]: ...
    def sync(
        self,
        source: Any,
        target_table: str,
        operation: str,
        primary_keys: Sequence[str] = ...,
        max_delete_rows: Optional[int] = None,
        idempotency_key: Optional[str] = None,
        warehouse_id: Optional[str] = None,
    ) -> Tuple[int, bool]:
        """``source``: anything with ``__arrow_c_stream__``, or a Unity Catalog table name read
        through the Statement Execution API. Returns ``(rows_written, already_applied)``."""

def run_pipeline(
    path: str,
    country: Optional[str] = None,
    params: Sequence[Tuple[str, str]] = ...,
    root: Optional[str] = None,
    connection: Optional[Connection] = None,
) -> str:
    """The run summary as JSON text."""
