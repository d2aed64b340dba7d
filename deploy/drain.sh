#!/bin/sh
# preStop hook of the Python container: asks this pod's sidecar to drain, that is to hand
# every process of the pod over to its new owner on the ring (hp_registry:drain/0), and
# waits for it. Only then does the kubelet send SIGTERM to the Python node, which finds
# nothing left to hand off; the sidecar, a native sidecar, is stopped last.
#
#   drain.sh        exit 0 once the sidecar answered that every name moved
#                   (#{failed => 0, moved => N, seconds => S}), 1 otherwise
#
# timeout_s is the drain budget; terminationGracePeriodSeconds in deploy/k8s must exceed
# it (see "Drain budget" in deploy/README.md, and tests/deploy which checks it).
#
# Upper-case names in this script are the contract's variables and nothing else.
set -eu

me=drain
timeout_s=40

[ -n "${HOUSEPARTY_COOKIE:-}" ] || {
    echo "$me: HOUSEPARTY_COOKIE is not set" >&2
    exit 64
}
: "${POD_IP:=127.0.0.1}"
: "${HP_SIDECAR_NODE:=sidecar@$POD_IP}"

if [ -n "${HP_TLS_DIR:-}" ]; then
    # erl_call speaks plain distribution only: over TLS a Python client node asks, with
    # this pod's certificate, within the same budget.
    exec timeout "$timeout_s" python -m houseparty.pod --drain
fi

# erl_call joins as a hidden node with a random name, calls, and leaves. Without -c it
# reads the cookie from $HOME/.erlang.cookie: a file of a fresh folder of this script's
# own (written by printf, the shell's own, not a process), never a command line, where
# anyone who lists the processes would see it.
home=$(mktemp -d /tmp/houseparty_drain.XXXXXX)
trap 'rm -rf "$home"' EXIT
(umask 0377 && printf '%s' "$HOUSEPARTY_COOKIE" >"$home/.erlang.cookie")
if ! reply=$(HOME="$home" erl_call -name "$HP_SIDECAR_NODE" -R \
    -timeout "$timeout_s" -a 'hp_registry drain' 2>&1); then
    echo "$me: could not reach $HP_SIDECAR_NODE: $reply" >&2
    exit 1
fi
case "$reply" in
    *"failed => 0,"*)
        echo "$me: $HP_SIDECAR_NODE drained: $reply"
        ;;
    *)
        echo "$me: $HP_SIDECAR_NODE did not drain: $reply" >&2
        exit 1
        ;;
esac
