"""The Kafka broker is stopped and restarted twice during a replay (once a controlled shutdown,
once SIGKILL): the worker pauses, resumes by itself, and the result equals an uninterrupted
run's (every customer's event count exact, features equal the in-order fold, a score id never
carries two different scores). The broker frozen (SIGSTOP) past the worker's stall timeout: the
worker replaces its clients and ends exact. The alerter (transactional) loses its broker to
SIGKILL mid-stream: its committed alerts are exactly the pure policy's, none twice.

The broker is the test's own, started with the project's service code
(``streams.services.kafka.up``, the same as ``churnpulse services up kafka``) on free ports under
``tmp_path``: the shared broker stays up. Each fault lands while events of the part are still to
be applied (asserted; the worker is frozen with SIGSTOP from that count until the broker is
down), the broker pid is gone after each fault (asserted), and the worker logs that it lost the
broker (asserted) before the broker comes back. If the count never completes, the failure says
how far it got, whether the worker still runs, and how its log ends.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from alerts.policy import PolicyParams
from streams.dev.pipeline import WORKER_READY, Pipeline, frozen, wait_until, where_it_waits
from streams.kafka.topics import ensure_topics
from streams.services import kafka as kafka_service
from streams.services.common import pid_alive
from streams.settings import KafkaSettings, Settings, TopicSettings, load_settings
from tests.integration.alerter_proc import (
    committed,
    crafted_scores,
    expected_alert_ids,
    publish,
    start_alerter,
)
from tests.integration.replay_check import (
    Applied,
    feature_mismatches,
    make_events,
    produce,
    score_check,
)
from tests.ports import free_ports

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
EVENTS, CUSTOMERS, PARTS = 6_000, 300, 3
# what aiokafka logs when the broker goes away (refused, closed, coordinator lost)
LOST = re.compile(rb"Unable connect to node|Connect call failed|Marking the coordinator dead"
                  rb"|NodeNotReadyError|KafkaConnectionError")


@pytest.fixture(scope="module")
def own_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A broker of these tests (``services up kafka`` code, small heap), stopped at the end;
    each test has its own topics and restarts it as it needs."""
    port, controller = free_ports(2)
    settings = load_settings(
        kafka={"bootstrap_servers": f"127.0.0.1:{port}"},
        services={"state_dir": tmp_path_factory.mktemp("services"),
                  "kafka_controller_port": controller, "kafka_heap": "384m",
                  "start_timeout_s": 150.0})
    assert kafka_service.up(settings).state == "started"
    yield settings
    kafka_service.down(settings)


@pytest.fixture
def broker_up(own_kafka: Settings) -> Settings:
    """The module's broker, started again if a test ended with it down."""
    assert kafka_service.up(own_kafka).state in ("started", "running-ours")
    return own_kafka


def broker_pid(settings: Settings) -> int:
    p = kafka_service.paths(settings)
    pid = int(p.pid.read_text())
    assert pid_alive(pid, p.marker)
    return pid


def start_worker(p: Pipeline, **env: str) -> subprocess.Popen[bytes]:
    """The pipeline's topics (4 partitions) and a worker on them: INFO logs (what the tests
    look for), batches of 50 (a part takes seconds, so a fault lands in it), ``env`` on top."""
    ensure_topics(KafkaSettings(bootstrap_servers=p.bootstrap, partitions=4),
                  TopicSettings(events=p.events, scores=p.scores, dead_letter=p.dead_letter,
                                labels=f"labels-{p.tag}", alerts=f"alerts-{p.tag}"))
    return p.start("worker", {**p.env(), "CHURN_LOG_LEVEL": "INFO",
                              "CHURN_METRICS__WORKER_PORT": "0",
                              "CHURN_WORKER__BATCH_SIZE": "50", **env},
                   WORKER_READY, timeout_s=180)


