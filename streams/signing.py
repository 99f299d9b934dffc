"""HMAC-SHA256 signatures on the state processes unpickle (model checkpoints, learner state).

Anyone who can write one Redis key could otherwise run code in every worker and in the learner
(``pickle.loads``). Each blob is stored as::

    b"CPSIG1" | key id (8 bytes) | HMAC-SHA256(key, b"churnpulse/" + purpose + b"\\0" + payload)
    | payload

``purpose`` (``model-checkpoint``, ``learner-state``) binds a signature to the kind of state, so
a signed blob of one kind cannot be passed off as the other. The key is never stored in Redis:
it comes from the settings (``CHURN_SECURITY__SIGNING_KEY``, ``..._FILE``) or from a per-user
key file generated on first use (see :func:`load_key`). :meth:`StateSigner.verify` checks the
signature before anything is unpickled and raises :class:`SignatureError` (a ``ValueError`` and a
``ConfigurationError``) with a message that says what to do.

>>> signer = StateSigner(b"k" * 32)
>>> blob = signer.sign("model-checkpoint", b"payload")
>>> signer.verify("model-checkpoint", blob, "cp:model:v:1")
b'payload'
>>> StateSigner(b"x" * 32).verify("model-checkpoint", blob, "cp:model:v:1")
Traceback (most recent call last):
...
streams.signing.SignatureError: cp:model:v:1 is signed with another key (key id ...
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from streams.errors import ConfigurationError
from streams.settings import Settings
from streams.settings_security import SecuritySettings

log = logging.getLogger(__name__)

MAGIC = b"CPSIG1"
KEY_ID_LEN = 8
MAC_LEN = 32
HEADER_LEN = len(MAGIC) + KEY_ID_LEN + MAC_LEN
MIN_KEY_LEN = 16
KEY_FILE_NAME = "signing.key"
RESIGN_HINT = ("sign it once with 'churnpulse security sign-state' after checking it was "
               "written by your own churnpulse, or retrain ('churnpulse train --replace')")


class SignatureError(ConfigurationError, ValueError):
    """A state blob that is not signed, or not signed with our key: it is never unpickled."""


def key_id(key: bytes) -> bytes:
    """8 bytes that name a key without revealing it (tells 'another key' from 'tampered')."""
    return hashlib.sha256(b"churnpulse-signing-key-id\0" + key).digest()[:KEY_ID_LEN]


def is_signed(blob: bytes) -> bool:
    return blob.startswith(MAGIC) and len(blob) >= HEADER_LEN


@dataclass(frozen=True)
class StateSigner:
    """Signs with ``key``; verifies with ``key`` or any of ``previous`` (rotation)."""

    key: bytes
    previous: tuple[bytes, ...] = ()
    accept_unsigned: bool = False

    def __post_init__(self) -> None:
        for k in (self.key, *self.previous):
            if len(k) < MIN_KEY_LEN:
                raise ConfigurationError(
                    f"signing key too short ({len(k)} bytes, at least {MIN_KEY_LEN})")

    def __repr__(self) -> str:  # never print the key
        return f"StateSigner(key_id={key_id(self.key).hex()}, previous={len(self.previous)})"

    @staticmethod
    def _mac(key: bytes, purpose: str, payload: bytes) -> bytes:
        msg = b"churnpulse/" + purpose.encode() + b"\0" + payload
        return hmac.new(key, msg, hashlib.sha256).digest()

    def sign(self, purpose: str, payload: bytes) -> bytes:
        return MAGIC + key_id(self.key) + self._mac(self.key, purpose, payload) + payload

    def verify(self, purpose: str, blob: bytes, where: str) -> bytes:
        """The payload of a blob signed by one of our keys; else :class:`SignatureError`.

        ``where`` names the blob in the message (e.g. the Redis key). An unsigned blob is
        returned as-is only when ``accept_unsigned`` is set (logged as a warning).
        """
        if not is_signed(blob):
            if self.accept_unsigned:
                log.warning("%s is not signed; loading it because accept_unsigned_state is "
                            "set (anyone who can write Redis can run code here)", where)
                return blob
            raise SignatureError(
                f"{where} is not signed (written by a churnpulse before state signing, or not "
                f"by churnpulse at all); refusing to load it: {RESIGN_HINT}")
        kid = blob[len(MAGIC):len(MAGIC) + KEY_ID_LEN]
        mac = blob[len(MAGIC) + KEY_ID_LEN:HEADER_LEN]
        payload = blob[HEADER_LEN:]
        keys = [k for k in (self.key, *self.previous) if hmac.compare_digest(key_id(k), kid)]
        if not keys:
            raise SignatureError(
                f"{where} is signed with another key (key id {kid.hex()}, ours "
                f"{key_id(self.key).hex()}): give every process the same signing key "
                "(CHURN_SECURITY__SIGNING_KEY or CHURN_SECURITY__SIGNING_KEY_FILE)")
        if not any(hmac.compare_digest(self._mac(k, purpose, payload), mac) for k in keys):
            raise SignatureError(
                f"{where} has a bad signature (tampered with, or not a {purpose}); refusing "
                "to load it")
        return payload


def _read_key_file(path: Path) -> bytes:
    try:
        mode = path.stat().st_mode
        key = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the signing key file {path}: {exc}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("signing key file %s is readable by group/others (chmod 600 it)", path)
    return key


def _create_key_file(path: Path) -> None:
    """Write a fresh random key to ``path`` (0600) unless another process did it first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
        with contextlib.suppress(FileExistsError):  # the first writer wins; all read it
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    log.warning("generated a new state signing key in %s (every process must use the same key;"
                " set CHURN_SECURITY__SIGNING_KEY or _FILE in a deployment)", path)


def default_key_file() -> Path:
    """``$XDG_CONFIG_HOME/churnpulse/signing.key`` (``~/.config/...``): one key per user, the
    same whichever directory or state dir a process starts in."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "churnpulse" / KEY_FILE_NAME


def load_key(security: SecuritySettings) -> bytes:
    """The signing key: the setting, else the key file, else :func:`default_key_file`.

    The default key file is created on first use with a random 256-bit key (mode 0600).
    """
    if security.signing_key is not None:
        return security.signing_key.get_secret_value().encode()
    if security.signing_key_file is not None:
        return _read_key_file(security.signing_key_file.expanduser())
    path = default_key_file()
    if not path.exists():
        _create_key_file(path)
    return _read_key_file(path)


def signer_from_settings(settings: Settings) -> StateSigner:
    """The signer every process builds at its composition root."""
    sec = settings.security
    return StateSigner(load_key(sec),
                       tuple(k.get_secret_value().encode() for k in sec.previous_signing_keys),
                       sec.accept_unsigned_state)


def default_signer() -> StateSigner:
    """The signer of the settings in the environment (tools and tests that build a store
    without one)."""
    from streams.settings import load_settings

    return signer_from_settings(load_settings())
