#!/usr/bin/env bash
# Alternating runs of `driver-probe read` (and optionally `bulk`) against a running TDS test server,
# adding the server's CPU seconds (utime + stime of its process, /proc/PID/stat) for each run.
#
#   run.sh SERVER_PID PORT [RUNS] [DRIVERS...]
#
# env: PROBE (the driver-probe binary; default /tmp/target-probe/release/driver-probe),
#      OPS (default "read"; "bulk" or "read bulk"), QUERY (default SELECT * FROM bench),
#      BULK_ROWS (rows per bulk run, default 1000000),
#      WAIT_IDLE (a pgrep -f pattern: before each run, wait while a matching process runs, so that
#      runs do not share the cores with another benchmark or build)
set -euo pipefail
pid=$1
port=$2
runs=${3:-3}
shift 3 || true
drivers=("$@")
[ ${#drivers[@]} -gt 0 ] || drivers=(tiberius mssql-tds)
probe=${PROBE:-/tmp/target-probe/release/driver-probe}
query=${QUERY:-SELECT * FROM bench}
tck=$(getconf CLK_TCK)

server_cpu() { awk -v t="$tck" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$pid/stat"; }

one() {  # one run: the probe's JSON line with server_cpu_s appended
    local before after line
    if [ -n "${WAIT_IDLE:-}" ]; then
        while pgrep -f "$WAIT_IDLE" >/dev/null; do sleep 2; done
    fi
    before=$(server_cpu)
    line=$("$probe" "$@" --port "$port")
    after=$(server_cpu)
    echo "${line%\}},\"server_cpu_s\":$(awk -v a="$after" -v b="$before" 'BEGIN { printf "%.2f", a - b }')}"
}

for op in ${OPS:-read}; do
    for r in $(seq 1 "$runs"); do
        for d in "${drivers[@]}"; do
            case $op/$d in
                read/*) one read --driver "$d" --query "$query" ;;
                bulk/tiberius | bulk/mssql-tds)
                    "$probe" prepare --port "$port"  # drop + create bench_load, outside the measure
                    one bulk --driver "$d" --rows "${BULK_ROWS:-1000000}" --prepare-port 0 ;;
            esac
        done
    done
done
