"""Signed state on the real Redis: a forged checkpoint or learner state is refused and never
unpickled (the forged pickle would write a file), the scorer keeps its model, and
``churnpulse security sign-state`` upgrades state an earlier version left unsigned."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from online_models.learner import Learner
from online_models.model import ModelHandle, dump_checkpoint, make_model
from streams.cli.security import sign_state
from streams.learner.service import LearnerState, LearnerStateStore
from streams.redis.model_registry import ModelWatcher, RedisModelRegistry
from streams.signing import HEADER_LEN, SignatureError, StateSigner

pytestmark = pytest.mark.integration
SIGNER = StateSigner(b"integration-test-key-0123456789")


class WritesAFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (str(self.path), "pwned"))


async def test_a_forged_checkpoint_is_refused_and_the_scorer_keeps_its_model(
        aredis: aioredis.Redis, key_prefix: str, tmp_path: Path) -> None:
    registry = RedisModelRegistry(aredis, key_prefix, SIGNER)
    await registry.publish(ModelHandle("1", make_model()))
    watcher = ModelWatcher(registry, poll_s=0.0)
    assert (await watcher.current()).version == "1"

    pwned = tmp_path / "pwned"
    signed = await aredis.get(f"{key_prefix}:model:v:1")
    assert isinstance(signed, bytes)
    # someone who can write Redis: an unsigned pickle, and one behind a copied signature
    await aredis.set(f"{key_prefix}:model:v:2", pickle.dumps(WritesAFile(pwned)))
    forged = signed[:HEADER_LEN] + pickle.dumps(WritesAFile(pwned))
    await aredis.set(f"{key_prefix}:model:v:3", forged)
    with pytest.raises(SignatureError, match="not signed"):
        await registry.load("2")
    with pytest.raises(SignatureError, match="bad signature"):
        await registry.load("3")
    for version in ("2", "3"):
        await aredis.set(f"{key_prefix}:model:current", version)
        assert (await watcher.current()).version == "1"  # logged, kept scoring with v1
    assert not pwned.exists()


async def test_a_forged_learner_state_is_refused_and_never_unpickled(
        aredis: aioredis.Redis, key_prefix: str, tmp_path: Path) -> None:
    store = LearnerStateStore(aredis, key_prefix, SIGNER)
    await store.save(LearnerState(Learner.create(), version=4), "t", {"version": 4})
    await aredis.delete(store.lock_key)
    loaded = await store.load()
    assert loaded is not None and loaded.version == 4
    pwned = tmp_path / "pwned"
    await aredis.set(store.state_key, pickle.dumps(WritesAFile(pwned)))
    with pytest.raises(SignatureError, match="not signed"):
        await store.load()
    await aredis.set(store.state_key, StateSigner(b"x" * 32).sign(
        "learner-state", pickle.dumps(WritesAFile(pwned))))
    with pytest.raises(SignatureError, match="another key"):
        await store.load()
    assert not pwned.exists()


async def test_sign_state_upgrades_earlier_unsigned_state_and_refuses_foreign_pickles(
        aredis: aioredis.Redis, key_prefix: str, tmp_path: Path) -> None:
    # what an earlier churnpulse left: unsigned checkpoint and learner state
    await aredis.set(f"{key_prefix}:model:v:7", dump_checkpoint(ModelHandle("7", make_model())))
    await aredis.set(f"{key_prefix}:learner:state",
                     pickle.dumps(LearnerState(Learner.create(), version=7)))
    pwned = tmp_path / "pwned"
    await aredis.set(f"{key_prefix}:model:v:8", pickle.dumps(WritesAFile(pwned)))
    registry = RedisModelRegistry(aredis, key_prefix, SIGNER)
    store = LearnerStateStore(aredis, key_prefix, SIGNER)
    with pytest.raises(SignatureError, match="churnpulse security sign-state"):
        await registry.load("7")
    with pytest.raises(SignatureError, match="churnpulse security sign-state"):
        await store.load()

    dry = dict(await sign_state(aredis, key_prefix, SIGNER, dry_run=True))
    assert dry[f"{key_prefix}:model:v:7"] == "would sign"
    outcome = dict(await sign_state(aredis, key_prefix, SIGNER))
    assert outcome[f"{key_prefix}:model:v:7"] == "signed"
    assert outcome[f"{key_prefix}:learner:state"] == "signed"
    assert outcome[f"{key_prefix}:model:v:8"].startswith("REFUSED: imports pathlib.Path")

    assert (await registry.load("7")).version == "7"
    state = await store.load()
    assert state is not None and state.version == 7
    with pytest.raises(SignatureError, match="not signed"):
        await registry.load("8")
    assert dict(await sign_state(aredis, key_prefix, SIGNER))[f"{key_prefix}:model:v:7"] == "ok"
    assert not pwned.exists()
