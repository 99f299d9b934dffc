"""Scripts sent as one cluster pipeline (one pipeline per node) on the real local Redis Cluster:
replies in call order across every node, the raw commands sent beside them applied, a script
no node knows yet loaded and the calls sent again, and a script error raised, not returned.
"""

from __future__ import annotations

import hashlib
import uuid

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot
from redis.exceptions import ResponseError

from streams.redis.cluster import ClusterScript, slot_groups

pytestmark = pytest.mark.integration


def fresh_source(body: str) -> str:
    """A script text no node has seen (a unique comment), so its first call is NOSCRIPT."""
    return f"-- {uuid.uuid4().hex}\n{body}"


async def test_calls_across_nodes_reply_in_order_with_the_extra_commands(
        acluster: aioredis.Redis, key_prefix: str) -> None:
    script = ClusterScript(fresh_source(
        "redis.call('HSET', KEYS[1], 'v', ARGV[1]) return KEYS[1] .. '=' .. ARGV[1]"))
    keys = [f"{key_prefix}:{{c:{i}}}:f" for i in range(200)]
    await acluster.initialize()  # type: ignore[attr-defined]
    nodes = {acluster.nodes_manager.get_node_from_slot(  # type: ignore[attr-defined]
        key_slot(k.encode())).name for k in keys}
    assert len(nodes) == 3  # the calls span every primary
    index = f"{key_prefix}:due:{{p0}}"
    replies = await script.run_calls(
        acluster, [([k], [str(i)]) for i, k in enumerate(keys)],
        also=[("ZADD", index, "GT", 5.0, "a", 7.0, "b")])
    assert [r.decode() if isinstance(r, bytes) else r for r in replies] == \
        [f"{k}={i}" for i, k in enumerate(keys)]
    assert await acluster.hget(keys[137], "v") == b"137"
    assert await acluster.zrange(index, 0, -1, withscores=True) == [(b"a", 5.0), (b"b", 7.0)]


async def test_unknown_script_is_loaded_and_the_calls_sent_again(
        acluster: aioredis.Redis, key_prefix: str) -> None:
    source = fresh_source("return redis.call('INCR', KEYS[1])")
    script = ClusterScript(source)
    script.sha = hashlib.sha1(source.encode()).hexdigest()  # as if loaded before
    keys = [f"{key_prefix}:{{c:n{i}}}:n" for i in range(30)]
    assert len(slot_groups(keys)) == 30
    assert await script.run_calls(acluster, [([k], []) for k in keys]) == [1] * 30
    # sent once: after the NOSCRIPT replies nothing ran, so the counters are 1, not 2
    assert [int(v) for v in await acluster.mget(keys[:1])] == [1]  # type: ignore[union-attr]
    assert await script.run_calls(acluster, [([k], []) for k in keys]) == [2] * 30


async def test_a_script_error_is_raised(acluster: aioredis.Redis, key_prefix: str) -> None:
    script = ClusterScript(fresh_source("return redis.error_reply('refused ' .. KEYS[1])"))
    with pytest.raises(ResponseError, match="refused"):
        await script.run_calls(acluster, [([f"{key_prefix}:{{c:x}}:f"], [])])
