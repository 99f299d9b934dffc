"""The shared kits of issue 9: one dead-letter format for every writer, one time format for
both wire contracts, the model policy from the settings, the Redis client from the settings."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from redis.exceptions import AuthenticationError, NoPermissionError
from redis.exceptions import ConnectionError as RedisConnectionError

from alerts.contracts import BadScore
from alerts.contracts import parse_ts as parse_score_ts
from online_models.observations import LabelPolicy
from streams.errors import InvalidMessage
from streams.kafka.strategy import Batch, Strategy
from streams.records import MemorySink, RawRecord
from streams.redis.client import make_redis, make_sync_redis
from streams.redis.feature_store import InMemoryFeatureStore
from streams.settings import FeatureSettings, RedisSettings, TopicSettings, load_settings
from streams.timefmt import format_ms, format_ts, parse_ts
from streams.worker.processor import EventBatchProcessor

HEADERS = ["churn.dlq.reason", "churn.dlq.code", "churn.dlq.topic", "churn.dlq.partition",
           "churn.dlq.offset", "churn.dlq.failed_at"]
T0 = 1_767_225_600.0


class NoModel:
    async def current(self) -> object:
        raise AssertionError("no valid event, no model needed")


async def test_every_dead_letter_writer_writes_the_same_headers() -> None:
    """The worker's poison records and a strategy's failed batch (the alerter's path, which
    used to omit ``churn.dlq.failed_at``) carry the same headers, in the same order."""
    sink = MemorySink()
    topics = TopicSettings()
    worker = EventBatchProcessor(InMemoryFeatureStore(FeatureSettings()), NoModel(),  # type: ignore[arg-type]
                                 sink, topics, wall_clock=lambda: T0)
    record = RawRecord(topics.events, 2, 7, b"c-1", b"{not json")
    await worker.process([record])
    strategy = Strategy[None]()
    strategy.dead_letter_topic = topics.dead_letter
    failed = await strategy.failed(Batch([record]), RuntimeError("a bug"))
    written = [*sink.on(topics.dead_letter), *failed]
    assert len(written) == 2
    for out in written:
        assert [name for name, _ in out.headers or []] == HEADERS
        assert (out.topic, out.key, out.value) == (topics.dead_letter, b"c-1", b"{not json")
        headers = dict(out.headers or [])
        assert (headers["churn.dlq.partition"], headers["churn.dlq.offset"]) == (b"2", b"7")
        parse_ts(headers["churn.dlq.failed_at"].decode())  # a timestamp, not empty
    assert dict(written[0].headers or [])["churn.dlq.failed_at"] == format_ts(T0).encode()
    assert dict(failed[0].headers or [])["churn.dlq.code"] == b"processing_failed"


@pytest.mark.parametrize("raw", [
    "2026-01-01T00:00:00Z", "2026-01-01T01:00:00.250+01:00", "2026-01-01T00:00:00",
    "yesterday", "", 1767225600, None,
])
def test_events_and_scores_parse_time_alike(raw: object) -> None:
    """One parser: the event contract raises InvalidMessage, the score contract BadScore, with
    the same code and detail for the same input."""
    got: list[tuple[str, object]] = []
    for parse, error in ((parse_ts, InvalidMessage), (parse_score_ts, BadScore)):
        try:
            got.append(("ok", parse(raw)))
        except error as exc:
            got.append((exc.code, exc.detail))
    assert got[0] == got[1]
    if got[0][0] == "ok":
        assert format_ts(float(got[0][1])) == format_ms(round(float(got[0][1]) * 1000))  # type: ignore[arg-type]


def test_model_policy_comes_from_the_settings() -> None:
    model = load_settings(model={"horizon_days": 10, "observation_interval_hours": 6}).model
    assert model.policy == LabelPolicy(horizon_s=10 * 86400.0, interval_s=6 * 3600.0)


def test_redis_clients_carry_the_acl_user_and_password_of_the_settings() -> None:
    cfg = RedisSettings(url="redis://10.0.0.5:6379/2", username="worker",
                        password=SecretStr("s3cret"), socket_timeout_s=1.5)
    for client in (make_redis(cfg), make_sync_redis(cfg)):
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["username"], kwargs["password"], kwargs["db"]) == ("worker", "s3cret", 2)
        assert kwargs["socket_timeout"] == 1.5


@pytest.mark.parametrize(("raised", "becomes"), [
    (NoPermissionError("NOPERM this user has no permissions to run 'evalsha'"), "config"),
    (AuthenticationError("WRONGPASS invalid username-password pair"), "config"),
    (RedisConnectionError("Connection refused"), "transient"),
])
async def test_redis_errors_are_classified_for_the_runner(raised: Exception, becomes: str) -> None:
    """ACL denials stop a process (ConfigurationError); connection loss is retried."""
    from streams.errors import ConfigurationError, TransientError
    from streams.redis.client import call

    async def failing() -> None:
        raise raised

    expected = ConfigurationError if becomes == "config" else TransientError
    with pytest.raises(expected):
        await call(failing())
