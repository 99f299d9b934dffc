"""Right to erasure on the real Redis: ``churnpulse forget`` leaves nothing of the customer in
any key, field, member or value, in the learner state (stopped or running learner) or in the
alert log file, and takes nothing of another customer whose id starts the same (c1 / c10)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import orjson
import pytest
import redis
import redis.asyncio as aioredis

from online_models.learner import Learner
from online_models.observations import Observation
from streams.cli.main import main
from streams.contracts import ChurnLabel
from streams.learner.service import LearnerService, LearnerState, LearnerStateStore
from streams.redis.churned import RedisChurnedCustomers
from streams.redis.feature_store import RedisFeatureStore
from streams.redis.observation_store import RedisObservationStore
from streams.settings import FeatureSettings, load_settings
from streams.signing import StateSigner
from tests.feature_store_contract import DAY, T0, ev

pytestmark = pytest.mark.integration
KEY = "forget-test-signing-key-0123456789"
SIGNER = StateSigner(KEY.encode())


def _b(x: object) -> bytes:
    return x if isinstance(x, bytes) else str(x).encode()


def everything_mentioning(client: redis.Redis, prefix: str, who: str) -> list[str]:
    """Every key, field, member or value under ``prefix`` that names ``who`` as a whole id
    (``c1`` is not found in ``c10``)."""
    needle = re.compile(re.escape(who.encode()) + rb"(?![0-9A-Za-z_-])")
    found = []
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        if needle.search(_b(key)):
            found.append(f"key {key!r}")
        kind = client.type(key)
        if kind == b"zset":
            found += [f"member of {key!r}" for m in client.zrange(key, 0, -1)
                      if needle.search(_b(m))]
        elif kind == b"hash":
            found += [f"field of {key!r}" for f, v in client.hgetall(key).items()
                      if needle.search(_b(f)) or needle.search(_b(v))]
        elif kind == b"set":
            found += [f"member of {key!r}" for m in client.smembers(key) if needle.search(_b(m))]
        elif kind == b"string" and not key.endswith(b":learner:state"):
            found += [f"value of {key!r}"] if needle.search(_b(client.get(key) or b"")) else []
    return found


def learner_mentions(state: LearnerState, who: str) -> list[str]:
    return ([f"churn_times[{who}]"] * (who in state.churn_times)
            + [f"held {lb.label_id}" for lb in state.held if lb.customer_id == who]
            + [f"tombstone {o.obs_id}" for o in state.tombstones if o.customer_id == who])


async def seed(client: aioredis.Redis, prefix: str, ids: list[str], log: Path) -> None:
    settings = load_settings(redis={"key_prefix": prefix})
    features = RedisFeatureStore(client, FeatureSettings(), prefix)
    observations = RedisObservationStore(client, prefix, settings.model.policy)
    churned = RedisChurnedCustomers(client, prefix)
    state = LearnerState(Learner.create())
    lines = []
    for p, cid in enumerate(ids):
        await features.apply([ev(i, cid=cid, ts=T0 + i) for i in range(5)], {cid: (p, T0 + DAY)})
        obs = Observation(cid, T0 + 5, {"x": 1.0}, 0.3, "v1")
        await observations.record([obs, Observation(cid, T0 + 2 * DAY, {"x": 1.0}, 0.3, "v1")])
        await churned.mark(cid, T0 + 3 * DAY)
        await client.set(f"{prefix}:{{c:{cid}}}:alert", orjson.dumps({"customer_id": cid}))
        await client.set(f"{prefix}:delivered:crm:{cid}:1500:high", b"1")
        state.churn_times[cid] = [T0 + 3 * DAY]
        state.held.append(ChurnLabel(f"label-{len(state.held)}", cid, T0 + 9 * DAY, True))
        state.tombstones.append(obs)
        lines.append(orjson.dumps({"alert_id": f"{cid}:1500:high", "customer_id": cid}))
    await asyncio.to_thread(log.write_bytes, b"\n".join([*lines, b"not json, kept"]) + b"\n")
    store = LearnerStateStore(client, prefix, SIGNER)
    await store.save(state, "seed", {"version": 0})
    await client.delete(store.lock_key)


def _forget(redis_url: str, prefix: str, log: Path, who: str) -> int:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHURN_REDIS__URL", redis_url)
        mp.setenv("CHURN_REDIS__KEY_PREFIX", prefix)
        mp.setenv("CHURN_WEBHOOK__LOG_FILE", str(log))
        mp.setenv("CHURN_SECURITY__SIGNING_KEY", KEY)
        return main(["forget", who, "--wait", "20"])


def contents(client: redis.Redis, prefix: str) -> dict[bytes, object]:
    """Every key under ``prefix`` with its whole content (but the learner state, and the
    dashboards' erasure requests that ``forget`` adds: digests, tested on their own)."""
    out: dict[bytes, object] = {}
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        if key.endswith(b":dashboard:forget"):
            continue
        kind = client.type(key)
        if kind == b"zset":
            pairs: list[tuple[bytes, float]] = client.zrange(  # type: ignore[assignment]
                key, 0, -1, withscores=True)
            out[key] = dict(pairs)
        elif kind == b"hash":
            out[key] = client.hgetall(key)
        elif kind == b"string" and not key.endswith(b":learner:state"):
            out[key] = client.get(key)
    return out


async def test_forget_c1_erases_exactly_c1_and_keeps_c10(
        aredis: aioredis.Redis, redis_url: str, key_prefix: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "alerts.jsonl"
    await seed(aredis, key_prefix, ["c1", "c10", "c1}:f"], log)
    sync = redis.Redis.from_url(redis_url)
    expected = contents(sync, key_prefix)
    p = key_prefix.encode()
    for part in (b"f", b"obs", b"alert"):  # what is c1's, and only that
        del expected[p + b":{c:c1}:" + part]
    del expected[p + b":delivered:crm:c1:1500:high"]
    del expected[p + b":churned"][b"c1"]  # type: ignore[attr-defined]
    del expected[p + b":due:{p0}"]  # c1 was its only member
    obs_due = expected[p + b":obs:due"]
    assert isinstance(obs_due, dict)
    del obs_due[b"c1"]  # c1's one due-index member (its two snapshots)
    pending = p + b":obs:due:n"  # the pending-snapshot count loses c1's two
    expected[pending] = str(int(expected[pending]) - 2).encode()  # type: ignore[call-overload]

    assert await asyncio.to_thread(_forget, redis_url, key_prefix, log, "c1") == 0
    out = capsys.readouterr().out
    assert "forgot customer 'c1': 4 keys, 1 churned mark, 1 due-index and 1 snapshot-index " \
           "entries removed; learner state: 3 entries removed; 1 alert log lines removed" in out

    assert contents(sync, key_prefix) == expected  # c10 and 'c1}:f' untouched, byte for byte
    state = await LearnerStateStore(aredis, key_prefix, SIGNER).load()
    assert state is not None
    assert learner_mentions(state, "c1") == []
    assert len(learner_mentions(state, "c10")) == 3
    assert len(learner_mentions(state, "c1}:f")) == 3
    kept = [json.loads(ln)["customer_id"] for ln in log.read_text().splitlines()[:-1]]
    assert kept == ["c10", "c1}:f"] and log.read_text().endswith("not json, kept\n")
    sync.close()


async def test_after_forget_nothing_mentions_the_customer_even_with_a_running_learner(
        aredis: aioredis.Redis, redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    who = "erase-me-7f3a9c"
    log = tmp_path / "alerts.jsonl"
    await seed(aredis, key_prefix, [who, "keep-me-1"], log)
    settings = load_settings(redis={"key_prefix": key_prefix},
                             security={"signing_key": KEY})
    learner = LearnerService(settings, aredis)
    await learner.start(wait_s=2.0)  # holds the lock: forget must ask it
    served: list[str] = []

    async def learner_steps() -> None:
        while who not in served:
            served.extend(await learner.serve_forgets())
            await asyncio.sleep(0.05)

    steps = asyncio.create_task(learner_steps())
    assert await asyncio.to_thread(_forget, redis_url, key_prefix, log, who) == 0
    await asyncio.wait_for(steps, 5)
    assert served == [who]
    sync = redis.Redis.from_url(redis_url)
    assert everything_mentioning(sync, key_prefix, who) == []
    raw = sync.get(f"{key_prefix}:learner:state") or b""
    assert who.encode() not in raw and b"keep-me-1" in raw  # the signed pickle, byte for byte
    assert learner.state is not None and learner_mentions(learner.state, who) == []
    assert who not in log.read_text() and "keep-me-1" in log.read_text()
    sync.close()


async def test_forget_reaches_a_running_dashboard_without_naming_the_customer(
        aredis: aioredis.Redis, redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    from streams.delivery.dashboard.board import Board
    from streams.delivery.dashboard.erasure import forget_key, serve_forget_requests

    who, keep = "erase-me-dash-1", "erase-me-dash-10"
    board = Board()
    for cid in (who, keep):
        board.on_alert({"alert_id": f"{cid}:1:high", "customer_id": cid, "episode_id": f"{cid}:1",
                        "severity": "high", "score": 0.8, "ts": "2026-11-30T10:00:00Z"})
    assert await serve_forget_requests(aredis, key_prefix, board) == []  # nothing asked yet
    assert await asyncio.to_thread(_forget, redis_url, key_prefix, tmp_path / "a.jsonl", who) == 0
    assert await serve_forget_requests(aredis, key_prefix, board) == [who]
    assert board.customer(who) is None and board.customer(keep) is not None
    members = await aredis.zrange(forget_key(key_prefix), 0, -1)
    assert len(members) == 1 and who.encode() not in members[0]  # a digest, not the id
    assert 0 < await aredis.ttl(forget_key(key_prefix)) <= 7 * 86400
    sync = redis.Redis.from_url(redis_url)
    assert everything_mentioning(sync, key_prefix, who) == []
    sync.close()
