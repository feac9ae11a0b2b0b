#!/usr/bin/env bash
# The whole check, as `make test` and CI run it: start Kafka and Redis, run ruff, mypy and
# pytest (each one even if an earlier one failed, so one run shows every problem), always stop
# the servers, and exit with the first failing step's code. Arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."

BIN=.venv/bin
status=0

stop_servers() { "$BIN/socialrec" infra down || true; }
trap stop_servers EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step() {
    local started=$SECONDS rc=0
    echo "==> $*" >&2
    "$@" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "==> FAILED (exit $rc, $((SECONDS - started))s): $*" >&2
        [ "$status" -ne 0 ] || status=$rc
    else
        echo "==> ok ($((SECONDS - started))s): $1" >&2
    fi
}

step "$BIN/socialrec" infra up
if [ "$status" -ne 0 ]; then
    exit "$status"
fi
step "$BIN/ruff" check .
step "$BIN/ruff" format --check .
step "$BIN/mypy"
step "$BIN/pytest" "$@"
exit "$status"
