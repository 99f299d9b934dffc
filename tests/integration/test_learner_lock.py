"""The learner's fenced lock on the real Redis: one writer, and a slow step keeps its lock."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from online_models.learner import Learner
from streams.errors import ConfigurationError
from streams.learner.service import LearnerState, LearnerStateStore, acquire_lock, renew_lock

pytestmark = pytest.mark.integration


async def test_only_the_lock_holder_writes_and_an_expired_lock_is_taken_back(
        aredis: aioredis.Redis, key_prefix: str) -> None:
    store = LearnerStateStore(aredis, key_prefix)
    state = LearnerState(Learner.create())
    await acquire_lock(aredis, store.lock_key, "first", wait_s=1.0)
    await store.save(state, "first", {"version": 1})
    with pytest.raises(ConfigurationError, match="only one learner"):
        await acquire_lock(aredis, store.lock_key, "second", wait_s=0.6)
    with pytest.raises(ConfigurationError, match="another learner is writing"):
        await store.save(state, "second", {"version": 99})
    assert (await store.status()) == {"version": 1}
    await aredis.delete(store.lock_key)  # a step longer than the lock's TTL: it expired
    await store.save(state, "first", {"version": 2})
    assert await aredis.get(store.lock_key) == b"first"
    assert await renew_lock(aredis, store.lock_key, "first")
    assert not await renew_lock(aredis, store.lock_key, "second")
    loaded = await store.load()
    assert loaded is not None and loaded.learner.total == 0
