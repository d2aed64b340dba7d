#!/usr/bin/env bash
# The two entry points of the README. Both run the idempotent set-up first.
#   ./run.sh demo   the seed scenario on a local 3-pod cluster
#   ./run.sh test   the whole test suite: the sidecar's EUnit and Common Test suites, dialyzer and
#                   xref, ruff (format and lint), mypy --strict over every package and the tests,
#                   then pytest
set -euo pipefail
cd "$(dirname "$0")"
cmd=${1:-}
shift || true
case "$cmd" in
    demo)
        ./scripts/setup.sh
        exec .venv/bin/houseparty demo "$@"
        ;;
    test)
        ./scripts/setup.sh
        echo "== sidecar: eunit"
        rebar3 eunit
        echo "== sidecar: common test"
        rebar3 ct
        echo "== sidecar: dialyzer, xref"
        rebar3 dialyzer
        rebar3 xref
        echo "== python: ruff, mypy --strict"
        .venv/bin/ruff format --check .
        .venv/bin/ruff check .
        .venv/bin/mypy
        echo "== python: pytest"
        # pytest exits 5 when it collected nothing, which fails this script too.
        .venv/bin/pytest "$@"
        ;;
    *)
        echo "usage: $0 demo|test [args...]" >&2
        exit 2
        ;;
esac
