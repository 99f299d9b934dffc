"""The ``security`` section of the settings (``CHURN_SECURITY__*``); see docs/security.md."""

from __future__ import annotations

from pathlib import Path

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
