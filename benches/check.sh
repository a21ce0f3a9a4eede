#!/usr/bin/env bash
# CI check of the benchmark harness (keeps it from rotting; timings are not checked):
# a small run (50,000 rows) with the debug binaries that `cargo test --workspace` built, verifying
# that every extraction path (bridge, ConnectorX, arrow-odbc, mssql-python, pymssql + Polars, the
# Parquet encode limit, the Python operator's extract_to_arrow and ConnectorX into Arrow) writes the
# same rows as the loaded table, and that every write-back (bridge insert and upsert, the bulk peers
# mssql-python bulkcopy_arrow and freebcp, the Python baselines, the operator's sync_to_sql_server)
# produced the expected table: row counts and an order-independent checksum over all columns. A
# failing peer fails the check too, unless it is named in ALLOW_FAIL (comma-separated peer names,
# see `run.py --help`; default none).
# Installs what the peers need when it is missing: the venv from benches/requirements.txt, and the
# Debian packages tdsodbc + unixodbc (the FreeTDS ODBC driver arrow-odbc uses, registered as
# `FreeTDS`), freetds-bin (freebcp) and the shared libraries mssql-python's bundled ODBC driver
# links (libgssapi-krb5-2, libltdl7); apt-get needs root, as CI runs.
# Then real clients against the test server (clients/check_clients.py in its crate).
# Then bursts of events drained by `bridge serve` from its default events store, each checked
# exactly once (benches/events_burst.py): BURST sync events (default 200) with one and with two
# servers, 40 RUN events, 100 refused syncs. Then change tracking against a full reload on 20,000
# rows (benches/change_tracking.py): both Delta tables, read with the deltalake package, must
# equal the source after the snapshot and after the changes.
# Exits non-zero on any mismatch. Env: ROWS (default 50000), BURST, ALLOW_FAIL, BENCH_VENV,
# CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
venv="${BENCH_VENV:-$HOME/.cache/sql-databricks-bridge/bench-venv}"
libs=/usr/lib/x86_64-linux-gnu
if ! command -v freebcp >/dev/null || [ ! -e "$libs/odbc/libtdsodbc.so" ] || [ ! -e "$libs/libgssapi_krb5.so.2" ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tdsodbc unixodbc freetds-bin libgssapi-krb5-2 libltdl7 \
    >/dev/null
fi
if ! odbcinst -q -d -n FreeTDS >/dev/null 2>&1; then  # tdsodbc registers it; make sure
  odbcinst -i -d -f /usr/share/tdsodbc/odbcinst.ini >/dev/null
fi
if ! "$venv/bin/python" -c 'import connectorx, pyarrow, polars, pymssql, pytds, deltalake, arrow_odbc, mssql_python' \
    2>/dev/null \
    || ! cmp -s benches/requirements.txt "$venv/.bench-requirements.txt"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --only-binary=:all: -r benches/requirements.txt
  cp benches/requirements.txt "$venv/.bench-requirements.txt"
fi
debug="$CARGO_TARGET_DIR/debug"
if [ ! -x "$debug/bridge" ]; then
  cargo build -p sql-databricks-bridge --bin bridge
fi
if [ ! -x "$debug/tds-test-server" ]; then
  cargo build -p tds-test-server --bin tds-test-server
fi
# The Python operator, debug build, for its peers (extract_to_arrow, sync_to_sql_server).
VIRTUAL_ENV="$venv" "$venv/bin/maturin" develop -q -m sdk/operator/Cargo.toml >&2
"$venv/bin/python" benches/run.py --rows "${ROWS:-50000}" --check ${ALLOW_FAIL:+--allow-fail "$ALLOW_FAIL"} \
  --bridge "$debug/bridge" --server "$debug/tds-test-server"
# The real clients judge the test server: mssql-python (prepared statements, bulkcopy), arrow-odbc
# over FreeTDS ODBC, freebcp, SET FMTONLY (crates/tds-test-server/clients/check_clients.py).
"$venv/bin/python" crates/tds-test-server/clients/check_clients.py --server "$debug/tds-test-server"
# Small bursts through the default events store, each event once: syncs (one server, then two
# sharing the store), RUN events of the demo pipeline for both countries, and refused syncs.
burst() {
  "$venv/bin/python" benches/events_burst.py --bridge "$debug/bridge" --server "$debug/tds-test-server" "$@"
}
burst --sizes "${BURST:-200}"
burst --sizes "${BURST:-200}" --servers 2
burst --sizes 40 --kind run
burst --sizes 100 --kind refused
"$venv/bin/python" benches/change_tracking.py --rows 20000 --pattern recent --target-file-size 100000 \
  --bridge "$debug/bridge" --server "$debug/tds-test-server"
