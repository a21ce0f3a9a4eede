"""Spark worker for the Rust test target `tests/spark.rs`: one SparkSession for the whole test
binary, driven by JSON lines.

Protocol: one JSON object per line on stdin, one JSON object per line on stdout. The first line
written is `{"ready": true, "spark": <version>, "conf": {...}}` once the session is up. Every
request may carry an `"id"`, echoed in its answer. Failures answer `{"error": <message and
traceback>}` and the worker keeps serving; EOF on stdin stops the session and the process.
Nothing else is ever written to stdout: the protocol keeps a private copy of the original stdout
and file descriptor 1 (Python prints, the JVM's own output) is pointed at stderr.

Commands:

- `{"cmd": "read_parquet", "path": P}`: `spark.read.parquet(P)` (a file or a folder, as a
  Databricks user reads a Volume folder; files starting with `_` or `.` are skipped by Spark).
- `{"cmd": "read_delta_files", "path": P}`: the data files of the Delta table at P (the `add`
  actions of its log) through Spark's Parquet reader, as Databricks reads them.
- `{"cmd": "read_delta", "path": P}`: the table read by the `deltalake` package
  (`to_pyarrow_table()`), plus its schema types and protocol.
- `{"cmd": "write", "columns": [{"name", "type"}], "rows": [[value, ...]], "parquet":
  [{"path", "timestamp_type"}], "delta": P}`: builds a DataFrame from the typed spec (values in
  the encoding below, cast by Spark SQL), checks Spark holds exactly the spec, then writes each
  Parquet folder (one file; `timestamp_type` null keeps Spark's default, INT96) and a Delta table
  (`deltalake.write_deltalake` from `DataFrame.toArrow()`; delta-spark needs Maven). Answers the
  Parquet physical/logical type of every column of every file written.
- `{"cmd": "conf"}`: the session settings below, as Spark reports them.

Read answers: `{"columns": [{"name", "type", "arrow"}], "rows": [[...]]}` where `type` is Spark's
`simpleString` (for `read_delta`: the Delta schema's type name) and `arrow` the Arrow type the
values were encoded from. Value encoding (exact, typed):

- NULL -> `null`; boolean -> `true`/`false`; every other value is a string:
- integers: decimal digits; float/double: Python `repr` of the double (round-trips exactly);
- decimal(p,s): plain notation with exactly s fraction digits (`-1.50`, `0.000…01`);
- date: ISO `YYYY-MM-DD`;
- timestamps: ISO `YYYY-MM-DDTHH:MM:SS.ffffff` with as many fraction digits as the unit holds
  (6 for microseconds, 9 for nanoseconds); a time-zone-aware value (Spark TIMESTAMP, Arrow
  timestamp with a zone) is the UTC instant with a `Z` suffix, TIMESTAMP_NTZ has no suffix;
- time: `HH:MM:SS.ffffff` (digits by unit, as timestamps); binary: lowercase hex; string: itself.

Session settings (what matters of a Databricks cluster's defaults, made explicit so a change of
Spark default cannot change what the tests see):

- master `local[1]`, driver memory 512m, UI off, log level ERROR, JVM time zone UTC;
- `spark.sql.session.timeZone=UTC`: Databricks' default session time zone;
- `spark.sql.ansi.enabled=true`: Databricks SQL's default (and Spark 4's): bad casts fail
  instead of giving NULL;
- `spark.sql.parquet.inferTimestampNTZ.enabled=true`: INT64 TIMESTAMP(isAdjustedToUTC=false)
  is read as TIMESTAMP_NTZ, adjusted ones and INT96 as TIMESTAMP (Spark and Databricks default);
- `spark.sql.parquet.{datetime,int96}RebaseMode{InRead,InWrite}=CORRECTED`: proleptic Gregorian
  calendar, no rebasing of dates before 1582 (Spark 4's default; Databricks Runtime uses the
  same calendar). With EXCEPTION, files without Spark's writer metadata could not hold 0001-01-01;
- `spark.sql.parquet.outputTimestampType` left at INT96 (Spark's default) unless a write asks;
- `spark.sql.legacy.parquet.nanosAsLong=false` (default): nanosecond timestamps are refused
  (`PARQUET_TYPE_ILLEGAL`), as on Databricks;
- `spark.sql.parquet.int96AsTimestamp=true`, `spark.sql.parquet.binaryAsString=false` (defaults).
"""

