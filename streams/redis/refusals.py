"""Events the feature store refuses on their own (issue 12), and how callers find them.

The store (:mod:`streams.redis.feature_store`, the Lua script and its in-memory twin) checks
every event before it changes anything and refuses a bad one alone, with a code from
:data:`REFUSALS`; the rest of the batch is applied. :func:`rejected_positions` maps the
per-customer refusals of a call back to positions in the caller's list of events, so the caller
can dead-letter the right records.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Protocol

from streams.contracts import CustomerEvent

REFUSALS = {
    "bad_timestamp": "event time is not a number the feature store can keep",
    "bad_value": "value is not a finite number",
    "overflow": "the event would make the customer's features overflow",
    "bad_state": "the customer's stored feature state cannot be read (see churnpulse features)",
}
"""What each refusal code of the store means, for the dead-letter reason."""

RING_MS_LIMIT = 2**47
"""Event times (ms) the ring stores: strictly between -2^47 and 2^47 (6 bytes + offset)."""


class Refusals(Protocol):
    """What a customer's result says about refused events (``AppliedState`` has it)."""

    @property
    def rejected(self) -> tuple[tuple[int, str], ...]: ...


def rejected_positions(events: Sequence[CustomerEvent],
                       states: Mapping[str, Refusals]) -> dict[int, str]:
    """Positions in ``events`` (as passed to ``apply``) of the refused events, with the code.

    ``states[cid].rejected`` holds (position among ``cid``'s events of the call, code).

    >>> from types import SimpleNamespace as S
    >>> evs = [CustomerEvent("e1", "a", "t", 1.0), CustomerEvent("e2", "b", "t", 1.0),
    ...        CustomerEvent("e3", "a", "t", float("nan"))]
    >>> rejected_positions(evs, {"a": S(rejected=((1, "bad_timestamp"),)),
    ...                          "b": S(rejected=())})
    {2: 'bad_timestamp'}
    """
    refused = {cid: dict(s.rejected) for cid, s in states.items() if s.rejected}
    if not refused:
        return {}
    out: dict[int, str] = {}
    seen: dict[str, int] = defaultdict(int)
    for pos, event in enumerate(events):
        cid = event.customer_id
        code = refused.get(cid, {}).get(seen[cid])
        seen[cid] += 1
        if code is not None:
            out[pos] = code
    return out


def event_refusal(ts: float, value: float | None) -> str | None:
    """The reason code an event is refused for whatever the state (None: acceptable).

    >>> event_refusal(1.0, 2.0), event_refusal(float("inf"), None), event_refusal(1.0, 1e999)
    (None, 'bad_timestamp', 'bad_value')
    """
    ms = wire_ms(ts)
    if ms is None or not -RING_MS_LIMIT < ms < RING_MS_LIMIT:
        return "bad_timestamp"
    if value is not None and not math.isfinite(value):
        return "bad_value"
    return None


def wire_ms(ts: float) -> int | None:
    """``ts`` in integer milliseconds, None when it has none (not finite, or absurdly large)."""
    ms = ts * 1000
    return round(ms) if math.isfinite(ms) and abs(ms) < 2.0**62 else None
