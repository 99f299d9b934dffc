"""Webhook dispatch benchmark: churn-alerts → dispatcher → signed POSTs to a local receiver.

Run by hand with the local services up (``churnpulse services up``)::

    python bench/bench_webhooks.py [--alerts 2000] [--customers 500] [--delay-ms 0]

A backlog of N alerts is published first; one in-process dispatcher (the real consumer, Redis
dedup store and aiohttp transport) drains it into an aiohttp receiver on 127.0.0.1 that verifies
every signature. Prints alerts/s (first to last delivery) and publish-to-receive latency of a
second, paced run. ``--delay-ms`` makes the receiver slow (a remote CRM) to show what the
per-customer concurrency buys. Not part of the pass/fail suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from alerts.webhooks import verify
from streams.delivery.dispatch import (
    AiohttpTransport,
    AlertDispatchService,
    RedisDeliveredStore,
    build_dispatchers,
)
from streams.redis.client import make_redis
from streams.settings import load_settings

SECRET = b"bench-secret-0123456789"


def alert(i: int, customers: int, sent_ms: float) -> bytes:
    cid = f"c-{i % customers}"
    return orjson.dumps({"schema_version": 1, "alert_id": f"{cid}:{i}:high", "customer_id": cid,
                         "episode_id": f"{cid}:{i}", "severity": "high", "kind": "opened",
                         "score": 0.8, "ts": "2026-12-01T00:00:00+00:00", "team": "csm",
                         "summary": "bench", "drivers": [], "sent_ms": sent_ms})


async def run(n: int, customers: int, delay_ms: float, paced_rate: float) -> None:
    settings0 = load_settings()
    tag = uuid.uuid4().hex[:8]
    arrivals: dict[str, float] = {}
    latencies: list[float] = []
    bad = 0
    target = n
    reached = asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        nonlocal bad
        body = await request.read()
        try:
            verify([SECRET], body, request.headers, now=time.time())
        except Exception:
            bad += 1
            return web.Response(status=401)
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        key = request.headers["Idempotency-Key"]
        arrivals.setdefault(key, time.monotonic())
        if len(arrivals) >= target:
            reached.set()
        latencies.append(time.time() * 1000 - orjson.loads(body)["sent_ms"])
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    topic = f"bench-alerts-{tag}"
    admin = KafkaAdminClient(bootstrap_servers=settings0.kafka.bootstrap_servers)
    admin.create_topics([NewTopic(topic, 4, 1), NewTopic(f"bench-dlq-{tag}", 1, 1)])
    admin.close()
    settings = load_settings(topics={"alerts": topic, "dead_letter": f"bench-dlq-{tag}"},
                             redis={"key_prefix": f"bench{tag}"},
                             webhook={"targets": [{"name": "bench", "url": url,
                                                   "secret": SECRET.decode(),
                                                   "allow_insecure_http": True}],
                                      "consumer_group": f"bench-{tag}", "log_sink": False})
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all",
                                linger_ms=5)
    await producer.start()
    for i in range(n):
        await producer.send(topic, alert(i, customers, time.time() * 1000),
                            key=f"c-{i % customers}".encode())
    await producer.flush()
    client = make_redis(settings.redis)
    async with aiohttp.ClientSession() as http:
        service = AlertDispatchService(settings, build_dispatchers(settings,
                                                                   AiohttpTransport(http)),
                                       RedisDeliveredStore(client, settings.redis.key_prefix,
                                                           3600))
        task = asyncio.create_task(service.run())
        await reached.wait()
        first, last = min(arrivals.values()), max(arrivals.values())
        print(f"backlog: {n} alerts over {customers} customers, receiver delay {delay_ms:.0f} ms:"
              f" {n / (last - first):,.0f} alerts/s delivered ({last - first:.2f} s), "
              f"bad signatures {bad}")
        latencies.clear()
        paced = int(paced_rate * 5)
        target = n + paced
        reached.clear()
        for i in range(n, n + paced):
            await producer.send_and_wait(topic, alert(i, customers, time.time() * 1000),
                                         key=f"c-{i % customers}".encode())
            await asyncio.sleep(1 / paced_rate)
        await reached.wait()
        q = statistics.quantiles(latencies, n=100)
        print(f"paced: {paced_rate:.0f} alerts/s for 5 s: publish-to-receiver latency p50 "
              f"{q[49]:.0f} ms, p99 {q[98]:.0f} ms")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await producer.stop()
    async for key in client.scan_iter(match=f"bench{tag}:*"):
        await client.delete(key)
    await client.aclose()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alerts", type=int, default=2000)
    parser.add_argument("--customers", type=int, default=500)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--rate", type=float, default=50.0, help="paced run, alerts/s")
    args = parser.parse_args()
    asyncio.run(run(args.alerts, args.customers, args.delay_ms, args.rate))


if __name__ == "__main__":
    main()
