"""TLS contexts for SIP over TLS (RFC 3261 §26.2.1)."""

from __future__ import annotations

import ssl

__all__ = ["client_context", "server_context"]


def server_context(certificate: str, private_key: str) -> ssl.SSLContext:
    """What we present on a TLS listener.  ValueError names the file that
    could not be used."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certificate, private_key)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load {certificate} / {private_key}: {exc}") from None
    return context


def client_context(
    ca_file: str | None = None,
    *,
    verify: bool = True,
    certificate: str | None = None,
    private_key: str | None = None,
) -> ssl.SSLContext:
    """How we check servers we connect to: the system's CAs, or ``ca_file``;
    ``verify`` False accepts any certificate (for tests and labs only).
    ``certificate`` and ``private_key``: what we present to a server that
    asks for a client certificate.  ValueError names the file that could
    not be used."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if certificate is not None:
        try:
            context.load_cert_chain(certificate, private_key)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load {certificate} / {private_key}: {exc}") from None
    if ca_file is not None:
        try:
            context.load_verify_locations(ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load {ca_file}: {exc}") from None
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
