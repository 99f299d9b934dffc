"""The ``security`` section of the settings (``CHURN_SECURITY__*``); see docs/security.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class SecuritySettings(BaseModel):
    """Signing of the state processes unpickle (model checkpoints, learner state).

    The key is never stored in Redis. It comes from ``signing_key`` (the secret itself),
    else ``signing_key_file`` (a file holding it), else a key generated on first use in
    ``~/.config/churnpulse/signing.key`` (mode 0600; ``$XDG_CONFIG_HOME`` honoured): fine for
    one machine and the demo; every process of a deployment must be given the same key.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    signing_key: SecretStr | None = Field(
        None, description="HMAC-SHA256 key of model checkpoints and learner state (>= 16 chars).")
    signing_key_file: Path | None = Field(
        None, description="File holding the signing key (used when signing_key is unset).")
    previous_signing_keys: tuple[SecretStr, ...] = Field(
        (), description="Old keys still accepted when reading state (key rotation); JSON list.")
    accept_unsigned_state: bool = Field(
        False, description="Load state written before signing existed (unsafe: anyone who can "
                           "write Redis runs code). Prefer 'churnpulse security sign-state'.")
    local: SecureServicesSettings = Field(
        default_factory=lambda: SecureServicesSettings(),
        description="Ports of the secure local services (CHURN_SECURITY__LOCAL__KAFKA_PORT...).")


SECRET_QUERY_KEYS = frozenset({"api_key", "apikey", "key", "token", "access_token", "secret",
                               "password", "pass", "pwd", "sig", "signature", "auth"})
MASK = "**********"


def mask_url(text: str) -> str:
    """A URL with its password and secret-looking query values masked; other text unchanged.

    >>> mask_url("redis://:hunter2@redis:6379/0")
    'redis://:**********@redis:6379/0'
    >>> mask_url("https://crm.example/hook?api_key=abc&team=x")
    'https://crm.example/hook?api_key=**********&team=x'
    >>> mask_url("127.0.0.1:9092")
    '127.0.0.1:9092'
    """
    parts = urlsplit(text)
    if not parts.scheme or not parts.netloc:
        return text
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hostport}" if sep else f"{MASK}@{hostport}"
    query = "&".join(
        f"{k}={MASK}" if k.lower() in SECRET_QUERY_KEYS else (f"{k}={v}" if eq else k)
        for k, eq, v in (pair.partition("=") for pair in parts.query.split("&") if pair))
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def mask_urls(data: Any) -> Any:
    """Every string in a settings dump passed through :func:`mask_url` (dicts, lists)."""
    if isinstance(data, str):
        return mask_url(data)
    if isinstance(data, dict):
        return {k: mask_urls(v) for k, v in data.items()}
    if isinstance(data, list):
        return [mask_urls(v) for v in data]
    return data


MIN_TOKEN_LEN = 16


def check_tokens(tokens: dict[str, SecretStr]) -> dict[str, SecretStr]:
    """Dashboard tokens must be at least :data:`MIN_TOKEN_LEN` characters (guessing)."""
    short = sorted(user for user, t in tokens.items() if len(t.get_secret_value()) < MIN_TOKEN_LEN)
    if short:
        raise ValueError(f"dashboard token of {', '.join(short)} is shorter than {MIN_TOKEN_LEN} "
                         "characters (make one with: python -c 'import secrets; "
                         "print(secrets.token_urlsafe(24))')")
    return tokens


class SecureServicesSettings(BaseModel):
    """``churnpulse services up --secure``: a second, locked-down Kafka and Redis on their own
    ports (the plain ones keep running); files under ``<services.state_dir>/secure``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kafka_port: int = Field(9192, ge=1, le=65535, description="SASL_SSL listener (SCRAM-SHA-512).")
    kafka_controller_port: int = Field(9193, ge=1, le=65535, description="KRaft controller.")
    redis_port: int = Field(6380, ge=1, le=65535, description="Redis with ACL users only.")
    kafka_heap: str = Field("512m", description="Heap of the secure broker.")
