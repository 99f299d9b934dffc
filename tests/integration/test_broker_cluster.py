"""A three-broker KRaft cluster (replication factor 3, min.insync.replicas 2), one broker
SIGKILLed during a replay and restarted later: the worker carries on with the two others, and
the result equals an uninterrupted run's (counts exact, features equal, score ids consistent).

The cluster is the test's own (``streams.services.kafka_cluster.BrokerCluster``, the code of
``churnpulse services up kafka3``) on free ports under ``tmp_path``, small heaps; the shared
broker stays up. Asserted that the fault happened: the killed node led partitions of the
events topic, its pid is gone, the partitions' in-sync replicas shrank to two while it was
down and grew back to three after its restart, and events were still to be applied when it
died (the first part is produced over ~4 s, so it is still arriving at the kill).
Sized for the 2-core CI machine: 6,000 events over 300 customers on 6 partitions.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from kafka import KafkaAdminClient  # type: ignore[import-untyped,unused-ignore]

from streams.dev.pipeline import WORKER_READY, Pipeline, wait_until
from streams.kafka.topics import ensure_topics
from streams.services.common import pid_alive
from streams.services.kafka_cluster import BrokerCluster
from streams.settings import KafkaSettings, TopicSettings
from tests.integration.replay_check import (
    Applied,
    feature_mismatches,
    make_events,
    produce,
    score_check,
)
from tests.ports import free_ports

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
EVENTS, CUSTOMERS, PARTS, PARTITIONS = 6_000, 300, 3, 6


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[BrokerCluster]:
    ports = free_ports(6)
    cluster = BrokerCluster(tmp_path / "kafka3", tuple(ports[:3]), tuple(ports[3:]))
    cluster.up(timeout_s=240)
    yield cluster
    cluster.down()


def partitions(bootstrap: str, topic: str) -> list[dict[str, object]]:
    """Leader, replicas and in-sync replicas of each partition of ``topic``."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="test-broker-cluster",
                             request_timeout_ms=10000)
    try:
        described = admin.describe_topics([topic])
    finally:
        admin.close()
    parts: list[dict[str, object]] = described[0]["partitions"]
    return parts


def isr_sizes(bootstrap: str, topic: str) -> list[int]:
    try:
        return sorted(len(p["isr_nodes"]) for p in partitions(bootstrap, topic))  # type: ignore[arg-type]
    except Exception:  # a metadata request that hit the dead node: ask again
        return []


def test_worker_survives_a_broker_killed_in_a_three_broker_cluster(
        brokers: BrokerCluster, redis_url: str, tmp_path: Path) -> None:
    bootstrap = brokers.bootstrap
    p = Pipeline(bootstrap, redis_url, tmp_path)
    ensure_topics(KafkaSettings(bootstrap_servers=bootstrap, partitions=PARTITIONS,
                                replication_factor=3),
                  TopicSettings(events=p.events, scores=p.scores, dead_letter=p.dead_letter,
                                labels=f"labels-{p.tag}", alerts=f"alerts-{p.tag}"))
    layout: list[dict[str, object]] = []

    def described() -> bool:  # a new topic's metadata can read empty for a moment
        layout[:] = partitions(bootstrap, p.events)
        return len(layout) == PARTITIONS and all(
            int(part["leader_id"]) > 0 for part in layout)  # type: ignore[call-overload]

    wait_until(described, 60, "the events partitions with their leaders", 0.5)
    assert all(len(part["replica_nodes"]) == 3 for part in layout)  # type: ignore[arg-type]
    events = make_events(EVENTS, CUSTOMERS)
    expected = Counter(e.customer_id for e in events)
    part = EVENTS // PARTS
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    applied = Applied(client, p.prefix, list(expected))
    try:
        env = p.env()
        env["CHURN_KAFKA__REPLICATION_FACTOR"] = "3"
        env["CHURN_METRICS__WORKER_PORT"] = "0"
        worker = p.start("worker", env, WORKER_READY, timeout_s=180)

        # the first part arrives over ~4 s and keeps arriving through the kill (the producer
        # retries while leadership moves; a resent event is deduplicated by its id)
        failed: list[BaseException] = []

        def produce_first() -> None:
            try:
                produce(bootstrap, p.events, events[:part], per_second=part / 4, retries=100,
                        retry_backoff_ms=200)
            except BaseException as exc:  # reported by the assertion below
                failed.append(exc)

        first = threading.Thread(target=produce_first)
        first.start()
        wait_until(applied.above(part // 4), 180, "a quarter of the first part applied", 0.02)
        victim = 1  # node.id 2; every node leads some of the 6 partitions
        led = [part_["partition_index"] for part_ in layout if part_["leader_id"] == victim + 1]
        assert led, f"node {victim + 1} leads no events partition: {layout}"
        marker = brokers.node(victim).marker
        pid = brokers.kill_node(victim)
        assert not pid_alive(pid, marker)
        in_flight = applied.total() < part
        wait_until(lambda: isr_sizes(bootstrap, p.events) == [2] * PARTITIONS, 60,
                   "every partition down to two in-sync replicas", 0.5)
        first.join(120)
        assert not first.is_alive() and not failed, f"the first part was not delivered: {failed}"

        produce(bootstrap, p.events, events[part:2 * part])  # acks=all: two replicas suffice
        wait_until(applied.above(2 * part - 1), 180, "the second part applied on two brokers",
                   0.1)
        assert worker.poll() is None, "the worker died with one broker gone"
        port = brokers.ports[victim]
        lost = re.compile(rb"Unable connect to node with id %d|Connection at 127\.0\.0\.1:%d"
                          rb" closed" % (victim + 1, port))
        assert lost.search((tmp_path / "worker-0.log").read_bytes()), \
            "the worker never noticed the killed broker"

        new_pid = brokers.restart_node(victim)
        assert new_pid != pid
        wait_until(lambda: isr_sizes(bootstrap, p.events) == [3] * PARTITIONS, 90,
                   "the restarted broker back in sync", 0.5)
        produce(bootstrap, p.events, events[2 * part:])

        assert in_flight, "the broker died only after its part was applied"
        wait_until(lambda: applied.counts() == dict(expected), 180,
                   "every event counted exactly once", 0.5)
        assert worker.poll() is None
        assert applied.counts() == dict(expected)  # nothing lost, nothing applied twice
        assert feature_mismatches(client, p.prefix, events) == []
        records, ids = score_check(bootstrap, p.scores, expected)
        assert records >= ids >= CUSTOMERS
        print(f"killed node {victim + 1} (pid {pid}, led partitions {led}); "
              f"{records} scores, {ids} score ids")
    finally:
        client.close()
        p.close()
