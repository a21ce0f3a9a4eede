#!/usr/bin/env bash
# Run every working baseline against a fresh tds-test-server and print one JSON line per run,
# each with "server_cpu_s" (CPU seconds the server process used during that run) added.
# Usage: benches/baselines/run_baselines.sh [ROWS...]   (default: 50000 500000)
# Env: SERVER (default target/debug/tds-test-server), PY (default the bench venv's python),
#      SKIP_SLOW=1 skips the per-row write-back methods.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
SERVER="${SERVER:-$root/target/debug/tds-test-server}"
PY="${PY:-$HOME/.cache/sql-databricks-bridge/bench-venv/bin/python}"
rows_list=("${@:-50000 500000}")
[ $# -eq 0 ] && rows_list=(50000 500000)
work="$(mktemp -d)"
"$SERVER" --port 0 --db "$work/bench.db" >"$work/server.out" 2>"$work/server.err" &
spid=$!
trap 'kill $spid 2>/dev/null; wait $spid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do grep -q listening "$work/server.out" 2>/dev/null && break; sleep 0.1; done
port="$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$work/server.out")"
[ -n "$port" ] || { echo "server did not start" >&2; exit 1; }
tck="$(getconf CLK_TCK)"
cpu() { awk '{print $14 + $15}' "/proc/$spid/stat"; }
run() { # run NAME ARGS... : run one baseline, add server CPU seconds to its JSON line
  local c0 c1 line
  c0="$(cpu)"
  line="$("$PY" "$@" | tail -1)"
  c1="$(cpu)"
  echo "${line%\}}, \"server_cpu_s\": $(awk -v a="$c0" -v b="$c1" -v t="$tck" 'BEGIN{printf "%.2f", (b-a)/t}')}"
}
for n in "${rows_list[@]}"; do
  # write-back (also loads the table the extracts read)
  run "$here/python_writeback.py" --port "$port" --table bench --create --rows "$n" --method pytds-bulk
  if [ "$n" -le 50000 ]; then
    run "$here/python_writeback.py" --port "$port" --table bench_write --create --rows "$n" --method pymssql-values
    if [ "${SKIP_SLOW:-0}" != 1 ]; then
      run "$here/python_writeback.py" --port "$port" --table bench_write --create --rows 5000 --method pymssql-executemany
      run "$here/python_writeback.py" --port "$port" --table bench_write --create --rows 5000 --method pytds-executemany
    fi
  fi
  # extract
  run "$here/raw_tds_read.py" --port "$port" --query "SELECT * FROM bench"
  run "$here/connectorx_extract.py" --port "$port" --query "SELECT * FROM bench" --discard
  run "$here/connectorx_extract.py" --port "$port" --query "SELECT * FROM bench" --out "$work/cx.parquet"
  run "$here/python_extract.py" --driver pymssql --port "$port" --query "SELECT * FROM bench" --discard
  run "$here/python_extract.py" --driver pymssql --port "$port" --query "SELECT * FROM bench" --out "$work/pm.parquet"
  run "$here/python_extract.py" --driver pytds --port "$port" --query "SELECT * FROM bench" --discard
  run "$here/python_extract.py" --driver pytds --port "$port" --query "SELECT * FROM bench" --out "$work/pt.parquet"
done
