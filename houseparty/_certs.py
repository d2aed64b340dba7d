"""A throwaway certificate authority for a local cluster's TLS distribution, made with ``openssl``.

Each node gets a folder in cert-manager's layout, the one the deploy mounts from a Secret:
``tls.crt`` (its certificate), ``tls.key`` (its key) and ``ca.crt`` (the CA). Every file is
0600 and every folder 0700. The CA's own key is deleted once the certificates are signed:
nothing can join the cluster later but what was issued now.

Keys are P-256 (fast handshakes); certificates are valid for 30 days, a local cluster's
life. A certificate names its node (CN) and carries
``localhost`` and ``127.0.0.1``, though no node checks host names (see
:mod:`py_nodes._tls`): membership is a certificate from this CA.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from houseparty._errors import ClusterError

__all__ = [
    "CA_FILE",
    "CERT_FILE",
    "KEY_FILE",
    "dist_optfile",
    "env_tls_dir",
    "make_certificates",
    "tls_files",
]

CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
CA_FILE = "ca.crt"
_DAYS = 30
_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
_NODE_EXTENSIONS = "\n".join(
    [
        "basicConstraints = critical, CA:FALSE",
        "keyUsage = critical, digitalSignature",
        "extendedKeyUsage = serverAuth, clientAuth",
        "subjectAltName = DNS:localhost, IP:127.0.0.1",
        "",
    ]
)


def env_tls_dir() -> str | None:
    """The certificate folder a client of the CLI takes from the environment:
    ``HOUSEPARTY_TLS_DIR``, else ``HP_TLS_DIR`` (a pod's own, for commands run in a pod)."""
    return os.environ.get("HOUSEPARTY_TLS_DIR") or os.environ.get("HP_TLS_DIR") or None


def tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """The certificate, key and CA of a folder in cert-manager's layout."""
    return folder / CERT_FILE, folder / KEY_FILE, folder / CA_FILE


def make_certificates(folder: Path, names: Sequence[str]) -> dict[str, Path]:
    """Make a CA in ``folder`` and sign a certificate for each of ``names`` (``folder/NAME``).
    Returns each name's folder. ClusterError when ``openssl`` is missing or fails."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ClusterError(
            "openssl not found on PATH: TLS needs it to make the cluster's certificates "
            "(apt-get install openssl)"
        )
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    ca_key, ca_crt = folder / "ca.key", folder / CA_FILE
    old_umask = os.umask(0o077)  # every key and certificate is the user's alone
    try:
        _run(
            openssl,
            "req",
            "-x509",
            *_KEY,
            "-keyout",
            ca_key,
            "-out",
            ca_crt,
            "-days",
            str(_DAYS),
            "-subj",
            f"/CN=houseparty local CA {secrets.token_hex(4)}",
            "-addext",
            "basicConstraints=critical,CA:TRUE,pathlen:0",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        )
        extensions = folder / "node.ext"
        extensions.write_text(_NODE_EXTENSIONS)
        issued = {}
        for name in names:
            issued[name] = _issue(openssl, folder, name, ca_key, ca_crt, extensions)
        extensions.unlink()
    finally:
        ca_key.unlink(missing_ok=True)
        os.umask(old_umask)
    return issued


def _issue(
    openssl: str, folder: Path, name: str, ca_key: Path, ca_crt: Path, extensions: Path
) -> Path:
    home = folder / name
    home.mkdir(mode=0o700, exist_ok=True)
    cert, key, ca = tls_files(home)
    request = home / "tls.csr"
    _run(openssl, "req", "-new", *_KEY, "-keyout", key, "-out", request, "-subj", f"/CN={name}")
    _run(
        openssl,
        "x509",
        "-req",
        "-in",
        request,
        "-CA",
        ca_crt,
        "-CAkey",
        ca_key,
        "-set_serial",
        f"0x{secrets.token_hex(16)}",
        "-days",
        str(_DAYS),
        "-extfile",
        extensions,
        "-out",
        cert,
    )
    request.unlink()
    shutil.copyfile(ca_crt, ca)
    for path in (cert, key, ca):
        path.chmod(0o600)
    return home


def _run(openssl: str, *args: str | Path) -> None:
    result = subprocess.run(
        [openssl, *map(str, args)], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    if result.returncode != 0:
        raise ClusterError(f"openssl {args[0]} failed: {result.stderr.strip()[-500:]}")


def dist_optfile(folder: Path) -> str:
    """The ``-ssl_dist_optfile`` of an Erlang node whose certificates are in ``folder``
    (cert-manager's layout): mutual verification against the CA, no host name checks.
    ValueError for a folder whose path cannot be an Erlang string here."""
    path = str(folder.resolve())
    if any(c in path for c in '"\\\n'):
        raise ValueError(f"a TLS folder path without quotes, backslashes or newlines, not {path!r}")
    cert, key, ca = (f'"{p}"' for p in tls_files(Path(path)))
    files = f"{{certfile, {cert}}}, {{keyfile, {key}}}, {{cacertfile, {ca}}}"
    return (
        "%% TLS distribution (-proto_dist inet_tls): each side presents its certificate\n"
        "%% and accepts only a peer whose certificate the cluster's CA signed. Host names are\n"
        "%% not checked (match_fun): node names carry pod IPs, which a certificate shared by\n"
        "%% every pod cannot list.\n"
        f"[{{server, [{files},\n"
        "           {verify, verify_peer}, {fail_if_no_peer_cert, true}]},\n"
        f" {{client, [{files},\n"
        "           {verify, verify_peer},\n"
        "           {customize_hostname_check, [{match_fun, fun(_, _) -> true end}]}]}].\n"
    )
