"""Stored form of an alert policy's per-customer state (:class:`~alerts.policy.RiskState`):
a compact list of its fields in declaration order, read back from it and from the field-name
mappings earlier versions stored."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from alerts.policy import RiskState

_FIELDS = RiskState._fields


def state_to_json(state: RiskState) -> list[Any]:
    """Plain data for storage: the fields in declaration order (compact and fast).

    >>> s = RiskState(last_ts=5.0, recent_ids=("x",), alerted_values=(("f", 1.0),))
    >>> state_from_json(state_to_json(s)) == s
    True
    >>> state_to_json(RiskState())[:4]
    [None, None, (), None]
    """
    return list(state)


def state_from_json(data: Sequence[Any] | Mapping[str, Any]) -> RiskState:
    """Inverse of :func:`state_to_json`; a shorter list (older record) leaves the newer fields
    at their defaults, and the mapping of field names that earlier versions stored is read too.

    >>> state_from_json({"last_ts": 5.0, "recent_ids": ["x"], "gone": 1}).recent_ids
    ('x',)
    """
    if isinstance(data, Mapping):
        present = {name: data[name] for name in _FIELDS if name in data}
    else:
        present = dict(zip(_FIELDS, data, strict=False))
    for name, value in present.items():
        if name == "recent_ids":
            present[name] = tuple(value)
        elif name in ("alerted_values", "baseline_values"):
            pairs = value.items() if isinstance(value, Mapping) else value
            present[name] = tuple((str(k), float(v)) for k, v in pairs)
    return RiskState(**present)
