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
from collections.abc import Iterable

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from streams.errors import TransientError
from streams.kafka.clients import kafka_python_options
from streams.settings import KafkaSettings, TopicSettings

log = logging.getLogger(__name__)


def ensure_topics(kafka: KafkaSettings, topics: TopicSettings) -> list[str]:
    """Create the missing topics; returns the names that were created."""
    return ensure_named_topics(kafka, topics.model_dump().values())


def ensure_named_topics(kafka: KafkaSettings, names: Iterable[str]) -> list[str]:
    """Create the missing topics of ``names``; returns the names that were created."""
    try:
        admin = KafkaAdminClient(**kafka_python_options(kafka), client_id="churnpulse-admin",
                                 request_timeout_ms=15000)
    except KafkaError as exc:
        raise TransientError(f"cannot reach Kafka at {kafka.bootstrap_servers}: {exc}") from exc
    try:
        existing = set(admin.list_topics())
        wanted = [name for name in dict.fromkeys(names) if name not in existing]
        if not wanted:
            return []
        new = [NewTopic(name, kafka.partitions, kafka.replication_factor) for name in wanted]
        with contextlib.suppress(TopicAlreadyExistsError):  # another process won the race
            admin.create_topics(new, timeout_ms=15000)
        log.info("created topics %s", ", ".join(wanted))
        return wanted
    finally:
        admin.close()