def test_worker_rides_out_a_broker_stop_and_a_broker_crash(
        broker_up: Settings, redis_url: str, tmp_path: Path) -> None:
    own_kafka = broker_up
    bootstrap = own_kafka.kafka.bootstrap_servers
    p = Pipeline(bootstrap, redis_url, tmp_path)
    events = make_events(EVENTS, CUSTOMERS)
    expected = Counter(e.customer_id for e in events)
    part = EVENTS // PARTS
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    applied = Applied(client, p.prefix, list(expected))
    marker = kafka_service.paths(own_kafka).marker
    try:
        worker = start_worker(p)
        log = tmp_path / "worker-0.log"
        in_flight, faults = 0, []
        for k in range(PARTS):
            produce(bootstrap, p.events, events[k * part:(k + 1) * part])
            if k == PARTS - 1:
                break
            target = k * part + part // 4
            wait_until(applied.above(target), 180, f"{target} events applied", 0.02)
            # the worker is frozen while the broker goes down, so the fault begins exactly
            # where the count below says (it once finished the part during a slow shutdown)
            with frozen(worker):
                pid = broker_pid(own_kafka)
                seen = len(LOST.findall(log.read_bytes()))
                in_flight += applied.total() < (k + 1) * part  # as the fault begins
                if k == 0:  # a controlled shutdown
                    stopped = kafka_service.down(own_kafka)
                    assert stopped.pid == pid and stopped.state == "stopped"
                else:  # a crash
                    os.kill(pid, signal.SIGKILL)
                    wait_until(lambda pid=pid: not pid_alive(pid, marker), 30,
                               "the broker gone")
            assert not pid_alive(pid, marker), "the broker still runs"
            # the worker notices (and survives) the missing broker before it comes back
            wait_until(lambda s=seen: len(LOST.findall(log.read_bytes())) > s, 90,
                       "the worker logging the lost broker", 0.2)
            assert worker.poll() is None, "the worker died while the broker was down"
            during = applied.total()
            restarted = kafka_service.up(own_kafka)
            assert restarted.state == "started" and restarted.pid != pid
            faults.append((pid, restarted.pid, during))
        assert len(faults) == PARTS - 1
        assert in_flight > 0, "the broker went down only after its part was applied"
        print(f"{in_flight} of {len(faults)} faults began with events of the part unapplied")

        try:
            wait_until(lambda: applied.counts() == dict(expected), 240,
                       "every event counted exactly once after the restarts", 0.5)
        except AssertionError as exc:  # say where it stood: lost, twice, or stalled
            counts = applied.counts()
            below = sum(counts[c] < n for c, n in expected.items())
            above = sum(counts[c] > n for c, n in expected.items())
            tail = [line for line in log.read_text(errors="replace").splitlines()
                    if not LOST.search(line.encode()) and "update metadata" not in line][-40:]
            raise AssertionError(
                f"{exc}: {sum(counts.values())} of {EVENTS} applied, {below} customers below "
                f"their count, {above} above; faults {faults}; the worker "
                f"{'runs' if worker.poll() is None else 'exited'}; it waits in:\n"
                + "\n".join(where_it_waits(worker, log))
                + "\nits log ends (reconnect noise left out):\n" + "\n".join(tail)) from None
        assert worker.poll() is None, "the worker died instead of resuming"
        assert applied.counts() == dict(expected)  # nothing lost, nothing applied twice
        assert feature_mismatches(client, p.prefix, events) == []
        records, ids = score_check(bootstrap, p.scores, expected)
        assert records >= ids >= CUSTOMERS
        lost = LOST.findall(log.read_bytes())
        print(f"faults (old pid, new pid, applied while down): {faults}; "
              f"{len(lost)} lost-broker log lines; {records} scores, {ids} score ids")
    finally:
        client.close()
        p.close()


