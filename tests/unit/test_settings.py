from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from streams.cli.main import main
from streams.settings import load_settings, masked_dump


def test_environment_nested_sections_and_conventional_names(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHURN_WORKER__BATCH_SIZE", "123")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "h1:1,h2:2")
    monkeypatch.delenv("CHURN_KAFKA__BOOTSTRAP_SERVERS", raising=False)
    settings = load_settings()
    assert settings.worker.batch_size == 123
    assert settings.kafka.bootstrap_list == ["h1:1", "h2:2"]


def test_churn_prefixed_names_win_over_conventional_ones(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "conventional:1")
    monkeypatch.setenv("CHURN_KAFKA__BOOTSTRAP_SERVERS", "prefixed:2")
    assert load_settings().kafka.bootstrap_servers == "prefixed:2"


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValidationError):
        settings.worker.batch_size = 5  # type: ignore[misc]


def test_bad_values_are_rejected_with_the_setting_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHURN_WORKER__BATCH_SIZE", "0")
    with pytest.raises(ValidationError, match="batch_size"):
        load_settings()


def test_secrets_are_masked_when_printed(monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CHURN_REDIS__PASSWORD", "hunter2")
    monkeypatch.setenv("CHURN_KAFKA__SASL_PASSWORD", "s3cret")
    settings = load_settings()
    assert settings.redis.password is not None
    assert settings.redis.password.get_secret_value() == "hunter2"
    text = json.dumps(masked_dump(settings)) + repr(settings)
    assert "hunter2" not in text and "s3cret" not in text
    assert main(["config"]) == 0
    printed = capsys.readouterr().out
    assert "hunter2" not in printed and "**********" in printed
    assert json.loads(printed)["redis"]["password"] == "**********"
