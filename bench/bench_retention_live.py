"""What the live retention loop costs (docs/retention.md, "What runs live").

The retention process's step (:class:`streams.retention.service.RetentionService`) on a real
Redis (``REDIS_URL``; keys under a fresh prefix, removed at the end), without Kafka: actions,
offer answers and churn labels of ``--customers`` customers, in batches of ``--batch``
records, checkpoints every ``--checkpoint-s`` seconds. Prints CPU and wall time per record, the
checkpoint sizes and the time of one checkpoint, and the alerter's added cost per alert
(:func:`alerts.enrich.enrich` with and without the published advice).

    python bench/bench_retention_live.py --customers 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
import uuid

import orjson
import redis.asyncio as aioredis

from alerts.advice import Advice
from alerts.enrich import AlertConfig, enrich
from alerts.policy import Driver, PolicyParams, RiskState, ScoreInput, update
from streams.kafka.strategy import Batch
from streams.records import RawRecord
from streams.redis.retention_store import RetentionStore
from streams.retention.service import RetentionService
from streams.settings import load_settings
from streams.signing import StateSigner
from streams.timefmt import format_ts

T0 = 1_767_225_600.0
DAY = 86400.0
OFFERS = ("free_month", "discount_10", "discount_20", "upgrade_trial", "pause_plan",
          "loyalty_points", "annual_switch", "support_upgrade")


def records(customers: int, seed: int) -> list[RawRecord]:
    rng = random.Random(seed)
    events, actions, labels = [], [], []
    for i in range(customers):
        cid = f"c-{i:06d}"
        t0 = T0 + rng.random() * 60 * DAY
        holdout = rng.random() < 0.1
        actions.append(orjson.dumps({
            "action_id": f"{cid}:0:high", "alert_id": f"{cid}:0:high", "customer_id": cid,
            "action": "none (holdout)" if holdout else "personal check-in email",
            "recommended_action": "personal check-in email", "holdout": holdout,
            "severity": "high", "driver_category": rng.choice(("engagement", "billing")),
            "segment": rng.choice(("fading", "power users", "newcomers")),
            "offers": list(rng.sample(OFFERS, 3)), "ts": format_ts(t0)}))
        for n in range(3):
            events.append(orjson.dumps({
                "event_id": f"{cid}-o{n}", "customer_id": cid,
                "event_type": rng.choice(("offer_accepted", "offer_declined")),
                "ts": format_ts(t0 - DAY * rng.random()),
                "properties": {"offer": rng.choice(OFFERS)}}))
        if rng.random() < 0.15:
            labels.append(orjson.dumps({"label_id": f"l-{cid}", "customer_id": cid,
                                        "ts": format_ts(t0 + rng.random() * 40 * DAY),
                                        "churned": True}))
    labels.append(orjson.dumps({"label_id": "l-end", "customer_id": "zz",
                                "ts": format_ts(T0 + 120 * DAY), "churned": True}))
    out = [RawRecord("customer-events", 0, i, None, v) for i, v in enumerate(events)]
    out += [RawRecord("retention-actions", 0, i, None, v) for i, v in enumerate(actions)]
    out += [RawRecord("churn-labels", 0, i, None, v) for i, v in enumerate(labels)]
    return out


async def bench_process(args: argparse.Namespace) -> dict[str, object]:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"benchrt{uuid.uuid4().hex[:8]}"
    client = aioredis.Redis.from_url(url)
    settings = load_settings(redis={"url": url, "key_prefix": prefix},
                             retention={"checkpoint_s": args.checkpoint_s, "horizon_days": 30})
    store = RetentionStore(client, prefix, StateSigner(b"bench-signing-key-" + b"k" * 16))
    service = RetentionService(settings, store)
    recs = records(args.customers, args.seed)
    try:
        await service.start()
        published = 0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for i in range(0, len(recs), args.batch):
            published += len(await service.process(Batch(recs[i:i + args.batch])))
        await service.checkpoint(final=True)  # with the recommender
        published += len(await service.process(Batch([])))  # the last checkpoint's outbox
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        sizes = {k: await client.strlen(key) for k, key in
                 (("state", store.state_key), ("recommender", store.reco_key),
                  ("bandit", store.bandit_key))}
        save_ms = {}
        for name, reco in (("state_only", False), ("with_recommender", True)):
            s0 = time.perf_counter()
            for _ in range(3):
                service._reco_dirty = reco
                await service.checkpoint(final=reco)
            save_ms[name] = round((time.perf_counter() - s0) / 3 * 1000, 1)
        assert service.loop.joiner is not None
        advice = Advice("1", service.loop.recommender, service.loop.bandit,
                        settings.retention.bandit_params())
        return {"customers": args.customers, "records": len(recs),
                "outcomes_published": published,
                "pending_actions": len(service.loop.joiner.pending),
                "cpu_us_per_record": round(cpu / len(recs) * 1e6, 1),
                "records_per_s_wall": round(len(recs) / wall),
                "checkpoints": service.version, "checkpoint_bytes": sizes,
                "checkpoint_ms": save_ms,
                "alerter": bench_advise(advice, args.alerts)}
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def bench_advise(advice: Advice, n: int) -> dict[str, float]:
    cfg = PolicyParams(min_dwell_s=0, min_scores=1)
    decisions = []
    for i in range(n):
        state, ds = update(RiskState(), ScoreInput(f"c-{i:06d}", "s", 0.8, T0, drivers=(
            Driver("log_count_7d.session", 0.1, 0.7),)), cfg, T0)
        decisions.append((ds[0], state))
    out = {}
    for name, config in (("plain", AlertConfig()),
                         ("offers", AlertConfig(advice=lambda: Advice("1", advice.recommender))),
                         ("offers_and_policy", AlertConfig(advice=lambda: advice))):
        c0 = time.process_time()
        for d, s in decisions:
            enrich(d, s, None, "fading", config)
        out[f"{name}_cpu_us_per_alert"] = round((time.process_time() - c0) / n * 1e6, 1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--checkpoint-s", type=float, default=2.0)
    ap.add_argument("--alerts", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    result = asyncio.run(bench_process(args))
    print(json.dumps({**result, "loadavg": os.getloadavg()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
