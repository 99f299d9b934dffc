"""A local certificate authority and the broker's certificate, made with the ``openssl`` CLI.

Files (``tls/`` under the secure state dir; keys mode 0600)::

    ca.key, ca.crt          the CA (10 years); clients trust ca.crt (CHURN_KAFKA__SSL_CAFILE)
    broker.key, broker.crt  the broker (CN=localhost, SAN DNS:localhost, IP:127.0.0.1)
    broker.pem              key + certificate + CA: the broker's PEM keystore

Created on first start and reused; a broker certificate that is no longer valid for 30 more
days is re-issued by the same CA.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from streams.services.common import ServiceError

SAN = "subjectAltName=DNS:localhost,IP:127.0.0.1"


@dataclass(frozen=True)
class TlsFiles:
    root: Path

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def ca_crt(self) -> Path:
        return self.root / "ca.crt"

    @property
    def broker_key(self) -> Path:
        return self.root / "broker.key"

    @property
    def broker_crt(self) -> Path:
        return self.root / "broker.crt"

    @property
    def keystore(self) -> Path:
        return self.root / "broker.pem"


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise ServiceError("the openssl command is needed to make the local CA "
                           "('apt-get install -y openssl')")
    res = subprocess.run([binary, *args], capture_output=True, text=True, cwd=cwd,
                         timeout=120, check=False)
    if res.returncode != 0:
        raise ServiceError(f"openssl {args[0]} failed (exit {res.returncode})",
                           "\n".join((res.stdout + res.stderr).splitlines()[-10:]))


def _valid_for(cert: Path, seconds: int, cwd: Path) -> bool:
    try:
        _openssl("x509", "-in", str(cert), "-noout", "-checkend", str(seconds), cwd=cwd)
    except ServiceError:
        return False
    return True


def ensure_tls(root: Path) -> TlsFiles:
    """The CA and broker files under ``root``, created (or the broker's renewed) as needed."""
    t = TlsFiles(root)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    if not (t.ca_key.is_file() and t.ca_crt.is_file()):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(t.ca_key),
                 "-out", str(t.ca_crt), "-days", "3650", "-subj", "/CN=churnpulse local CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=root)
        t.broker_crt.unlink(missing_ok=True)
    if not (t.broker_crt.is_file() and _valid_for(t.broker_crt, 30 * 86400, root)):
        csr, ext = root / "broker.csr", root / "broker.ext"
        ext.write_text(f"{SAN}\nbasicConstraints=CA:FALSE\n"
                       "keyUsage=digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=serverAuth,clientAuth\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(t.broker_key),
                 "-out", str(csr), "-subj", "/CN=localhost", cwd=root)
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(t.ca_crt), "-CAkey",
                 str(t.ca_key), "-CAcreateserial", "-out", str(t.broker_crt), "-days", "825",
                 "-extfile", str(ext), cwd=root)
        csr.unlink(missing_ok=True)
        ext.unlink(missing_ok=True)
    for key in (t.ca_key, t.broker_key):
        os.chmod(key, 0o600)
    keystore = t.broker_key.read_text() + t.broker_crt.read_text() + t.ca_crt.read_text()
    fd = os.open(t.keystore, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(keystore)
    return t
