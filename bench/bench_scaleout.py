"""Events/s of 1, 2 and 3 real worker processes draining a backlog on a 12-partition topic,
on the standalone Redis and on the local Redis Cluster (``churnpulse services up cluster``).

The workers start and warm up first (one event per customer, applied); the clock runs from
the first event of the run produced to the moment Redis holds every event (the sum of the
customers' event counts), so the producer runs beside the workers. On a shared 2-core machine
more workers and more Redis processes compete for the same two cores: the figures show the
overhead of the cluster path, not a speed-up. The load average is printed with the figures.

    python bench/bench_scaleout.py --events 20000 --customers 2000

``--store`` measures the feature writes in this process instead (no Kafka, no worker): the
store's ``apply`` over batches of 500 events, on the standalone Redis and on the cluster, and on
the cluster also the previous way of sending it (one concurrent ``EVALSHA`` per slot, 32 in
flight) for a before/after: events/s and this process's CPU µs per event.

    python bench/bench_scaleout.py --store --events 20000 --customers 2000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from common import cpu_seconds

from streams.contracts import CustomerEvent
from streams.dev.pipeline import WORKER_READY, Pipeline, forget_prefix, wait_until
from streams.kafka.producer import ChurnProducer
from streams.kafka.topics import ensure_topics
from streams.redis.client import call, make_redis, make_sync_redis
from streams.redis.cluster import slot_groups
from streams.redis.feature_store import RedisFeatureStore, group_by_customer
from streams.services.redis_cluster import URL as CLUSTER_URL
from streams.settings import FeatureSettings, KafkaSettings, RedisSettings, TopicSettings

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


def server_infos(url: str, section: str, primaries_only: bool = False) -> list[dict[str, Any]]:
    """``INFO <section>`` of the Redis server, or of every node of a cluster (only its
    primaries when ``primaries_only``)."""
    client = make_sync_redis(RedisSettings(url=url))
    try:
        if hasattr(client, "get_nodes"):
            nodes = client.get_primaries() if primaries_only else client.get_nodes()  # type: ignore[attr-defined]
            return [client.info(section, target_nodes=node) for node in nodes]
        return [client.info(section)]
    finally:
        client.close()


def redis_cpu_s(url: str) -> float:
    """CPU seconds used so far by the Redis server, or by every node of a cluster (replicas
    too: they run on the same machine). Other clients' work counts too."""
    return sum(float(i["used_cpu_user"]) + float(i["used_cpu_sys"])
               for i in server_infos(url, "cpu"))


def run(bootstrap: str, redis_url: str, workers: int, events: int,
        customers: int) -> tuple[float, float, float]:
    """Workers started and warmed up (every partition assigned and consuming) first; then the
    clock runs from the first event produced to the last one applied. Returns (events/s, CPU
    µs per event of all the workers together, of the Redis server(s))."""
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
            cpu = sum(cpu_seconds(proc.pid) for proc in p.procs)
            server = redis_cpu_s(redis_url)
            started = time.monotonic()
            produce(bootstrap, p.events, ids, warm, events)
            wait_until(lambda: applied(p, ids) >= warm + events, 600, "the run applied", 0.2)
            rate = events / (time.monotonic() - started)
            cpu = sum(cpu_seconds(proc.pid) for proc in p.procs) - cpu
            server = redis_cpu_s(redis_url) - server
            return rate, cpu / events * 1e6, server / events * 1e6
        finally:
            p.stop_all()
            forget_prefix(redis_url, p.prefix)


async def per_slot_calls(store: RedisFeatureStore, client: object,
                         events: list[CustomerEvent]) -> None:
    """The cluster path before per-node pipelines: one EVALSHA per slot, 32 in flight."""
    groups = group_by_customer(events)
    cids = list(groups)
    sha = await call(client.script_load(store.script_source))  # type: ignore[attr-defined]
    gate = asyncio.Semaphore(32)

    async def one(group: list[int]) -> None:
        part = {cids[i]: groups[cids[i]] for i in group}
        keys, arg, fingerprints = store.script_call(part)
        async with gate:
            raw = await call(client.evalsha(sha, len(keys), *keys, arg,  # type: ignore[attr-defined]
                                            fingerprints))
        store.applied(part, raw)

    await asyncio.gather(*(one(g) for g in slot_groups([store.feature_key(c) for c in cids])))


def script_usec(url: str) -> float:
    """µs the Redis server(s) spent in EVALSHA so far (every primary of a cluster): other
    clients of the same servers count too, so run it where nobody else is busy."""
    return sum(float(info.get("cmdstat_evalsha", {}).get("usec", 0))
               for info in server_infos(url, "commandstats", primaries_only=True))


async def store_rate(url: str, events: int, customers: int, per_slot: bool,
                     batch: int = 500) -> tuple[float, float, float]:
    """(events/s, process CPU µs per event, Redis EVALSHA µs per event) of the feature
    store's batch writes."""
    prefix = f"bench{os.getpid()}x{int(per_slot)}"
    client = make_redis(RedisSettings(url=url))
    store = RedisFeatureStore(client, FeatureSettings(), prefix)
    stream = [CustomerEvent(f"s{i}", f"c{i % customers}", "session", T0 + i, None)
              for i in range(events)]
    try:
        await store.apply(stream[:batch])  # connections and script caches warm
        server = script_usec(url)
        wall, cpu = time.perf_counter(), time.process_time()
        for start in range(batch, events, batch):
            chunk = stream[start:start + batch]
            if per_slot:
                await per_slot_calls(store, client, chunk)
            else:
                await store.apply(chunk)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        server = script_usec(url) - server
    finally:
        await client.aclose()
        forget_prefix(url, prefix)
    done = events - batch
    return done / wall, cpu / done * 1e6, server / done


def main_store(targets: dict[str, str], events: int, customers: int) -> None:
    runs = [("standalone", False), ("cluster", True), ("cluster", False)]
    for name, per_slot in runs:
        rate, cpu_us, server_us = asyncio.run(store_rate(targets[name], events, customers,
                                                         per_slot))
        how = "one EVALSHA per slot, 32 in flight" if per_slot else "store.apply"
        if name == "cluster" and not per_slot:
            how += " (one pipeline per node)"
        print(f"{name:10s} {how:45s} {rate:8.0f} events/s  {cpu_us:6.1f} µs client CPU/event"
              f"  {server_us:5.1f} µs Redis EVALSHA/event  "
              f"(load average {os.getloadavg()[0]:.1f})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--store", action="store_true",
                        help="in-process feature writes only (before/after per-node pipelines)")
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    targets = {"standalone": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
               "cluster": os.environ.get("REDIS_CLUSTER_URL", CLUSTER_URL)}
    print(f"events {args.events}, customers {args.customers}, cores {os.cpu_count()}")
    if args.store:
        main_store(targets, args.events, args.customers)
        return
    for name, url in targets.items():
        for n in args.workers:
            rate, worker_us, redis_us = run(bootstrap, url, n, args.events, args.customers)
            load = os.getloadavg()[0]
            print(f"{name:10s} workers {n}: {rate:8.0f} events/s  workers {worker_us:5.0f} µs "
                  f"CPU/event  Redis {redis_us:5.0f} µs CPU/event  (load average {load:.1f})",
                  flush=True)


if __name__ == "__main__":
    main()
