"""Reading the feature state Redis stores: a MessagePack map written by Lua's ``cmsgpack``.

The feature script keeps a customer's state in one hash field as MessagePack (doubles stay
exact, one value to read and write instead of dozens of fields). This is the small decoder
the Python side needs for it (the project has no msgpack dependency); it covers what
``cmsgpack.pack`` writes: maps, arrays, strings, integers, floats, nil and booleans.
"""

from __future__ import annotations

import struct
from typing import Any

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
