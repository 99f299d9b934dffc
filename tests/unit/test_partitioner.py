"""The worker's cached partitioner picks exactly aiokafka's default partition for every key."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner

from streams.kafka.publish import CachedPartitioner


def test_same_partition_as_default_for_every_key_and_partition_list() -> None:
    rng = random.Random(7)
    keys = [f"c-{i:06d}".encode() for i in range(2000)] + [b"", b"\xff" * 7, "é".encode()]
    cached, default = CachedPartitioner(max_cached=500), DefaultPartitioner()
    for parts in ([0], [0, 1, 2, 3], list(range(12)), [0, 2, 5]):
        for key in keys + [rng.choice(keys) for _ in range(3000)]:  # hits and misses
            assert cached(key, parts, parts) == default(key, parts, parts)
    assert len(cached._hash._hashes) <= 500  # bounded: emptied when full


def test_partition_count_change_needs_no_invalidation() -> None:
    cached, default = CachedPartitioner(), DefaultPartitioner()
    key = b"c-000042"
    assert cached(key, [0, 1, 2, 3], [0, 1, 2, 3]) == default(key, [0, 1, 2, 3], [])
    grown = list(range(16))
    assert cached(key, grown, grown) == default(key, grown, grown)


def test_no_key_picks_an_available_partition() -> None:
    cached = CachedPartitioner()
    assert {cached(None, [0, 1, 2, 3], [2]) for _ in range(20)} == {2}
    assert {cached(None, [0, 1], []) for _ in range(50)} <= {0, 1}