import datetime
import decimal
import json
import os
import sys
import tempfile
import traceback
import urllib.parse

# The protocol's stdout: a private copy, then fd 1 goes to stderr before anything (the JVM
# included) can write to it.
_PROTOCOL = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
os.dup2(2, 1)
sys.stdout = sys.stderr

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import deltalake  # noqa: E402

SETTINGS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.ansi.enabled": "true",
    "spark.sql.parquet.inferTimestampNTZ.enabled": "true",
    "spark.sql.parquet.datetimeRebaseModeInRead": "CORRECTED",
    "spark.sql.parquet.datetimeRebaseModeInWrite": "CORRECTED",
    "spark.sql.parquet.int96RebaseModeInRead": "CORRECTED",
    "spark.sql.parquet.int96RebaseModeInWrite": "CORRECTED",
    "spark.sql.parquet.outputTimestampType": "INT96",
    "spark.sql.legacy.parquet.nanosAsLong": "false",
    "spark.sql.parquet.int96AsTimestamp": "true",
    "spark.sql.parquet.binaryAsString": "false",
}

EPOCH = datetime.datetime(1970, 1, 1)
EPOCH_DATE = datetime.date(1970, 1, 1)
UNIT_DIGITS = {"s": 0, "ms": 3, "us": 6, "ns": 9}


def start_session(scratch):
    """The one SparkSession, configured as documented above."""
    from pyspark.sql import SparkSession

    log4j = os.path.join(os.path.dirname(os.path.abspath(__file__)), "log4j2.properties")
    java_options = f"-Duser.timezone=UTC -Dlog4j2.configurationFile=file:{log4j}"
    builder = (
        SparkSession.builder.master("local[1]")
        .appName("sql-databricks-bridge-tests")
        .config("spark.driver.memory", "512m")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.extraJavaOptions", java_options)
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.sql.warehouse.dir", os.path.join(scratch, "warehouse"))
        .config("spark.local.dir", os.path.join(scratch, "local"))
    )
    for key, value in SETTINGS.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


# ---- encoding -----------------------------------------------------------------------------


def fraction(total, digits):
    """Splits an integer count of 10^-digits seconds into (whole seconds, fraction text)."""
    scale = 10**digits
    seconds, rest = divmod(total, scale)
    return seconds, (f".{rest:0{digits}d}" if digits else "")


def encode_timestamp(value, unit, aware):
    seconds, frac = fraction(value, UNIT_DIGITS[unit])
    text = (EPOCH + datetime.timedelta(seconds=seconds)).isoformat(timespec="seconds") + frac
    return text + ("Z" if aware else "")


def encode_time(value, unit):
    seconds, frac = fraction(value, UNIT_DIGITS[unit])
    hours, rest = divmod(seconds, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}{frac}"


