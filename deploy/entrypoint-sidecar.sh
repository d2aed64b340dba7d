#!/bin/sh
# Entry point of a pod's BEAM sidecar container.
#
#   entrypoint-sidecar.sh COMMAND [ARGS...]
#   (on Kubernetes: /opt/houseparty_sidecar/bin/houseparty_sidecar foreground)
#
# It reads the pod's environment contract (deploy/README.md), fills in every default so
# that the release and the application see one complete environment, refuses to start
# without a cookie, then execs COMMAND so that the BEAM is PID 1's direct replacement and
# receives SIGTERM itself (init:stop/0, which drains the pod's processes).
#
# Upper-case names in this script are the contract's variables and nothing else;
# the script's own variables are lower case.
set -eu

me=entrypoint-sidecar
fail() {
    echo "$me: $*" >&2
    exit 64
}

[ "$#" -gt 0 ] || fail "usage: $me COMMAND [ARGS...]"
[ -n "${HOUSEPARTY_COOKIE:-}" ] ||
    fail "HOUSEPARTY_COOKIE is not set; on Kubernetes it comes from the Secret houseparty-cookie (key: cookie)"

: "${POD_IP:=127.0.0.1}"
: "${HP_SIDECAR_NODE:=sidecar@$POD_IP}"
: "${HP_PYTHON_NODE:=py@$POD_IP}"
: "${HP_SIDECAR_DIST_PORT:=9100}"
: "${HP_PYTHON_DIST_PORT:=9101}"
: "${HP_HEALTH_PORT:=8080}"
: "${HP_HEALTH_IP:=0.0.0.0}"
: "${HP_CLUSTER_STRATEGY:=local_epmd}"
: "${HP_CLUSTER_HOSTS:=}"
: "${HP_K8S_SERVICE:=}"
: "${HP_K8S_SELECTOR:=app=houseparty}"
: "${HP_K8S_MODE:=endpointslices}"
: "${HP_NODE_BASENAME:=sidecar}"
: "${HP_POLL_INTERVAL_MS:=5000}"
: "${HP_PLACEMENT_WHITELIST:=^sidecar}"
: "${HP_PLACEMENT_BLACKLIST:=}"
: "${HP_NET_TICKTIME:=60}"
: "${HP_LOG_LEVEL:=info}"
: "${HP_LOG_FORMAT:=text}"
: "${HP_TLS_DIR:=}"
sa_namespace_file=/var/run/secrets/kubernetes.io/serviceaccount/namespace
if [ -z "${HP_K8S_NAMESPACE:-}" ] && [ -r "$sa_namespace_file" ]; then
    HP_K8S_NAMESPACE=$(cat "$sa_namespace_file")
fi
: "${HP_K8S_NAMESPACE:=}"

check_node() { # name value
    case "$2" in
        ?*@?*) ;;
        *) fail "$1 must look like name@host, got '$2'" ;;
    esac
}
check_port() { # name value
    case "$2" in
        '' | *[!0-9]*) fail "$1 must be a TCP port number, got '$2'" ;;
    esac
    [ "$2" -ge 1 ] && [ "$2" -le 65535 ] || fail "$1 must be within 1..65535, got '$2'"
}
check_node HP_SIDECAR_NODE "$HP_SIDECAR_NODE"
check_node HP_PYTHON_NODE "$HP_PYTHON_NODE"
check_port HP_SIDECAR_DIST_PORT "$HP_SIDECAR_DIST_PORT"
check_port HP_PYTHON_DIST_PORT "$HP_PYTHON_DIST_PORT"
check_port HP_HEALTH_PORT "$HP_HEALTH_PORT"
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
case "$HP_CLUSTER_STRATEGY" in
    epmd | local_epmd | k8s_dns | k8s_api) ;;
    *) fail "HP_CLUSTER_STRATEGY must be epmd, local_epmd, k8s_dns or k8s_api, got '$HP_CLUSTER_STRATEGY'" ;;
