"""Wire vocabulary of the simulator: event types, interned properties, timestamps.

Events are held column-wise (see :class:`streams.simulator.columns.EventColumns`); the
event type and the ``properties`` object are small integer codes into the tables below.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

from streams.simulator.config import Plan

SCHEMA_VERSION = 1

EVENT_TYPES: tuple[str, ...] = (
    "session",
    "feature_use",
    "purchase",
    "support_ticket",
    "complaint",
    "payment_failure",
    "plan_change",
)
SESSION, FEATURE_USE, PURCHASE, SUPPORT_TICKET, COMPLAINT, PAYMENT_FAILURE, PLAN_CHANGE = range(7)
#: Every type the engine can emit: the default seven, then ``message`` (social scenarios only).
INTERNAL_EVENT_TYPES: tuple[str, ...] = (*EVENT_TYPES, "message")
MESSAGE = 7

#: Event types that carry a ``value``: purchase amount, amount of the failed charge, new price.
VALUE_EVENT_TYPES: frozenset[str] = frozenset({"purchase", "payment_failure", "plan_change"})

FEATURES: tuple[str, ...] = ("dashboard", "reports", "export", "integrations", "alerts")
FEATURE_POPULARITY: tuple[float, ...] = (0.40, 0.25, 0.15, 0.12, 0.08)
TICKET_TOPICS: tuple[str, ...] = ("bug", "how_to", "billing")
TICKET_TOPIC_SHARES: tuple[float, ...] = (0.45, 0.35, 0.20)

#: Reasons of ``plan_change`` events (``from_plan`` is ``"none"`` for signup/reactivation).
CHANGE_REASONS: tuple[str, ...] = (
    "signup",
    "reactivation",
    "upgrade",
    "downgrade",
    "price_increase",
)
SIGNUP, REACTIVATION, UPGRADE, DOWNGRADE, PRICE_INCREASE = range(5)

NO_PROPERTIES = -1
MS_PER_DAY = 86_400_000


class PropertyTable:
    """Every distinct ``properties`` object of a run, interned once.

    Parameters
    ----------
    plans : sequence of Plan
        The plans of the run; codes are assigned deterministically from their order.

    Attributes
    ----------
    objects : list of dict
        ``objects[code]`` is the properties object.
    json : list of str
        Compact JSON text of each object.
    feature_codes, topic_codes : ndarray
        Codes of ``{"feature": ...}`` / ``{"topic": ...}`` by index in :data:`FEATURES` /
        :data:`TICKET_TOPICS`.
    addon_code : int
        Code of ``{"kind": "addon"}`` (in-app purchases).
    subscription_codes, renewal_codes, payment_codes : ndarray
        Per plan index: first charge, renewal charge, failed charge.
    change_codes : ndarray
        ``change_codes[reason, from_plan + 1, to_plan]`` (``from_plan = -1`` means ``"none"``).
    """

    def __init__(self, plans: Sequence[Plan]) -> None:
        self.objects: list[dict[str, str]] = []
        self.json: list[str] = []
        self._index: dict[bytes, int] = {}
        names = [p.name for p in plans]
        self.feature_codes = self._codes([{"feature": f} for f in FEATURES])
        self.topic_codes = self._codes([{"topic": t} for t in TICKET_TOPICS])
        self.addon_code = self.intern({"kind": "addon"})
        self.subscription_codes = self._codes([{"kind": "subscription", "plan": n} for n in names])
        self.renewal_codes = self._codes([{"kind": "renewal", "plan": n} for n in names])
        self.payment_codes = self._codes([{"plan": n} for n in names])
        k = len(names)
        self.change_codes = np.full((len(CHANGE_REASONS), k + 1, k), NO_PROPERTIES, np.int32)
        for r, reason in enumerate(CHANGE_REASONS):
            for f, from_name in enumerate(["none", *names]):
                for t, to_name in enumerate(names):
                    obj = {"from_plan": from_name, "to_plan": to_name, "reason": reason}
                    self.change_codes[r, f, t] = self.intern(obj)

    def intern(self, obj: dict[str, str]) -> int:
        """Return the code of ``obj``, adding it to the table if new."""
        key = orjson.dumps(obj)
        code = self._index.get(key)
        if code is None:
            code = len(self.objects)
            self._index[key] = code
            self.objects.append(dict(obj))
            self.json.append(key.decode())
        return code

    def _codes(self, objs: list[dict[str, str]]) -> npt.NDArray[np.int32]:
        return np.array([self.intern(o) for o in objs], dtype=np.int32)


def format_ts(ts_ms: npt.NDArray[np.int64]) -> list[str]:
    """Format epoch milliseconds as RFC 3339 UTC strings, e.g. ``2026-01-05T10:15:00.123+00:00``.

    Parameters
    ----------
    ts_ms : ndarray of int64
        Milliseconds since the Unix epoch.

    Returns
    -------
    list of str
    """
    return [f"{s}+00:00" for s in iso_ms(ts_ms)]


def iso_ms(ts_ms: npt.NDArray[np.int64]) -> list[str]:
    """Like :func:`format_ts` without the ``+00:00`` suffix (callers append it)."""
    text: list[str] = np.datetime_as_string(ts_ms.astype("datetime64[ms]"), unit="ms").tolist()
    return text


def midnight_ms(day: dt.date) -> int:
    """Epoch milliseconds of ``day`` at 00:00 UTC."""
    return int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()) * 1000


def to_epoch_ms(ts: pd.Series) -> npt.NDArray[np.int64]:
    """UTC datetimes (any resolution) to epoch milliseconds; NaT becomes -1."""
    values = ts.dt.tz_convert(None).to_numpy(dtype="datetime64[ms]")
    ms: npt.NDArray[np.int64] = np.where(np.isnat(values), -1, values.astype(np.int64))
    return ms


def customer_ids(n: int) -> list[str]:
    """Customer ids ``c-000000`` ... (zero-padded to at least 6 digits), in join order."""
    width = max(6, len(str(max(n - 1, 0))))
    return [f"c-{i:0{width}d}" for i in range(n)]