def encoder(arrow_type):
    """A function from one Arrow array to a list of encoded values."""
    t = arrow_type
    if pa.types.is_timestamp(t):
        return lambda a: [
            None if v is None else encode_timestamp(v, t.unit, t.tz is not None)
            for v in a.cast(pa.int64()).to_pylist()
        ]
    if pa.types.is_date32(t):
        return lambda a: [
            None if v is None else (EPOCH_DATE + datetime.timedelta(days=v)).isoformat()
            for v in a.cast(pa.int32()).to_pylist()
        ]
    if pa.types.is_time(t):
        raw = pa.int64() if t.bit_width == 64 else pa.int32()
        return lambda a: [
            None if v is None else encode_time(v, t.unit) for v in a.cast(raw).to_pylist()
        ]
    if pa.types.is_decimal(t):
        return lambda a: [None if v is None else format(v, "f") for v in a.to_pylist()]
    if pa.types.is_boolean(t):
        return lambda a: a.to_pylist()
    if pa.types.is_integer(t):
        return lambda a: [None if v is None else str(v) for v in a.to_pylist()]
    if pa.types.is_floating(t):
        return lambda a: [None if v is None else repr(float(v)) for v in a.to_pylist()]
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return lambda a: a.to_pylist()
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return lambda a: [None if v is None else v.hex() for v in a.to_pylist()]
    if pa.types.is_dictionary(t):
        inner = encoder(t.value_type)
        return lambda a: inner(a.dictionary_decode())
    raise ValueError(f"no exact encoding for Arrow type {t}")


def encode_table(table, types):
    """`{"columns", "rows"}` of an Arrow table; `types` are the reader's type names per column."""
    columns = []
    encoded = []
    for name, field, type_name in zip(table.column_names, table.schema, types):
        columns.append({"name": name, "type": type_name, "arrow": str(field.type)})
        encoded.append(encoder(field.type)(table.column(name).combine_chunks()))
    rows = [list(r) for r in zip(*encoded)] if encoded else []
    return {"columns": columns, "rows": rows}


def encode_spark(df):
    """Spark's view of a DataFrame: its types (`simpleString`) and its values through Arrow."""
    types = [f.dataType.simpleString() for f in df.schema.fields]
    return encode_table(df.toArrow(), types)


# ---- commands -----------------------------------------------------------------------------


def delta_files(path):
    """The data files of a Delta table's latest version: replayed from the JSON commits of
    `_delta_log` (so Spark can read the files even when the `deltalake` package refuses the
    table), or `DeltaTable.file_uris()` once the log has a checkpoint."""
    log = os.path.join(path, "_delta_log")
    if os.path.exists(os.path.join(log, "_last_checkpoint")):
        files = deltalake.DeltaTable(path).file_uris()
    else:
        live = {}
        commits = sorted(f for f in os.listdir(log) if f.endswith(".json"))
        if not commits:
            raise ValueError(f"{log} holds no commit")
        for commit in commits:
            with open(os.path.join(log, commit), encoding="utf-8") as f:
                for line in f:
                    action = json.loads(line) if line.strip() else {}
                    if "add" in action:
                        live[action["add"]["path"]] = True
                    elif "remove" in action:
                        live.pop(action["remove"]["path"], None)
        files = [
            p if "://" in p else os.path.join(path, urllib.parse.unquote(p)) for p in sorted(live)
        ]
    if not files:
        raise ValueError(f"the Delta table at {path} lists no data files")
    return files


def read_parquet(spark, req):
    return encode_spark(spark.read.parquet(req["path"]))


def read_delta_files(spark, req):
    files = delta_files(req["path"])
    answer = encode_spark(spark.read.parquet(*files))
    answer["files"] = files
    return answer


def read_delta(spark, req):
    table = deltalake.DeltaTable(req["path"])
    fields = {f.name: f for f in table.schema().fields}
    arrow = table.to_pyarrow_table()
    types = [str(fields[name].type.type) for name in arrow.column_names]
    answer = encode_table(arrow, types)
    protocol = table.protocol()
    answer["protocol"] = {
        "min_reader_version": protocol.min_reader_version,
        "min_writer_version": protocol.min_writer_version,
        "reader_features": sorted(protocol.reader_features or []),
        "writer_features": sorted(protocol.writer_features or []),
    }
    answer["version"] = table.version()
    return answer


def spark_expression(name, spark_type):
    """Spark SQL turning the encoded string column `name` into `spark_type`."""
    column = f"`{name}`"
    if spark_type == "binary":
        return f"unhex({column}) AS {column}"
    return f"CAST({column} AS {spark_type}) AS {column}"


