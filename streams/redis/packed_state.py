"""Packed formats Redis stores: the feature state (MessagePack written by Lua's ``cmsgpack``)
and pending snapshots (the scored feature vector as packed half floats with a schema id).

The feature script keeps a customer's state in one hash field as MessagePack (doubles stay
exact, one value to read and write instead of dozens of fields). This is the small decoder
the readers use (written before the project depended on ``msgpack``, which the worker's
feature cache, :mod:`streams.redis.feature_cache`, now uses to read and write the same
field); it covers what ``cmsgpack.pack`` writes: maps, arrays, strings, integers, floats, nil
and booleans.

Snapshots: see :func:`pack_snapshot` (the layout) and :func:`feature_schema` (the schema id).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import struct
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis

from online_models.observations import Observation
from streams.redis.client import call

log = logging.getLogger(__name__)
SCHEMA_REWRITE_S = 60.0
SCHEMA_CACHE_MAX = 4096

_FIXED = {
    0xCA: (">f", 4), 0xCB: (">d", 8),
    0xCC: (">B", 1), 0xCD: (">H", 2), 0xCE: (">I", 4), 0xCF: (">Q", 8),
    0xD0: (">b", 1), 0xD1: (">h", 2), 0xD2: (">i", 4), 0xD3: (">q", 8),
}
_LENGTHS = {0xD9: (">B", 1), 0xDA: (">H", 2), 0xDB: (">I", 4),
            0xC4: (">B", 1), 0xC5: (">H", 2), 0xC6: (">I", 4)}
_CONTAINERS = {0xDC: (">H", 2, False), 0xDD: (">I", 4, False),
               0xDE: (">H", 2, True), 0xDF: (">I", 4, True)}
_CONSTANTS: dict[int, Any] = {0xC0: None, 0xC2: False, 0xC3: True}


def unpack(data: bytes) -> Any:
    """Decode one MessagePack value.

    >>> unpack(bytes([0x82, 0xa1, 0x6e, 0x03, 0xa1, 0x72, 0xcb]) + struct.pack(">d", 0.5))
    {'n': 3, 'r': 0.5}
    """
    value, end = _decode(data, 0)
    if end != len(data):
        raise ValueError(f"trailing bytes after MessagePack value ({len(data) - end})")
    return value


def unpack_state(data: bytes | None) -> dict[str, float]:
    """A stored feature state without its dedup ring (``ids``); empty when absent.

    >>> unpack_state(None)
    {}
    """
    if not data:
        return {}
    raw = unpack(data)
    if not isinstance(raw, dict):  # cmsgpack writes an empty table as an empty array
        return {}
    return {k: float(v) for k, v in raw.items() if k != "ids"}


def _decode(data: bytes, pos: int) -> tuple[Any, int]:
    tag = data[pos]
    pos += 1
    if tag <= 0x7F:
        return tag, pos
    if tag >= 0xE0:
        return tag - 0x100, pos
    if 0xA0 <= tag <= 0xBF:
        return _text(data, pos, tag & 0x1F)
    if 0x80 <= tag <= 0x8F:
        return _container(data, pos, tag & 0x0F, is_map=True)
    if 0x90 <= tag <= 0x9F:
        return _container(data, pos, tag & 0x0F, is_map=False)
    if tag in _FIXED:
        fmt, size = _FIXED[tag]
        return struct.unpack_from(fmt, data, pos)[0], pos + size
    if tag in _LENGTHS:
        fmt, size = _LENGTHS[tag]
        length = struct.unpack_from(fmt, data, pos)[0]
        if tag >= 0xD9:
            return _text(data, pos + size, length)
        return bytes(data[pos + size:pos + size + length]), pos + size + length
    if tag in _CONTAINERS:
        fmt, size, is_map = _CONTAINERS[tag]
        count = struct.unpack_from(fmt, data, pos)[0]
        return _container(data, pos + size, count, is_map)
    if tag in _CONSTANTS:
        return _CONSTANTS[tag], pos
    raise ValueError(f"unsupported MessagePack tag 0x{tag:02x} at {pos - 1}")


def _text(data: bytes, pos: int, length: int) -> tuple[str, int]:
    raw = data[pos:pos + length]
    return raw.decode("utf-8", errors="surrogateescape"), pos + length


def _container(data: bytes, pos: int, count: int, is_map: bool) -> tuple[Any, int]:
    if is_map:
        out: dict[Any, Any] = {}
        for _ in range(count):
            key, pos = _decode(data, pos)
            out[key], pos = _decode(data, pos)
        return out, pos
    items = []
    for _ in range(count):
        item, pos = _decode(data, pos)
        items.append(item)
    return items, pos


# --- pending snapshots -------------------------------------------------------------------------

SCHEMA_LAYOUT = "feature_vector/1"
"""Part of every schema id: bump it when a feature keeps its name but changes its meaning."""

HALF, SINGLE = 0xC1, 0xC2  # first byte of a packed snapshot (never b"{" or a zlib header)
_HEAD = struct.Struct("<B4sddB")  # format, schema id, t, score, length of the model version
_WIDTH = {HALF: ("e", 2), SINGLE: ("f", 4)}


def feature_schema(names: Sequence[str]) -> bytes:
    """The 4-byte id of an ordered list of feature names (and of :data:`SCHEMA_LAYOUT`).

    A renamed, added, removed or reordered feature gives another id.

    >>> feature_schema(["a", "b"]).hex(), feature_schema(["b", "a"]).hex()
    ('ee383390', 'fd824da2')
    """
    digest = hashlib.blake2b(SCHEMA_LAYOUT.encode(), digest_size=4)
    for name in names:
        raw = name.encode("utf-8", "surrogatepass")
        digest.update(struct.pack("<I", len(raw)))
        digest.update(raw)
    return digest.digest()


def pack_snapshot(obs: Observation, schema: bytes) -> bytes | None:
    """A snapshot as the learner needs it, compactly; ``None`` when it cannot be packed (it has
    ``extra`` data, a model version over 255 bytes, or a value beyond float32): store it as JSON.

    Layout (little-endian): format byte (``0xC1``: features as IEEE half floats, ``0xC2``: as
    float32, used when a value is beyond half's ±65,504), the 4-byte :func:`feature_schema` id
    of ``obs.x``'s names in order, ``t`` and ``score`` as float64 (exact), the model version
    (1 length byte, UTF-8), then one value per feature in schema order. The customer id is not
    stored: it is in the key. 44 features: 121 bytes (the zlib'd JSON was ~840).

    Half floats keep 11 significant bits: a feature reads back within 2**-11 (0.05%) of what was
    scored, and values under 6.1e-5 within 3e-8; :func:`quantized` gives exactly what a stored
    snapshot reads back as, so in-memory stores learn from the same numbers.

    >>> o = Observation("c", 86400.5, {"tenure_days": 12.3, "trend": -1.0}, 0.25, "7-logreg")
    >>> raw = pack_snapshot(o, feature_schema(list(o.x)))
    >>> len(raw), unpack_snapshot(raw, "c", list(o.x)) == quantized(o)
    (34, True)
    >>> unpack_snapshot(raw, "c", list(o.x)).x
    {'tenure_days': 12.296875, 'trend': -1.0}
    """
    version = obs.model_version.encode("utf-8", "surrogatepass")
    if obs.extra or len(version) > 255:
        return None
    values = list(obs.x.values())
    for fmt in (HALF, SINGLE):
        try:
            body = struct.pack(f"<{len(values)}{_WIDTH[fmt][0]}", *values)
        except (OverflowError, struct.error):
            continue
        return _HEAD.pack(fmt, schema, obs.t, obs.score, len(version)) + version + body
    return None


def snapshot_schema(data: bytes) -> bytes | None:
    """The schema id of a packed snapshot; ``None`` for the older JSON formats.

    >>> snapshot_schema(b'{"customer_id": "c"}') is None
    True
    """
    return bytes(data[1:5]) if data[:1] and data[0] in _WIDTH else None


def snapshot_time(data: bytes) -> float | None:
    """The time ``t`` of a packed snapshot, read from its header without decoding it;
    ``None`` for the older JSON formats (and anything too short to be packed).

    >>> snapshot_time(pack_snapshot(Observation("c", 86400.5, {"a": 1.0}, 0.3, "v"), b"abcd"))
    86400.5
    >>> snapshot_time(b'{"t": 1.0}') is None
    True
    """
    if len(data) < _HEAD.size or data[0] not in _WIDTH:
        return None
    return float(_HEAD.unpack_from(data, 0)[2])


def snapshot_stub(data: bytes, customer_id: str) -> Observation | None:
    """A packed snapshot without its features (time, score, model version from the header;
    ``x`` empty); ``None`` for the older JSON formats or a header that does not decode.

    >>> raw = pack_snapshot(Observation("c", 86400.5, {"a": 1.0}, 0.25, "3-x"), b"abcd")
    >>> snapshot_stub(raw, "c")
    Observation(customer_id='c', t=86400.5, x={}, score=0.25, model_version='3-x', extra={})
    """
    if len(data) < _HEAD.size or data[0] not in _WIDTH:
        return None
    _, _, t, score, n_version = _HEAD.unpack_from(data, 0)
    try:
        version = bytes(data[_HEAD.size:_HEAD.size + n_version]).decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return None
    return Observation(customer_id, t, {}, score, version)


def unpack_snapshot(data: bytes, customer_id: str, names: Sequence[str]) -> Observation:
    """The observation :func:`pack_snapshot` packed; ``names`` are its schema's feature names.

    Raises ``ValueError`` when the data is not a packed snapshot of that many features.
    """
    if len(data) < _HEAD.size or data[0] not in _WIDTH:
        raise ValueError(f"not a packed snapshot ({len(data)} bytes)")
    fmt, _, t, score, n_version = _HEAD.unpack_from(data, 0)
    code, width = _WIDTH[fmt]
    start = _HEAD.size + n_version
    if len(data) - start != width * len(names):
        raise ValueError(f"packed snapshot holds {(len(data) - start) / width:g} values, "
                         f"its schema names {len(names)}")
    version = bytes(data[_HEAD.size:start]).decode("utf-8", "surrogatepass")
    values = struct.unpack_from(f"<{len(names)}{code}", data, start)
    return Observation(customer_id, t, dict(zip(names, values, strict=True)), score, version)


def quantized(obs: Observation) -> Observation:
    """``obs`` as it reads back once stored (features rounded as :func:`pack_snapshot` does).

    >>> quantized(Observation("c", 1.0, {"a": 0.1}, 0.3, "v")).x
    {'a': 0.0999755859375}
    >>> o = Observation("c", 1.0, {"a": 0.1}, 0.3, "v", {"why": 1})
    >>> quantized(o) is o  # not packable: kept as JSON, exact
    True
    """
    raw = pack_snapshot(obs, b"\0\0\0\0")
    if raw is None:
        return obs
    return unpack_snapshot(raw, obs.customer_id, list(obs.x))


def schema_names(raw: bytes | str) -> tuple[str, ...]:
    """Decode a schema as stored in Redis (a JSON list of names).

    >>> schema_names('["a", "b"]')
    ('a', 'b')
    """
    names = json.loads(raw)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError("a feature schema is a JSON list of names")
    return tuple(names)


def schema_text(names: Sequence[str]) -> str:
    """A schema as stored in Redis (see :func:`schema_names`)."""
    return json.dumps(list(names), ensure_ascii=False, separators=(",", ":"))


def encode_observation(obs: Observation) -> bytes:
    """A snapshot as JSON, zlib-compressed (level 1): the format before packed snapshots, still
    written for one :func:`~streams.redis.packed_state.pack_snapshot` cannot pack.

    44 features: 1,961 bytes of JSON, 840 compressed, ~15 µs (once per customer and interval).

    >>> o = Observation("c", 1.5, {"log_events_total": 2.0}, 0.25, "3-logreg")
    >>> decode_observation(encode_observation(o)) == o
    True
    >>> decode_observation(orjson.dumps(o.to_json())) == o  # uncompressed JSON still reads
    True
    """
    return zlib.compress(orjson.dumps(obs.to_json()), 1)


def decode_observation(raw: bytes | str) -> Observation:
    data = raw.encode() if isinstance(raw, str) else raw
    if data[:1] != b"{":
        data = zlib.decompress(data)
    return Observation.from_json(orjson.loads(data))


class SnapshotSchemas:
    """The feature schemas of packed snapshots, in ``<prefix>:obs:schema`` (module docstring).

    An id's names never change once written (HSETNX; a different list under the same id is a
    clash: those snapshots are stored as JSON instead), so both directions are cached.
    """

    def __init__(self, client: aioredis.Redis, key: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self.key = key
        self._clock = clock
        self._ids: dict[tuple[str, ...], bytes] = {}
        self._names: dict[bytes, tuple[str, ...]] = {}
        self._written: dict[bytes, float] = {}
        self._clash: set[bytes] = set()
        self.undecodable = 0

    def id_of(self, names: tuple[str, ...]) -> bytes:
        sid = self._ids.get(names)
        if sid is None:
            if len(self._ids) >= SCHEMA_CACHE_MAX:
                self._ids.clear()
            sid = self._ids[names] = feature_schema(names)
        return sid

    async def encode(self, observations: Sequence[Observation]) -> list[bytes]:
        """Each snapshot packed (its schema written first), or as JSON when it cannot be."""
        names = [tuple(o.x) for o in observations]
        ids = [self.id_of(n) for n in names]
        now = self._clock()
        due = {sid: n for sid, n in zip(ids, names, strict=True)
               if now - self._written.get(sid, -math.inf) >= SCHEMA_REWRITE_S
               and sid not in self._clash}
        if due:
            await self._write(due, now)
        out: list[bytes] = []
        for obs, sid in zip(observations, ids, strict=True):
            raw = None if sid in self._clash else pack_snapshot(obs, sid)
            out.append(encode_observation(obs) if raw is None else raw)
        return out

    async def warm(self, names: tuple[str, ...]) -> None:
        """The worker's warm-up, reading only: a schema already stored with these names counts
        as written now (the first batch then writes none); one missing is left to it."""
        sid = self.id_of(names)
        stored = await call(self._client.hget(self.key, sid.hex()))
        if stored is not None and schema_names(stored) == names:
            self._written[sid], self._names[sid] = self._clock(), names

    async def _write(self, schemas: dict[bytes, tuple[str, ...]], now: float) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            for sid, names in schemas.items():
                pipe.hsetnx(self.key, sid.hex(), schema_text(names))
                pipe.hget(self.key, sid.hex())
            replies = await call(pipe.execute())
        for (sid, names), stored in zip(schemas.items(), replies[1::2], strict=True):
            if stored is not None and schema_names(stored) != names:
                log.warning("feature schema id %s clashes with another list of names: "
                            "its snapshots are stored as JSON", sid.hex())
                self._clash.add(sid)
                continue
            self._written[sid] = now
            self._names[sid] = names

    async def decode(self, items: Sequence[tuple[str, bytes]]) -> list[Observation | None]:
        """Snapshots (customer id, stored bytes) decoded; ``None`` for one that does not."""
        unknown = list({sid for _, raw in items
                        if (sid := snapshot_schema(raw)) is not None and sid not in self._names})
        if unknown:
            found = await call(self._client.hmget(self.key, [sid.hex() for sid in unknown]))
            for sid, raw_names in zip(unknown, found, strict=True):
                if raw_names is not None:
                    self._names[sid] = schema_names(raw_names)
        out: list[Observation | None] = []
        for cid, raw in items:
            try:
                sid = snapshot_schema(raw)
                if sid is None:
                    out.append(decode_observation(raw))
                    continue
                names = self._names.get(sid)
                if names is None:
                    raise ValueError(f"feature schema {sid.hex()} is not in {self.key}")
                out.append(unpack_snapshot(raw, cid, names))
            except (ValueError, TypeError, KeyError, zlib.error) as exc:
                self.undecodable += 1
                log.warning("pending snapshot of %r does not decode (%s): dropped", cid, exc)
                out.append(None)
        return out
