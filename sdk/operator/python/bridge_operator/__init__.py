"""BridgeOperator: sql-databricks-bridge's engine inside Python and Spark.

For notebooks and jobs that run without a bridge server: SQL Server credentials come from the
job (for example ``dbutils.secrets``), and every call runs the bridge's Rust engine in-process
(a PyO3 extension, ``bridge_operator._native``).

>>> from bridge_operator import BridgeOperator
>>> op = BridgeOperator("sql.example.com", "KWP_Colombia", "reader", password)
>>> reader = op.extract_to_arrow("SELECT * FROM dbo.Ventas WHERE fecha >= @P1", params=[date(2024, 1, 1)])
"""

from ._native import (
    BridgeConnectionError,
    BridgeError,
    DataError,
    LimitExceededError,
    QueryError,
    SchemaMismatchError,
    __version__,
)
from ._operator import BridgeOperator, run_pipeline

__all__ = [
    "BridgeOperator",
    "BridgeError",
    "BridgeConnectionError",
    "QueryError",
    "SchemaMismatchError",
    "LimitExceededError",
    "DataError",
    "run_pipeline",
    "__version__",
]
