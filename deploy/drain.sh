#!/bin/sh
# preStop hook of the Python container: asks this pod's sidecar to drain, that is to hand
# every process of the pod over to its new owner on the ring (hp_registry:drain/0), and
# waits for it. Only then does the kubelet send SIGTERM to the Python node, which finds
# nothing left to hand off; the sidecar, a native sidecar, is stopped last.
#
#   drain.sh        exit 0 once the sidecar answered ok, 1 otherwise
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

# erl_call joins as a hidden node with a random name, calls, and leaves; the cookie goes
# on its command line, which only this container's processes can read.
if ! reply=$(erl_call -name "$HP_SIDECAR_NODE" -c "$HOUSEPARTY_COOKIE" -R \
    -timeout "$timeout_s" -a 'hp_registry drain' 2>&1); then
    echo "$me: could not reach $HP_SIDECAR_NODE: $reply" >&2
    exit 1
fi
case "$reply" in
    ok | "{ok,"*)
        echo "$me: $HP_SIDECAR_NODE drained: $reply"
        ;;
    *)
        echo "$me: $HP_SIDECAR_NODE did not drain: $reply" >&2
        exit 1
        ;;
esac
