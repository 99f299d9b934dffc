"""ensure_topics on a cluster still starting: retried, not crashed (the admin client is faked)."""

from __future__ import annotations

from typing import Any

import pytest
from kafka.errors import TopicAuthorizationFailedError, UnknownBrokerIdError

from streams.errors import TransientError
from streams.kafka import topics
from streams.settings import KafkaSettings


class _Admin:
    """A kafka-python admin client whose first ``fail`` create calls raise ``error``."""

    calls = 0
    fail = 1
    error: type[Exception] = UnknownBrokerIdError

    def __init__(self, **_: Any) -> None:
        pass

    def list_topics(self) -> list[str]:
        return ["old"]

    def create_topics(self, new: list[Any], timeout_ms: int) -> None:
        type(self).calls += 1
        if type(self).calls <= type(self).fail:
            raise type(self).error(2)

    def close(self) -> None:
        pass


@pytest.fixture
def admin(monkeypatch: pytest.MonkeyPatch) -> type[_Admin]:
    monkeypatch.setattr(topics, "KafkaAdminClient", _Admin)
    monkeypatch.setattr(topics, "RETRY_BACKOFF_S", 0.0)
    _Admin.calls, _Admin.fail, _Admin.error = 0, 1, UnknownBrokerIdError
    return _Admin


def test_an_unknown_controller_is_retried_until_the_topics_exist(admin: type[_Admin]) -> None:
    created = topics.ensure_named_topics(KafkaSettings(), ["old", "a", "b", "a"])
    assert created == ["a", "b"]
    assert admin.calls == 2  # the first attempt failed, as on the three-broker cluster in CI


def test_it_gives_up_as_a_transient_error_after_the_deadline(admin: type[_Admin]) -> None:
    admin.fail = 10**6
    with pytest.raises(TransientError, match="cannot create topics"):
        topics.ensure_named_topics(KafkaSettings(), ["a"], retry_s=0.05)
    assert admin.calls >= 2


def test_other_errors_are_not_retried(admin: type[_Admin]) -> None:
    admin.error = TopicAuthorizationFailedError
    with pytest.raises(TopicAuthorizationFailedError):
        topics.ensure_named_topics(KafkaSettings(), ["a"])
    assert admin.calls == 1
