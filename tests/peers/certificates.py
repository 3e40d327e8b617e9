"""A test certificate authority, made with the ``openssl`` command line.

Usage::

    ca = CertificateAuthority.create(folder, "Test CA")
    server = ca.issue("kamailio", ["IP:127.0.0.1", "DNS:presence.example.test"])
    # server.certificate, server.private_key: PEM file paths; ca.certificate
    # is the file to trust.

Keys are P-256 (fast to make); certificates last one day and carry the
extensions a strict verifier wants (key usages, key identifiers), so that
only what a test changes on purpose (the CA, the names) makes a check fail.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from . import PeerUnavailable

__all__ = ["CertificateAuthority", "Issued"]

KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(*args: str) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise PeerUnavailable("openssl command not found (Debian package openssl)")
    done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()}")


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key (PEM file paths)."""

    certificate: str
    private_key: str


@dataclass(frozen=True)
class CertificateAuthority:
    """A self-signed CA in ``folder`` that issues leaf certificates there."""

    folder: Path
    certificate: str
    private_key: str

    @classmethod
    def create(cls, folder: Path, name: str) -> CertificateAuthority:
        folder.mkdir(parents=True, exist_ok=True)
        stem = name.lower().replace(" ", "-")
        cert, key = folder / f"{stem}.pem", folder / f"{stem}.key"
        _openssl("req", "-x509", *KEY, "-days", "1", "-subj", f"/CN={name}",
                 "-keyout", str(key), "-out", str(cert),
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 "-addext", "subjectKeyIdentifier=hash")
        return cls(folder, str(cert), str(key))

    def issue(self, name: str, names: list[str]) -> Issued:
        """A certificate for ``name`` (the file stem and CN) with the
        subjectAltName entries ``names`` (``IP:...``, ``DNS:...``), good for
        a TLS server and a TLS client alike."""
        cert, key = self.folder / f"{name}.pem", self.folder / f"{name}.key"
        request = self.folder / f"{name}.csr"
        extensions = self.folder / f"{name}.ext"
        extensions.write_text(
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth,clientAuth\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid\n"
            f"subjectAltName={','.join(names)}\n"
        )
        _openssl("req", *KEY, "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(request))
        _openssl("x509", "-req", "-in", str(request), "-CA", self.certificate,
                 "-CAkey", self.private_key, "-set_serial", str(uuid.uuid4().int >> 65),
                 "-days", "1", "-extfile", str(extensions), "-out", str(cert))
        return Issued(str(cert), str(key))
