#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: Erlang/OTP, Elixir, rebar3 and a C compiler from
# Debian, the .venv with the package and its dev extra, and the compiled sidecar.
# A second run finds everything in place and only checks.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

need_apt=()
command -v erl >/dev/null 2>&1 || need_apt+=(erlang-nox erlang-dev)
command -v elixir >/dev/null 2>&1 || need_apt+=(elixir)
command -v rebar3 >/dev/null 2>&1 || need_apt+=(rebar3)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v ps >/dev/null 2>&1 || need_apt+=(procps)
# The C codec of py_nodes is compiled when the package is installed.
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc libc6-dev)
if ((${#need_apt[@]})); then
    say "installing ${need_apt[*]} with apt"
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${need_apt[@]}" erlang-eunit erlang-common-test erlang-tools >/dev/null
else
    say "Erlang $(erl -noshell -eval 'io:put_chars(erlang:system_info(otp_release)), halt().'), elixir and rebar3 present"
fi

stamp=.venv/.installed
if [[ ! -x .venv/bin/python ]]; then
    say "creating .venv"
    python3 -m venv .venv
fi
# pip builds py_nodes' C codec in place: again when its source or the build files change.
codec_so=(py_nodes/_ccodec.*.so)
if [[ ! -f $stamp || pyproject.toml -nt $stamp || setup.py -nt $stamp
      || py_nodes/_ccodec.c -nt $stamp || ! -f ${codec_so[0]} ]]; then
    say "installing houseparty[dev] into .venv"
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[dev]'
    touch "$stamp"
else
    say ".venv up to date"
fi

say "compiling the sidecar"
rebar3 compile >/dev/null
# iex's `h HouseParty` reads the EEP 48 docs chunks beside the ebin.
escript erlang_sidecar/package.escript docs _build/default/lib/houseparty_sidecar
say "ready"
