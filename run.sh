#!/usr/bin/env bash
# The two entry points of the README. Both run the idempotent set-up first.
#   ./run.sh demo   the seed scenario on a local 3-pod cluster
#   ./run.sh test   the whole test suite: the sidecar's EUnit and Common Test suites, dialyzer and
#                   xref, ruff (format and lint), mypy --strict over every package and the tests,
#                   then pytest; then on OTP 27 (scripts/setup-otp27.sh): the sidecar's EUnit
#                   tests, tests/otp27 (OTP 27 and mixed OTP 25/27 clusters) and the py_nodes
#                   interop tests against OTP 27 nodes
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
        .venv/bin/pytest --ignore=tests/otp27 "$@"
        echo "== OTP 27: the sidecar's eunit, tests/otp27, the py_nodes interop tests"
        # The Debian 13 root with OTP 27; the script says why where it cannot be made.
        ./scripts/setup-otp27.sh
        if scripts/otp27/run true; then
            scripts/otp27/run rebar3 as otp27 eunit
            .venv/bin/pytest -q -p no:cacheprovider tests/otp27
            PATH="$PWD/scripts/otp27/bin:$PATH" .venv/bin/pytest -q -p no:cacheprovider \
                tests/py_nodes/test_{aliases,codec_erlang,gen_server,links_monitors,memory}.py \
                tests/py_nodes/test_{python_nodes,robustness,roundtrip,rpc,spawn_remote,tls}.py
        else
            echo "skipped: scripts/setup-otp27.sh did not make the OTP 27 root (see above)"
        fi
        ;;
    *)
        echo "usage: $0 demo|test [args...]" >&2
        exit 2
        ;;
esac
