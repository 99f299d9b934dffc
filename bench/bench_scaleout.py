"""Events/s of 1, 2 and 3 real worker processes draining a backlog on a 12-partition topic,
on the standalone Redis and on the local Redis Cluster (``churnpulse services up cluster``).

The workers start and warm up first (one event per customer, applied); the clock runs from
the first event of the run produced to the moment Redis holds every event (the sum of the
customers' event counts), so the producer runs beside the workers. On a shared 2-core machine
more workers and more Redis processes compete for the same two cores: the figures show the
overhead of the cluster path, not a speed-up. The load average is printed with the figures.

    python bench/bench_scaleout.py --events 20000 --customers 2000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from streams.contracts import CustomerEvent
from streams.dev.pipeline import WORKER_READY, Pipeline, forget_prefix, wait_until
from streams.kafka.producer import ChurnProducer
from streams.kafka.topics import ensure_topics
from streams.redis.client import make_sync_redis
from streams.services.redis_cluster import URL as CLUSTER_URL
from streams.settings import KafkaSettings, RedisSettings, TopicSettings

T0 = 1_767_225_600.0


def applied(p: Pipeline, customers: list[str]) -> int:
    client = make_sync_redis(RedisSettings(url=p.redis_url))
    try:
        pipe = client.pipeline(transaction=False)
        for cid in customers:
            pipe.hget(f"{p.prefix}:{{c:{cid}}}:f", "n")
        return sum(int(n or 0) for n in pipe.execute())
    finally:
        client.close()


def produce(bootstrap: str, topic: str, ids: list[str], first: int, count: int) -> None:
    with ChurnProducer(bootstrap, TopicSettings(events=topic)) as producer:
        for i in range(first, first + count):
            producer.send_event(CustomerEvent(f"e{i}", ids[i % len(ids)], "session",
                                              T0 + i, None))


def run(bootstrap: str, redis_url: str, workers: int, events: int, customers: int) -> float:
    """Workers started and warmed up (every partition assigned and consuming) first; then the
    clock runs from the first event produced to the last one applied."""
    with tempfile.TemporaryDirectory() as tmp:
        p = Pipeline(bootstrap, redis_url, Path(tmp))
        ensure_topics(KafkaSettings(bootstrap_servers=bootstrap, partitions=12),
                      TopicSettings(events=p.events, scores=p.scores, dead_letter=p.dead_letter,
                                    labels=f"labels-{p.tag}", alerts=f"alerts-{p.tag}"))
        ids = [f"c{i}" for i in range(customers)]
        warm = customers  # one event per customer: every partition gets some
        try:
            for n in range(workers):
                env = p.env()
                env["CHURN_WORKER__DATA_DIR"] = str(Path(tmp) / f"faust-{n}")
                p.start("worker", env, WORKER_READY, timeout_s=180)
            produce(bootstrap, p.events, ids, 0, warm)
            wait_until(lambda: applied(p, ids) >= warm, 300, "the warm-up applied", 0.5)
            started = time.monotonic()
            produce(bootstrap, p.events, ids, warm, events)
            wait_until(lambda: applied(p, ids) >= warm + events, 600, "the run applied", 0.2)
            return events / (time.monotonic() - started)
        finally:
            p.stop_all()
            forget_prefix(redis_url, p.prefix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    targets = {"standalone": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
               "cluster": os.environ.get("REDIS_CLUSTER_URL", CLUSTER_URL)}
    print(f"events {args.events}, customers {args.customers}, cores {os.cpu_count()}")
    for name, url in targets.items():
        for n in args.workers:
            rate = run(bootstrap, url, n, args.events, args.customers)
            load = os.getloadavg()[0]
            print(f"{name:10s} workers {n}: {rate:8.0f} events/s  (load average {load:.1f})",
                  flush=True)


if __name__ == "__main__":
    main()