esac
case "$HP_K8S_MODE" in
    endpointslices | pods) ;;
    *) fail "HP_K8S_MODE must be endpointslices or pods, got '$HP_K8S_MODE'" ;;
esac
if [ "$HP_CLUSTER_STRATEGY" = k8s_dns ] && [ -z "$HP_K8S_SERVICE" ]; then
    fail "HP_CLUSTER_STRATEGY=k8s_dns needs HP_K8S_SERVICE (the headless service's DNS name)"
fi

if [ -n "$HP_TLS_DIR" ]; then
    case "$HP_TLS_DIR" in
        *[\"\\]*) fail "HP_TLS_DIR must hold no quote or backslash, got '$HP_TLS_DIR'" ;;
    esac
    for file in tls.crt tls.key ca.crt; do
        [ -r "$HP_TLS_DIR/$file" ] ||
            fail "HP_TLS_DIR=$HP_TLS_DIR has no readable $file (mount the Secret houseparty-tls there)"
    done
fi

export HOUSEPARTY_COOKIE POD_IP HP_SIDECAR_NODE HP_PYTHON_NODE HP_SIDECAR_DIST_PORT \
    HP_PYTHON_DIST_PORT HP_HEALTH_PORT HP_HEALTH_IP HP_CLUSTER_STRATEGY HP_CLUSTER_HOSTS HP_K8S_SERVICE \
    HP_K8S_NAMESPACE HP_K8S_SELECTOR HP_K8S_MODE HP_NODE_BASENAME HP_POLL_INTERVAL_MS \
    HP_PLACEMENT_WHITELIST HP_PLACEMENT_BLACKLIST HP_NET_TICKTIME HP_LOG_LEVEL HP_LOG_FORMAT HP_TLS_DIR

# The release's vm.args.src holds ${HP_SIDECAR_NODE}, ${HP_SIDECAR_DIST_PORT} and
# ${HP_NET_TICKTIME}; the relx start script substitutes them at every start (a plain
# vm.args only with RELX_REPLACE_OS_VARS) and writes the result next to the original
# unless RELX_OUT_FILE_PATH names a directory. The root filesystem is read-only on
# Kubernetes, so the result (and any crash dump) goes to a fresh directory under /tmp,
# the user's alone (mktemp makes it 0700).
run_dir=$(mktemp -d /tmp/houseparty_sidecar.XXXXXX)
export RELX_REPLACE_OS_VARS=true
export RELX_OUT_FILE_PATH="$run_dir"
export ERL_CRASH_DUMP="$run_dir/erl_crash.dump"

# The VM reads its cookie from $HOME/.erlang.cookie: on no command line, where anyone
# who lists the processes would see it (printf is the shell's own, not a process).
export HOME="$run_dir"
(umask 0377 && printf '%s' "$HOUSEPARTY_COOKIE" >"$run_dir/.erlang.cookie")
# TLS distribution: the whole connection is TLS, both sides show a certificate of the
# cluster's CA (verify_peer, fail_if_no_peer_cert). Host names are not checked: node names
# carry pod IPs, which one certificate shared by every pod cannot list. erlexec reads
# ERL_FLAGS, so the release's start script passes these on to the VM. The certificates
# are read when the VM starts: a rotated Secret takes effect on the next restart.
if [ -n "$HP_TLS_DIR" ]; then
    optfile="$run_dir/ssl_dist.conf"
    files="{certfile, \"$HP_TLS_DIR/tls.crt\"}, {keyfile, \"$HP_TLS_DIR/tls.key\"}, {cacertfile, \"$HP_TLS_DIR/ca.crt\"}"
    cat >"$optfile" <<OPTS
[{server, [$files, {verify, verify_peer}, {fail_if_no_peer_cert, true}]},
 {client, [$files, {verify, verify_peer},
           {customize_hostname_check, [{match_fun, fun(_, _) -> true end}]}]}].
OPTS
    export ERL_FLAGS="-proto_dist inet_tls -ssl_dist_optfile $optfile"
else
    echo "$me: HP_TLS_DIR is not set: distribution is plain TCP, unencrypted" >&2
fi

exec "$@"
