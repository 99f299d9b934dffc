"""The packed snapshot format (streams.redis.packed_state): round trip, precision, fallbacks,
schema ids, and the older JSON formats still read."""

from __future__ import annotations

import math
import random
import struct
import zlib

import orjson
import pytest

from online_models.feature_vector import feature_vector
from online_models.features import apply_event
from online_models.observations import Observation
from streams.redis.packed_state import (
    HALF,
    SINGLE,
    decode_observation,
    encode_observation,
    feature_schema,
    pack_snapshot,
    quantized,
    snapshot_schema,
    unpack_snapshot,
)

DAY = 86400.0
T0 = 1_767_225_600.0
KINDS = ("session", "session", "feature_use", "purchase", "support_ticket", "payment_failure")


def realistic(seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    state: dict[str, float] = {}
    for i in range(rng.randrange(20, 60)):
        kind = rng.choice(KINDS)
        state = apply_event(state, kind, T0 + i * rng.uniform(1800, 40000),
                            19.9 if kind == "purchase" else None)
    return feature_vector(state, state["t_last"] + DAY)


def packed(obs: Observation) -> bytes:
    raw = pack_snapshot(obs, feature_schema(list(obs.x)))
    assert raw is not None
    return raw


def test_a_realistic_snapshot_packs_in_under_124_bytes_and_reads_back_within_half_precision(
) -> None:
    for seed in range(50):
        x = realistic(seed)
        obs = Observation("c000123", T0 + seed * DAY + 0.125, x, 0.1234567890123, "12345-logreg")
        raw = packed(obs)
        # 124 bytes is the largest value Redis keeps in a 128-byte allocation (bench_snapshots)
        assert raw[0] == HALF and len(raw) <= 22 + 12 + 2 * 44 <= 124
        back = unpack_snapshot(raw, "c000123", list(x))
        assert back == quantized(obs)
        assert (back.customer_id, back.t, back.score, back.model_version) == (
            obs.customer_id, obs.t, obs.score, obs.model_version)  # exact
        assert list(back.x) == list(x)  # the names, in order
        for name, value in x.items():
            assert math.isclose(back.x[name], value, rel_tol=2 ** -11, abs_tol=3e-8), name


def test_quantized_is_what_every_store_keeps_and_it_is_stable() -> None:
    obs = Observation("c", 5.0, {"a": 0.1, "b": 1234.567, "c": -1.0}, 0.3, "v")
    once = quantized(obs)
    assert once.x == {"a": 0.0999755859375, "b": 1235.0, "c": -1.0}  # half: 11 bits
    assert quantized(once) == once  # a second store round trip changes nothing


def test_values_beyond_half_range_use_float32_and_beyond_float32_use_json() -> None:
    wide = Observation("c", 1.0, {"a": 70000.5, "b": 0.1}, 0.5, "v")
    raw = packed(wide)
    assert raw[0] == SINGLE
    assert unpack_snapshot(raw, "c", ["a", "b"]).x == {"a": 70000.5,
                                                      "b": struct.unpack("<f",
                                                                         struct.pack("<f", 0.1))[0]}
    huge = Observation("c", 1.0, {"a": 1e300}, 0.5, "v")
    assert pack_snapshot(huge, feature_schema(["a"])) is None
    assert quantized(huge) is huge  # stored as JSON: exact
    with_extra = Observation("c", 1.0, {"a": 1.0}, 0.5, "v", {"why": "kept"})
    assert pack_snapshot(with_extra, feature_schema(["a"])) is None
    assert pack_snapshot(Observation("c", 1.0, {}, 0.5, "v" * 256), feature_schema([])) is None


def test_the_schema_id_changes_with_any_change_of_the_feature_layout() -> None:
    names = list(realistic(1))
    base = feature_schema(names)
    assert len(base) == 4 and feature_schema(list(names)) == base
    changed = [names[1], names[0], *names[2:]], names[:-1], [*names, "new"], \
        [names[0] + "_v2", *names[1:]]
    assert all(feature_schema(c) != base for c in changed)
    assert len({feature_schema(list(realistic(s))) for s in range(30)}) == len(
        {tuple(realistic(s)) for s in range(30)})


def test_unpacking_with_the_wrong_schema_or_bad_bytes_raises_a_clear_error() -> None:
    obs = Observation("c", 1.0, {"a": 1.0, "b": 2.0}, 0.5, "v")
    raw = packed(obs)
    with pytest.raises(ValueError, match="holds 2 values, its schema names 3"):
        unpack_snapshot(raw, "c", ["a", "b", "c"])
    with pytest.raises(ValueError, match="not a packed snapshot"):
        unpack_snapshot(b"\xc1\x00", "c", [])


def test_snapshots_in_the_older_formats_still_read() -> None:
    obs = Observation("c9", 86400.5, {"log_events_total": 2.0, "trend": 0.123456789}, 0.25,
                      "3-logreg")
    old_zlib = zlib.compress(orjson.dumps(obs.to_json()), 1)  # written before packing
    old_json = orjson.dumps(obs.to_json())
    assert snapshot_schema(old_zlib) is None and snapshot_schema(old_json) is None
    assert decode_observation(old_zlib) == obs == decode_observation(old_json)  # exact
    assert decode_observation(encode_observation(obs)) == obs
    assert snapshot_schema(packed(obs)) == feature_schema(list(obs.x))
