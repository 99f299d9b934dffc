"""Right to erasure: ``churnpulse forget`` leaves nothing of the customer in Redis."""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio as aioredis

from streams.cli.main import main
from streams.redis.feature_store import RedisFeatureStore
from streams.settings import FeatureSettings
from tests.feature_store_contract import DAY, T0, ev

pytestmark = pytest.mark.integration


def everything_mentioning(client: redis.Redis, prefix: str, who: str) -> list[str]:
    """Every key, field, member or value under ``prefix`` that mentions ``who``."""
    found = []
    needle = who.encode()
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        if needle in key:
            found.append(f"key {key!r}")
        kind = client.type(key)
        if kind == b"zset":
            found += [f"member of {key!r}" for m in client.zrange(key, 0, -1) if needle in m]
        elif kind == b"hash":
            found += [f"field of {key!r}" for f, v in client.hgetall(key).items()
                      if needle in f or needle in v]
        elif kind == b"string":
            value = client.get(key) or b""
            found += [f"value of {key!r}"] if needle in value else []
    return found


def test_forget_erases_the_customer_everywhere(redis_url: str, key_prefix: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    async def seed() -> None:
        client = aioredis.Redis.from_url(redis_url)
        store = RedisFeatureStore(client, FeatureSettings(), key_prefix)
        for p, cid in enumerate(["alice-7", "bob"]):
            await store.apply([ev(i, cid=cid, ts=T0 + i) for i in range(5)],
                              {cid: (p, T0 + DAY)})
        # the customer ended up in another partition's shard too (partition count changed)
        await store.apply([ev(9, cid="alice-7", ts=T0 + 9)], {"alice-7": (5, T0 + DAY)})
        await client.aclose()

    asyncio.run(seed())
    sync = redis.Redis.from_url(redis_url)
    # another component's per-customer key, under the same hash tag convention
    sync.set(f"{key_prefix}:{{c:alice-7}}:obs", b"snapshot")
    assert everything_mentioning(sync, key_prefix, "alice-7")

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHURN_REDIS__URL", redis_url)
        mp.setenv("CHURN_REDIS__KEY_PREFIX", key_prefix)
        assert main(["forget", "alice-7"]) == 0
    assert "forgot customer 'alice-7': 4 keys and index entries removed" in capsys.readouterr().out

    assert everything_mentioning(sync, key_prefix, "alice-7") == []
    assert sync.hget(f"{key_prefix}:{{c:bob}}:f", "n") == b"5"  # nobody else is touched
    assert sync.zscore(f"{key_prefix}:due:{{p1}}", "bob") == T0 + DAY
    sync.close()
