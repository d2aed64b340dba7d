"""TLS settings of a node: its certificate, its key and the CA every node of the cluster trusts.

With TLS, as with OTP's ``inet_tls_dist``, a distribution connection is TLS from its first
byte; epmd stays plain. Verification is mutual: a node accepts a connection only from a
peer presenting a certificate signed by the CA (``CERT_REQUIRED`` on both sides), and
presents its own.

Host names are not checked, on purpose and as the sidecars' ``ssl_dist_optfile`` does:
node names carry pod IPs, which a certificate shared by every pod of a deployment cannot
list. A certificate from the cluster's own CA is what makes a node a member; the CA must
therefore sign nothing else.
"""

from __future__ import annotations

import ssl
from os import PathLike
from pathlib import Path

from py_nodes._errors import TlsError

__all__ = ["TLS_RECORD_STARTS", "TlsConfig", "describe_tls_error", "plain_peer_hint"]

# The first two bytes of a TLS record that opens or refuses a connection: a handshake
# (ClientHello) or an alert, then the major version 3. A plain distribution message
# starts with a 2-byte length, which these would make 5379 or 5635 bytes long: far more
# than any handshake message, so they cannot be confused.
TLS_RECORD_STARTS = (b"\x16\x03", b"\x15\x03")


class TlsConfig:
    """``certfile`` (PEM, this node's certificate, its chain after it), ``keyfile`` (PEM,
    unencrypted) and ``cafile`` (PEM, the cluster's CA). Raises :class:`TlsError` when
    one cannot be read or the key does not match the certificate."""

    __slots__ = ("cafile", "certfile", "client_context", "keyfile", "server_context")

    def __init__(
        self,
        certfile: str | PathLike[str],
        keyfile: str | PathLike[str],
        cafile: str | PathLike[str],
    ) -> None:
        self.certfile = str(certfile)
        self.keyfile = str(keyfile)
        self.cafile = str(cafile)
        #: For connections this node accepts: a client certificate is required.
        self.server_context = self._context(ssl.PROTOCOL_TLS_SERVER)
        #: For connections this node makes.
        self.client_context = self._context(ssl.PROTOCOL_TLS_CLIENT)

    @classmethod
    def from_dir(cls, folder: str | PathLike[str]) -> TlsConfig:
        """The settings in ``folder``, in cert-manager's layout (a Kubernetes TLS Secret):
        ``tls.crt``, ``tls.key`` and ``ca.crt``."""
        path = Path(folder)
        return cls(path / "tls.crt", path / "tls.key", path / "ca.crt")

    def _context(self, protocol: int) -> ssl.SSLContext:
        context = ssl.SSLContext(protocol)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = False
        context.verify_mode = ssl.CERT_REQUIRED
        try:
            context.load_cert_chain(self.certfile, self.keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(
                f"cannot use the certificate {self.certfile} with the key {self.keyfile}: "
                f"{describe_tls_error(exc)}"
            ) from None
        try:
            context.load_verify_locations(cafile=self.cafile)
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(
                f"cannot use the CA file {self.cafile}: {describe_tls_error(exc)}"
            ) from None
        return context

    def __repr__(self) -> str:
        files = f"certfile={self.certfile!r}, keyfile={self.keyfile!r}, cafile={self.cafile!r}"
        return f"TlsConfig({files})"


def describe_tls_error(exc: BaseException) -> str:
    """What went wrong, in words: OpenSSL's reason and verification message when there are."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verification failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason.lower().replace("_", " ")
    if isinstance(exc, TimeoutError):
        return "no TLS handshake in time"
    if isinstance(exc, ConnectionError) and not str(exc):
        return (
            "the peer closed the connection (it speaks plain distribution, or does not "
            "trust this node's certificate)"
        )
    return str(exc) or type(exc).__name__


def plain_peer_hint(exc: BaseException) -> str:
    """A few words to add to a failed TLS handshake's cause when the peer's bytes were not
    TLS at all: a plain distribution node."""
    reason = getattr(exc, "reason", None) or ""
    if reason in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST"):
        return " (the peer speaks plain distribution: it needs TLS settings too)"
    return ""
