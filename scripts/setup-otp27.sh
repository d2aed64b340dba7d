#!/usr/bin/env bash
# Idempotent set-up of the OTP 27 test root: a Debian 13 (trixie) root made by debootstrap,
# with Erlang/OTP 27, Elixir 1.18 and rebar3 from Debian's packages, then the sidecar built in
# it into the `otp27` rebar3 profile (_build/otp27). The root lives outside the checkout
# (HOUSEPARTY_OTP27_ROOT, default /var/cache/houseparty/otp27-trixie), so every clone on the
# machine shares it; a second run finds it in place and only rebuilds the sidecar.
#
# Beside the root, the root's Elixir is built from Debian's source of the same version on
# this machine's OTP (25) into $cache/elixir-VERSION-otpN: iex 1.15 and later attach with
# --remsh only to a node that has IEx 1.15 or later, and Elixir compiled by OTP 27 does not
# load on OTP 25. The mixed clusters of tests/otp27 give it to an OTP 25 sidecar.
#
# Commands then run in the root through scripts/otp27/run (for example `scripts/otp27/run erl`).
# Exits 0 with a "skip:" line where the root cannot be made (not root, no debootstrap, no
# chroot or mount namespaces); the OTP 27 tests skip with the same reason.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${HOUSEPARTY_OTP27_ROOT:-/var/cache/houseparty/otp27-trixie}
root=$cache/root
stamp=$root/.houseparty-ready
# ca-certificates: OTP 26 and later read the system CAs for httpc's default ssl options.
packages=(erlang-nox erlang-dev elixir rebar3 erlang-eunit erlang-common-test erlang-tools
          ca-certificates)

say() { printf '\033[1m[setup-otp27]\033[0m %s\n' "$*"; }
skip() {
    say "skip: $*"
    exit 0
}

[[ $(id -u) -eq 0 ]] || skip "making a Debian 13 root needs root (run as root, or sudo $0)"
command -v unshare >/dev/null 2>&1 || skip "unshare (util-linux) is not installed"
command -v chroot >/dev/null 2>&1 || skip "chroot (coreutils) is not installed"
unshare --mount true 2>/dev/null || skip "this machine gives no mount namespace (unshare --mount failed)"

mkdir -p "$cache"
# One set-up at a time per root: a second clone waits for the first instead of racing it.
exec 9>"$cache/.lock"
flock 9

if [[ ! -f $stamp || $(cat "$stamp") != "${packages[*]}" ]]; then
    if [[ ! -x $root/usr/bin/apt-get ]]; then
        if ! command -v debootstrap >/dev/null 2>&1; then
            say "installing debootstrap with apt"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                debootstrap >/dev/null || skip "debootstrap is not installed and apt could not install it"
        fi
        say "debootstrap trixie into $root"
        rm -rf "$root" "$root.partial"
        debootstrap --variant=minbase trixie "$root.partial" http://deb.debian.org/debian \
            >"$cache/debootstrap.log" 2>&1 || {
            tail -20 "$cache/debootstrap.log" >&2
            echo "debootstrap failed; its log is $cache/debootstrap.log" >&2
            exit 1
        }
        mv "$root.partial" "$root"
    fi
    say "installing ${packages[*]} in the root"
    # /proc for the package scripts; the mount goes with the namespace.
    unshare --mount --propagation private sh -c '
        root=$1
        shift
        mount -t proc proc "$root/proc"
        chroot "$root" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -qq --no-install-recommends "$@"
    ' sh "$root" "${packages[@]}" >"$cache/apt.log" 2>&1 || {
        tail -20 "$cache/apt.log" >&2
        echo "apt-get in the root failed; its log is $cache/apt.log" >&2
        exit 1
    }
    chroot "$root" apt-get clean
    printf '%s' "${packages[*]}" >"$stamp"
else
    say "root in place: $root"
fi

versions=$("$repo/scripts/otp27/run" erl -noshell -eval \
    'io:format("OTP ~s, ", [erlang:system_info(otp_release)]), halt().')
versions+=$("$repo/scripts/otp27/run" elixir -e 'IO.write("Elixir " <> System.version())')
say "$versions"

# The source's checksum comes from Debian's signed index, through apt in the root.
elixir=$(chroot "$root" dpkg-query -W -f '${Version}' elixir)
elixir=${elixir%-*}
host_otp=$(erl -noshell -eval 'io:put_chars(erlang:system_info(otp_release)), halt().')
elixir_host=$cache/elixir-$elixir-otp$host_otp
if [[ ! -f $elixir_host/.houseparty-ready ]]; then
    say "building Elixir $elixir on OTP $host_otp into $elixir_host"
    tarball=elixir-lang_$elixir.orig.tar.xz
    sha=$(unshare --mount --propagation private sh -c '
        root=$1
        mount -t proc proc "$root/proc"
        echo "deb-src http://deb.debian.org/debian trixie main" \
            >"$root/etc/apt/sources.list.d/houseparty-src.list"
        chroot "$root" apt-get update -qq >&2
        chroot "$root" apt-cache showsrc elixir-lang
    ' sh "$root" 2>"$cache/elixir-src.log" \
        | awk -v f="$tarball" '/^Checksums-Sha256:/ {s = 1; next} /^[^ ]/ {s = 0} s && $3 == f {print $1; exit}')
    [[ -n $sha ]] || {
        tail -20 "$cache/elixir-src.log" >&2
        echo "Debian's index has no $tarball; apt's log is $cache/elixir-src.log" >&2
        exit 1
    }
    rm -rf "$elixir_host" "$elixir_host.partial"
    mkdir -p "$elixir_host.partial"
    curl -fsS -o "$cache/$tarball" "http://deb.debian.org/debian/pool/main/e/elixir-lang/$tarball"
    echo "$sha  $cache/$tarball" | sha256sum -c --quiet - || {
        echo "$tarball does not match Debian's index" >&2
        exit 1
    }
    mkdir -p "$elixir_host.partial"
    tar -xJf "$cache/$tarball" -C "$elixir_host.partial" --strip-components=1
    rm "$cache/$tarball"
    make -C "$elixir_host.partial" -j"$(nproc)" compile >"$cache/elixir-build.log" 2>&1 || {
        tail -20 "$cache/elixir-build.log" >&2
        echo "building Elixir $elixir failed; its log is $cache/elixir-build.log" >&2
        exit 1
    }
    touch "$elixir_host.partial/.houseparty-ready"
    mv "$elixir_host.partial" "$elixir_host"
fi
say "$("$elixir_host/bin/elixir" -e 'IO.write("Elixir " <> System.version() <> " on OTP " <> System.otp_release())')"

say "compiling the sidecar into _build/otp27"
"$repo/scripts/otp27/run" rebar3 as otp27 compile >/dev/null
say "ready"
