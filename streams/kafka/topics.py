"""Creating the pipeline's topics before anything consumes them.

Faust only creates topics it owns; a source topic that does not exist yet is ignored at
subscription time. ``ensure_topics`` creates every topic of :class:`TopicSettings` that is
missing (an admin call that is a no-op when they exist), so workers and producers can start in
any order and brokers may disable ``auto.create.topics.enable``. The admin client connects with
the security settings of :mod:`streams.kafka.clients` (TLS, SASL).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError, UnknownBrokerIdError

from streams.errors import TransientError
from streams.kafka.clients import kafka_python_options
from streams.settings import KafkaSettings, TopicSettings

log = logging.getLogger(__name__)
RETRY_S = 30.0
RETRY_BACKOFF_S = 0.5


def ensure_topics(kafka: KafkaSettings, topics: TopicSettings) -> list[str]:
    """Create the missing topics; returns the names that were created."""
    return ensure_named_topics(kafka, topics.model_dump().values())


def ensure_named_topics(kafka: KafkaSettings, names: Iterable[str],
                        retry_s: float = RETRY_S) -> list[str]:
    """Create the missing topics of ``names``; returns the names that were created.

    A cluster that is still starting can name a controller whose address the admin client has
    not learnt yet (``UnknownBrokerIdError``, which kafka-python does not mark retriable), or
    answer with another retriable error: the whole call is tried again, with a new client,
    for up to ``retry_s`` seconds, then fails as a :class:`TransientError`."""
    wanted = list(dict.fromkeys(names))
    deadline = time.monotonic() + retry_s
    while True:
        try:
            return _create_missing(kafka, wanted)
        except KafkaError as exc:
            if not (exc.retriable or isinstance(exc, UnknownBrokerIdError)):
                raise
            if time.monotonic() > deadline:
                raise TransientError(f"cannot create topics on {kafka.bootstrap_servers} "
                                     f"after {retry_s:.0f} s: {exc!r}") from exc
            log.info("creating topics: %r; trying again", exc)
            time.sleep(RETRY_BACKOFF_S)  # a back-off between attempts, not a synchronisation


def _create_missing(kafka: KafkaSettings, names: list[str]) -> list[str]:
    try:
        admin = KafkaAdminClient(**kafka_python_options(kafka), client_id="churnpulse-admin",
                                 request_timeout_ms=15000)
    except KafkaError as exc:
        raise TransientError(f"cannot reach Kafka at {kafka.bootstrap_servers}: {exc}") from exc
    try:
        existing = set(admin.list_topics())
        wanted = [name for name in names if name not in existing]
        if not wanted:
            return []
        new = [NewTopic(name, kafka.partitions, kafka.replication_factor) for name in wanted]
        with contextlib.suppress(TopicAlreadyExistsError):  # another process won the race
            admin.create_topics(new, timeout_ms=15000)
        log.info("created topics %s", ", ".join(wanted))
        return wanted
    finally:
        admin.close()