def write(spark, req):
    columns = req["columns"]
    names = [c["name"] for c in columns]
    strings = pa.table(
        {
            name: pa.array(
                [None if row[i] is None else str(row[i]).lower() if isinstance(row[i], bool)
                 else row[i] for row in req["rows"]],
                pa.string(),
            )
            for i, name in enumerate(names)
        }
    )
    raw = spark.createDataFrame(strings)
    df = raw.selectExpr(*[spark_expression(c["name"], c["type"]) for c in columns]).coalesce(1)
    df = df.localCheckpoint()
    held = encode_spark(df)
    got_types = [c["type"] for c in held["columns"]]
    want_types = [c["type"] for c in columns]
    wrong = [
        f"row {r}, column {names[c]}: Spark holds {got!r}, the spec says {want!r}"
        for r, (got_row, want_row) in enumerate(zip(held["rows"], req["rows"]))
        for c, (got, want) in enumerate(zip(got_row, want_row))
        if got != want
    ]
    if got_types != want_types or len(held["rows"]) != len(req["rows"]) or wrong:
        raise ValueError(
            "Spark does not hold the spec exactly (write the values as the worker encodes "
            f"them): types {got_types}, spec {want_types}; {len(held['rows'])} rows, spec "
            f"{len(req['rows'])}; " + "; ".join(wrong[:10])
        )
    written = []
    for target in req.get("parquet", []):
        kind = target.get("timestamp_type") or SETTINGS["spark.sql.parquet.outputTimestampType"]
        spark.conf.set("spark.sql.parquet.outputTimestampType", kind)
        try:
            df.write.mode("overwrite").parquet(target["path"])
        finally:
            spark.conf.set(
                "spark.sql.parquet.outputTimestampType",
                SETTINGS["spark.sql.parquet.outputTimestampType"],
            )
        files = sorted(
            f for f in os.listdir(target["path"]) if f.endswith(".parquet") and f[0] not in "._"
        )
        if not files:
            raise ValueError(f"Spark wrote no Parquet file into {target['path']}")
        for f in files:
            schema = pq.ParquetFile(os.path.join(target["path"], f)).schema
            written.append(
                {
                    "path": os.path.join(target["path"], f),
                    "columns": {
                        schema.column(i).name: {
                            "physical": schema.column(i).physical_type,
                            "logical": str(schema.column(i).logical_type),
                        }
                        for i in range(len(schema))
                    },
                }
            )
    if req.get("delta"):
        deltalake.write_deltalake(req["delta"], df.toArrow(), mode="overwrite")
    return {"parquet": written, "delta": req.get("delta")}


def conf(spark, _req):
    return {"spark": spark.version, "conf": {k: spark.conf.get(k) for k in SETTINGS}}


COMMANDS = {
    "read_parquet": read_parquet,
    "read_delta_files": read_delta_files,
    "read_delta": read_delta,
    "write": write,
    "conf": conf,
}


def answer(message):
    _PROTOCOL.write(json.dumps(message, ensure_ascii=False) + "\n")
    _PROTOCOL.flush()


def serve(spark):
    for line in sys.stdin:
        if not line.strip():
            continue
        request_id = None
        try:
            request = json.loads(line)
            request_id = request.get("id")
            command = COMMANDS.get(request.get("cmd"))
            if command is None:
                raise ValueError(
                    f"unknown command {request.get('cmd')!r}; known: {sorted(COMMANDS)}"
                )
            result = command(spark, request)
        except Exception as e:  # every failure goes back to the caller, who decides
            result = {"error": f"{type(e).__name__}: {e}\n{traceback.format_exc()}"}
        result["id"] = request_id
        answer(result)


def main():
    with tempfile.TemporaryDirectory(prefix="bridge-spark-worker-") as scratch:
        try:
            spark = start_session(scratch)
        except Exception as e:
            answer({"error": f"Spark did not start: {e}\n{traceback.format_exc()}"})
            return 1
        try:
            answer({"ready": True, **conf(spark, None)})
            serve(spark)
        finally:
            spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
