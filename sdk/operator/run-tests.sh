#!/usr/bin/env bash
# Builds the operator extension (debug, into the shared CARGO_TARGET_DIR) and runs its pytest
# suite against crates/tds-test-server and a local Spark session.
#
# Python: ${OPERATOR_PYTHON}, else ${BRIDGE_SPARK_PYTHON}, else the venv .ci/setup-spark prepares
# (Java 17, pyspark, pyarrow). tests/requirements.txt is installed into that venv when it changed.
# Extra arguments go to pytest. The exit code is pytest's.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sql-databricks-bridge/target}"
case "$CARGO_TARGET_DIR" in /*) ;; *) CARGO_TARGET_DIR="$repo/$CARGO_TARGET_DIR" ;; esac

python="${OPERATOR_PYTHON:-${BRIDGE_SPARK_PYTHON:-}}"
if [ -z "$python" ]; then
  python="$(.ci/setup-spark)"
fi
venv="$(cd "$(dirname "$python")/.." && pwd)"

stamp="$venv/.bridge-operator-requirements.stamp"
want="$(cksum < "$here/tests/requirements.txt")"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "operator: installing tests/requirements.txt into $venv" >&2
  "$python" -m pip install -q --disable-pip-version-check -r "$here/tests/requirements.txt"
  echo "$want" > "$stamp"
fi

cargo build -q -p tds-test-server
export TDS_TEST_SERVER="$CARGO_TARGET_DIR/debug/tds-test-server"
# Debug build, installed editable: the Python code is read from sdk/operator/python.
VIRTUAL_ENV="$venv" "$venv/bin/maturin" develop -q -m "$here/Cargo.toml" >&2

cd "$here"
exec "$python" -m pytest tests -p no:cacheprovider "$@"
