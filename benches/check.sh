#!/usr/bin/env bash
# CI check of the benchmark harness (keeps it from rotting; timings are not checked):
# a small run (50,000 rows) with the debug binaries that `cargo test --workspace` built, verifying
# that the three extraction paths (bridge, ConnectorX, pymssql + Polars) write the same rows as
# the loaded table, and that every write-back (bridge insert and upsert, Python baselines)
# produced the expected table: row counts and an order-independent checksum over all columns.
# Then bursts of events drained by `bridge serve` from its default events store, each checked
# exactly once (benches/events_burst.py): BURST sync events (default 200) with one and with two
# servers, 40 RUN events, 100 refused syncs. Then change tracking against a full reload on 20,000
# rows (benches/change_tracking.py): both Delta tables, read with the deltalake package, must
# equal the source after the snapshot and after the changes.
# Exits non-zero on any mismatch. Env: ROWS (default 50000), BURST, BENCH_VENV, CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
venv="${BENCH_VENV:-$HOME/.cache/sql-databricks-bridge/bench-venv}"
if ! "$venv/bin/python" -c 'import connectorx, pyarrow, polars, pymssql, pytds, deltalake' 2>/dev/null \
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
"$venv/bin/python" benches/run.py --rows "${ROWS:-50000}" --check \
  --bridge "$debug/bridge" --server "$debug/tds-test-server"
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