def test_worker_replaces_its_clients_when_the_broker_stops_answering(
        broker_up: Settings, redis_url: str, tmp_path: Path) -> None:
    """The broker frozen (SIGSTOP: its connections stay open, nothing is answered) for longer
    than the worker's stall timeout: a batch's publish or commit waits, the worker replaces
    its Kafka clients (logged, asserted) instead of waiting forever, and once the broker answers
    again every count is exact."""
    bootstrap = broker_up.kafka.bootstrap_servers
    p = Pipeline(bootstrap, redis_url, tmp_path)
    events = make_events(2_000, 100)
    expected = Counter(e.customer_id for e in events)
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    applied = Applied(client, p.prefix, list(expected))
    pid = broker_pid(broker_up)
    try:
        worker = start_worker(p, CHURN_WORKER__STALL_TIMEOUT_S="3")
        log = tmp_path / "worker-0.log"
        produce(bootstrap, p.events, events)
        wait_until(applied.above(200), 120, "200 events applied", 0.02)
        with frozen(worker):  # the broker stops answering with events still to apply
            assert applied.total() < len(events), "the worker finished before the freeze"
            os.kill(pid, signal.SIGSTOP)
        try:
            wait_until(lambda: b"the clients are replaced" in log.read_bytes(), 90,
                       "the worker replacing the clients of a stalled batch", 0.2)
            assert worker.poll() is None, "the worker died while the broker was frozen"
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_until(lambda: applied.counts() == dict(expected), 240,
                   "every event counted exactly once after the broker answered again", 0.5)
        assert worker.poll() is None, "the worker died instead of resuming"
        assert feature_mismatches(client, p.prefix, events) == []
        restarts = log.read_text(errors="replace").count("consumer failed, restarting")
        assert restarts >= 1
        print(f"{restarts} restarts of the events consumer while the broker was frozen")
    finally:
        client.close()
        p.close()


def test_alerter_rides_out_a_broker_crash(broker_up: Settings, redis_url: str,
                                          tmp_path: Path) -> None:
    """The alerter (transactional: alerts and offsets commit together) loses its broker to
    SIGKILL while alerts of the stream are still to come; after the restart the committed
    alerts are exactly the pure policy's, none twice."""
    own_kafka = broker_up
    bootstrap = own_kafka.kafka.bootstrap_servers
    p = Pipeline(bootstrap, redis_url, tmp_path)
    # the crash lands mid-stream by construction, not by size (60,000 scores were needed
    # when it raced the alerter): the alerter is frozen (SIGSTOP) while the first half
    # arrives, then runs in slices of 50 ms until it has committed some alerts, and is
    # frozen while the broker is killed
    records = crafted_scores(customers=1200, per_customer=10, seed=31)
    expected = expected_alert_ids(records, PolicyParams())
    half = len(records) // 2
    due = len(expected_alert_ids(records[:half], PolicyParams()))
    marker = kafka_service.paths(own_kafka).marker
    alerter = None
    try:
        alerter = start_alerter(p, timeout_s=120)
        log = tmp_path / "alerter-0.log"
        os.killpg(alerter.pid, signal.SIGSTOP)
        publish(bootstrap, p.scores, records[:half])
        slices, deadline = 0, time.monotonic() + 120
        while (got := len(committed(p, f"alerts-{p.tag}", 10))) <= 50:
            assert time.monotonic() < deadline, f"{got} alerts after {slices} slices"
            os.killpg(alerter.pid, signal.SIGCONT)
            time.sleep(0.05)  # not a sync: a slice of work between two looks
            os.killpg(alerter.pid, signal.SIGSTOP)
            slices += 1
        pid = broker_pid(own_kafka)
        seen = len(LOST.findall(log.read_bytes()))
        in_flight = got < due  # frozen: nothing more is committed before the crash
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not pid_alive(pid, marker), 30, "the broker gone")
        os.killpg(alerter.pid, signal.SIGCONT)
        assert in_flight, "the alerter had finished the first half before the crash"
        wait_until(lambda: len(LOST.findall(log.read_bytes())) > seen, 90,
                   "the alerter logging the lost broker", 0.2)
        assert alerter.poll() is None, "the alerter died while the broker was down"
        restarted = kafka_service.up(own_kafka)
        assert restarted.state == "started" and restarted.pid != pid
        publish(bootstrap, p.scores, records[half:])
        wait_until(lambda: len(committed(p, f"alerts-{p.tag}", 10)) >= len(expected), 240,
                   "every alert after the restart", 1.0)
        ids = [str(a["alert_id"]) for a in committed(p, f"alerts-{p.tag}", 30)]
        assert [i for i, n in Counter(ids).items() if n > 1] == []
        assert sorted(ids) == sorted(expected)
        assert alerter.poll() is None, "the alerter died instead of resuming"
        print(f"alerter: {len(ids)} alerts, {due} due from the first half, {got} committed "
              f"at the crash after {slices} slices")
    finally:
        if alerter is not None and alerter.poll() is None:
            os.killpg(alerter.pid, signal.SIGCONT)  # never left frozen
        p.close()
