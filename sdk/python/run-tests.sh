#!/usr/bin/env bash
# Runs the Python SDK's tests against the real `bridge serve`.
#
# A virtualenv is kept in ${SDK_VENV:-$HOME/.cache/sql-databricks-bridge/sdk-venv}; the SDK is
# installed into it in editable mode with its `test` extra. The server binary is ${BRIDGE_BIN},
# else ${CARGO_TARGET_DIR}/debug/bridge when CARGO_TARGET_DIR is set, else target/debug/bridge.
# Extra arguments go to pytest. The exit code is pytest's.
set -euo pipefail

sdk_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$sdk_dir/../.." && pwd)"
venv="${SDK_VENV:-$HOME/.cache/sql-databricks-bridge/sdk-venv}"
python="${PYTHON:-python3}"

if [ -z "${BRIDGE_BIN:-}" ]; then
  if [ -n "${CARGO_TARGET_DIR:-}" ]; then
    case "$CARGO_TARGET_DIR" in
      /*) BRIDGE_BIN="$CARGO_TARGET_DIR/debug/bridge" ;;
      *) BRIDGE_BIN="$repo/$CARGO_TARGET_DIR/debug/bridge" ;;
    esac
  else
    BRIDGE_BIN="$repo/target/debug/bridge"
  fi
fi
export BRIDGE_BIN

# A venv whose interpreter is gone (Python upgraded) is made anew.
if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
fi

cd "$repo"
# Install again only when the package's metadata or its location changed (editable install:
# the code itself is read from sdk/python/src).
stamp="$venv/.sql-databricks-bridge-sdk.stamp"
want="$(cat "$sdk_dir/pyproject.toml" <(echo "$sdk_dir") | cksum)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] ||
  ! "$venv/bin/python" -c 'import sql_databricks_bridge_sdk, pytest' >/dev/null 2>&1; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "sdk/python[test]"
  echo "$want" >"$stamp"
fi
exec "$venv/bin/python" -m pytest -p no:cacheprovider "$sdk_dir/tests" "$@"
