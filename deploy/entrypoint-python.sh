#!/bin/sh
# Entry point of a pod's Python node container.
#
#   entrypoint-python.sh [COMMAND [ARGS...]]      (default: houseparty pod-node)
#
# It reads the part of the pod's environment contract (deploy/README.md) that the Python
# node needs, fills in the defaults, refuses to start without a cookie, then execs
# COMMAND. The Python node registers with the pod's epmd, which the sidecar's erts
# started: both containers share the pod's network namespace.
#
# Upper-case names in this script are the contract's variables and nothing else;
# the script's own variables are lower case.
set -eu

me=entrypoint-python
fail() {
    echo "$me: $*" >&2
    exit 64
}

[ -n "${HOUSEPARTY_COOKIE:-}" ] ||
    fail "HOUSEPARTY_COOKIE is not set; on Kubernetes it comes from the Secret houseparty-cookie (key: cookie)"

: "${POD_IP:=127.0.0.1}"
: "${HP_SIDECAR_NODE:=sidecar@$POD_IP}"
: "${HP_PYTHON_NODE:=py@$POD_IP}"
: "${HP_PYTHON_DIST_PORT:=9101}"
: "${HP_NET_TICKTIME:=60}"
: "${HP_LOG_LEVEL:=info}"
: "${HP_LOG_FORMAT:=text}"
: "${HP_TLS_DIR:=}"

for node in "$HP_SIDECAR_NODE" "$HP_PYTHON_NODE"; do
    case "$node" in
        ?*@?*) ;;
        *) fail "node names must look like name@host, got '$node'" ;;
    esac
done
case "$HP_PYTHON_DIST_PORT" in
    '' | *[!0-9]*) fail "HP_PYTHON_DIST_PORT must be a TCP port number, got '$HP_PYTHON_DIST_PORT'" ;;
esac
[ "$HP_PYTHON_DIST_PORT" -ge 1 ] && [ "$HP_PYTHON_DIST_PORT" -le 65535 ] ||
    fail "HP_PYTHON_DIST_PORT must be within 1..65535, got '$HP_PYTHON_DIST_PORT'"

case "$HP_NET_TICKTIME" in
    '' | *[!0-9]*) fail "HP_NET_TICKTIME must be a number of seconds, got '$HP_NET_TICKTIME'" ;;
esac
[ "$HP_NET_TICKTIME" -ge 1 ] || fail "HP_NET_TICKTIME must be at least 1, got '$HP_NET_TICKTIME'"

case "$HP_LOG_LEVEL" in
    debug | info | notice | warning | error) ;;
    *) fail "HP_LOG_LEVEL must be debug, info, notice, warning or error, got '$HP_LOG_LEVEL'" ;;
esac
case "$HP_LOG_FORMAT" in
    text | json) ;;
    *) fail "HP_LOG_FORMAT must be text or json, got '$HP_LOG_FORMAT'" ;;
esac
if [ -n "$HP_TLS_DIR" ]; then
    for file in tls.crt tls.key ca.crt; do
        [ -r "$HP_TLS_DIR/$file" ] ||
            fail "HP_TLS_DIR=$HP_TLS_DIR has no readable $file (mount the Secret houseparty-tls there)"
    done
else
    echo "$me: HP_TLS_DIR is not set: distribution is plain TCP, unencrypted" >&2
fi

export HOUSEPARTY_COOKIE POD_IP HP_SIDECAR_NODE HP_PYTHON_NODE HP_PYTHON_DIST_PORT HP_NET_TICKTIME \
    HP_LOG_LEVEL HP_LOG_FORMAT HP_TLS_DIR

[ "$#" -gt 0 ] || set -- houseparty pod-node
exec "$@"
