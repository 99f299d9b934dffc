"""State signing (streams.signing): tampered, unsigned or foreign-key blobs are refused before
anything is unpickled; keys come from the settings or a generated 0600 key file."""

from __future__ import annotations

import os
import pickle
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from online_models.model import ModelHandle, dump_checkpoint, load_checkpoint, make_model
from streams.errors import ConfigurationError
from streams.pickle_audit import suspicious_globals
from streams.settings import load_settings
from streams.settings_security import SecuritySettings
from streams.signing import (
    HEADER_LEN,
    SignatureError,
    StateSigner,
    load_key,
    signer_from_settings,
)

KEY = b"k" * 32


class WritesAFile:
    """Unpickling this creates ``path``: proof that a blob was (or was not) unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (str(self.path), "pwned"))


def test_a_signed_checkpoint_round_trips() -> None:
    signer = StateSigner(KEY)
    blob = signer.sign("model-checkpoint", dump_checkpoint(ModelHandle("3", make_model())))
    assert load_checkpoint(signer.verify("model-checkpoint", blob, "k")).version == "3"


def test_a_tampered_blob_is_refused_and_never_unpickled(tmp_path: Path) -> None:
    signer = StateSigner(KEY)
    good = signer.sign("model-checkpoint", dump_checkpoint(ModelHandle("3", make_model())))
    evil = good[:HEADER_LEN] + pickle.dumps(WritesAFile(tmp_path / "pwned"))
    with pytest.raises(SignatureError, match="bad signature"):
        load_checkpoint(signer.verify("model-checkpoint", evil, "cp:model:v:3"))
    flipped = bytearray(good)
    flipped[-5] ^= 1
    with pytest.raises(SignatureError, match="bad signature"):
        signer.verify("model-checkpoint", bytes(flipped), "cp:model:v:3")
    assert not (tmp_path / "pwned").exists()


def test_an_unsigned_blob_is_refused_with_the_re_sign_command(tmp_path: Path) -> None:
    evil = pickle.dumps(WritesAFile(tmp_path / "pwned"))
    with pytest.raises(SignatureError, match=r"not signed.*churnpulse security sign-state"):
        StateSigner(KEY).verify("learner-state", evil, "cp:learner:state")
    assert not (tmp_path / "pwned").exists()


def test_unsigned_state_loads_only_behind_the_explicit_setting() -> None:
    old = dump_checkpoint(ModelHandle("1", make_model()))  # what an earlier version stored
    with pytest.raises(SignatureError):
        StateSigner(KEY).verify("model-checkpoint", old, "k")
    assert StateSigner(KEY, accept_unsigned=True).verify("model-checkpoint", old, "k") == old


def test_another_key_and_another_purpose_are_refused_and_rotation_keeps_old_state() -> None:
    old_key, new_key = b"o" * 32, b"n" * 32
    blob = StateSigner(old_key).sign("learner-state", b"state")
    with pytest.raises(SignatureError, match="signed with another key"):
        StateSigner(new_key).verify("learner-state", blob, "k")
    assert StateSigner(new_key, previous=(old_key,)).verify("learner-state", blob, "k") == b"state"
    with pytest.raises(SignatureError, match="bad signature"):
        StateSigner(old_key).verify("model-checkpoint", blob, "k")


def test_short_keys_are_refused_and_the_key_is_never_printed() -> None:
    with pytest.raises(ConfigurationError, match="too short"):
        StateSigner(b"short")
    assert "kkkk" not in repr(StateSigner(KEY))


def test_key_from_setting_file_or_generated_0600_file(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_key(SecuritySettings(signing_key=SecretStr("s" * 20))) == b"s" * 20
    key_file = tmp_path / "key"
    key_file.write_text("f" * 40 + "\n")
    assert load_key(SecuritySettings(signing_key_file=key_file)) == b"f" * 40
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    first = load_key(SecuritySettings())
    generated = tmp_path / "cfg" / "churnpulse" / "signing.key"
    assert len(first) == 64 and generated.read_bytes().strip() == first
    assert stat.S_IMODE(os.stat(generated).st_mode) == 0o600
    assert load_key(SecuritySettings()) == first  # reused, not regenerated
    monkeypatch.setenv("CHURN_SECURITY__SIGNING_KEY", "e" * 24)
    assert signer_from_settings(load_settings()).key == b"e" * 24


def test_the_audit_names_what_an_unsigned_pickle_would_import(tmp_path: Path) -> None:
    assert suspicious_globals(dump_checkpoint(ModelHandle("1", make_model()))) == []
    assert suspicious_globals(pickle.dumps(WritesAFile(tmp_path / "x"))) == [
        "pathlib.Path.write_text"]
    assert not (tmp_path / "x").exists()
