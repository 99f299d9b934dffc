"""Score drivers in plain words, and the category that routes an alert.

Feature names are those of :func:`online_models.features.feature_vector` (the model input):
``log_count_7d.session``, ``days_since_last``, ``trend.session``, ``active_days_30d``,
``log_ratio.support_ticket_per_session``, ``log_value_30d.purchase``, ``tenure_days``...
Counts, ratios and value sums arrive through ``log1p``; they are turned back into the quantity
a person knows before they are shown. A decayed count with a half-life of *h* days weighs the
past like a window of *h*/ln 2 days, so ``ln 2 × count`` is the recent rate per *h* days:
``count_7d.session`` reads as "sessions per week".

>>> describe("log_count_7d.session", math.log1p(2.9), math.log1p(13.0))
'sessions per week fell from 9 to 2'
>>> describe("days_since_last", 9.0, None)
'9 days since the last activity'
>>> describe("trend.session", -0.6, -0.1)
'session activity is down 60% on its longer-term rate (was down 10%)'
>>> category("log_ratio.support_ticket_per_session"), category("days_since.payment_failure")
('support', 'billing')
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from alerts.policy import DriverChange

LN2 = math.log(2.0)

DEFAULT_TYPE_CATEGORIES: Mapping[str, str] = {
    "session": "engagement", "login": "engagement", "feature_use": "engagement",
    "support_ticket": "support", "complaint": "support",
    "purchase": "billing", "payment_failure": "billing", "plan_change": "billing",
}
_KEYWORDS = (("support", ("ticket", "complaint", "support", "chat")),
             ("billing", ("payment", "purchase", "plan", "invoice", "billing", "refund")))

_PLURALS = {"_other": "other events", "feature_use": "feature uses"}
_PERIOD = {"1": "per day", "7": "per week", "30": "per month", "365": "per year"}
_COUNT = re.compile(r"^count_(?P<h>[0-9.]+)d(?:\.(?P<t>.+))?$")
_VALUE = re.compile(r"^value_(?P<h>[0-9.]+)d\.(?P<t>.+)$")
_ACTIVE = re.compile(r"^active_days_(?P<w>\d+)d$")
_RATIO = re.compile(r"^ratio\.(?P<a>.+)_per_(?P<b>.+)$")


@dataclass(frozen=True, slots=True)
class DriverView:
    """A driver as the alert record carries it."""

    feature: str
    value: float
    contribution: float
    change: float | None
    text: str
    category: str

    def to_wire(self) -> dict[str, object]:
        return {"feature": self.feature, "value": self.value,
                "contribution": self.contribution, "change": self.change, "text": self.text}


def singular(event_type: str) -> str:
    """
    >>> singular("support_ticket")
    'support ticket'
    """
    return "other event" if event_type == "_other" else event_type.replace("_", " ")


def plural(event_type: str) -> str:
    """
    >>> plural("session"), plural("feature_use"), plural("_other")
    ('sessions', 'feature uses', 'other events')
    """
    if event_type in _PLURALS:
        return _PLURALS[event_type]
    word = singular(event_type)
    return word if word.endswith("s") else word + "s"


def _unlog(value: float) -> float:
    return math.copysign(math.expm1(abs(value)), value)


def quantity(feature: str, value: float) -> tuple[str, float]:
    """The feature without its ``log_`` transform, and its value in the unit shown to people.

    >>> quantity("log_count_7d.session", math.log1p(10.0))
    ('count_7d.session', 6.931...)
    """
    if feature.startswith("log_"):
        feature, value = feature[4:], _unlog(value)
    if _COUNT.match(feature) or _VALUE.match(feature):
        value *= LN2
    return feature, value


def number(x: float) -> str:
    """
    >>> number(12.6), number(9.44), number(0.52), number(2.0), number(-0.0)
    ('13', '9.4', '0.5', '2', '0')
    """
    if abs(x) >= 9.5:
        return f"{x:,.0f}"
    text = f"{x:.1f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _moved(what: str, now: float, before: float | None, unit: str = "") -> str:
    if before is None:
        return f"{what}: {number(now)}{unit}"
    if number(now) == number(before):
        return f"{what} unchanged at {number(now)}{unit}"
    verb = "rose" if now > before else "fell"
    return f"{what} {verb} from {number(before)}{unit} to {number(now)}{unit}"


def _period(h: str) -> str:
    return _PERIOD.get(h, f"per {h} days")


def describe(feature: str, value: float, previous: float | None) -> str:
    """One driver in plain words; ``previous`` is the model-input value it is compared with.

    >>> describe("log_value_30d.purchase", math.log1p(72.0), None)
    'purchase spend per month: 50'
    >>> describe("days_since.session", 0.125, None)
    '3 hours since the last session'
    >>> describe("active_days_7d", 1.0, 5.0)
    'active days in the last 7 days fell from 5 to 1'
    >>> describe("log_ratio.support_ticket_per_session", math.log1p(0.5), None)
    'support tickets per session: 0.5'
    >>> describe("mystery", 3.0, 3.0), describe("tenure_days", 40.0, None)
    ('mystery unchanged at 3', 'tenure in days: 40')
    """
    name, now = quantity(feature, value)
    before = None if previous is None else quantity(feature, previous)[1]
    if m := _COUNT.match(name):
        kind = m["t"]
        what = f"{plural(kind) if kind else 'events'} {_period(m['h'])}"
        return _moved(what, now, before)
    if m := _VALUE.match(name):
        what = f"{singular(m['t'])} spend {_period(m['h'])}"
        return _moved(what, now, before)
    if m := _RATIO.match(name):
        what = f"{plural(m['a'])} per {singular(m['b'])}"
        return _moved(what, now, before)
    if m := _ACTIVE.match(name):
        return _moved(f"active days in the last {m['w']} days", now, before)
    if name == "days_since_last" or name.startswith("days_since."):
        what = ("the last activity" if name == "days_since_last"
                else f"the last {singular(name.split('.', 1)[1])}")
        if before is None:
            if 0 <= now < 1:
                return f"{number(now * 24)} hours since {what}"
            return f"{number(now)} days since {what}"
        return _moved(f"days since {what}", now, before)
    if name == "trend" or name.startswith("trend."):
        kind = "overall" if name == "trend" else singular(name.split(".", 1)[1])

        def pct(x: float) -> str:
            return f"{'down' if x < 0 else 'up'} {abs(x) * 100:.0f}%"

        text = f"{kind} activity is {pct(now)} on its longer-term rate"
        return text if before is None else f"{text} (was {pct(before)})"
    if name.startswith("events_total"):
        kind = name.split(".", 1)[1] if "." in name else ""
        return _moved(f"{plural(kind) if kind else 'events'} in total", now, before)
    if name == "tenure_days":
        return _moved("tenure in days", now, before)
    return _moved(name, now, before)


def event_type_of(feature: str) -> str | None:
    """The event type a feature is about, if any.

    >>> event_type_of("log_count_7d.session"), event_type_of("days_since_last")
    ('session', None)
    >>> event_type_of("log_ratio.support_ticket_per_session")
    'support_ticket'
    """
    name = feature[4:] if feature.startswith("log_") else feature
    if m := _RATIO.match(name):
        return m["a"]
    if "." in name:
        return name.split(".", 1)[1]
    return None


def category(feature: str, types: Mapping[str, str] = DEFAULT_TYPE_CATEGORIES) -> str:
    """Routing category of a driver: engagement, support, billing, tenure.

    >>> category("log_count_7d.session"), category("tenure_days"), category("log_value_30d.x")
    ('engagement', 'tenure', 'billing')
    """
    name = feature[4:] if feature.startswith("log_") else feature
    if name == "tenure_days":
        return "tenure"
    if name.startswith("value_"):
        return "billing"
    kind = event_type_of(feature)
    if kind is None:
        return "engagement"
    if kind in types:
        return types[kind]
    for cat, words in _KEYWORDS:
        if any(w in kind for w in words):
            return cat
    return "engagement"


def views(drivers: Sequence[DriverChange],
          types: Mapping[str, str] = DEFAULT_TYPE_CATEGORIES) -> list[DriverView]:
    """Plain-words views of an alert's drivers, in the order given (largest effect first)."""
    return [DriverView(d.feature, d.value, d.contribution, d.change,
                       describe(d.feature, d.value, d.reference), category(d.feature, types))
            for d in drivers]


def main_category(drivers: Sequence[DriverView]) -> str:
    """Category of the driver pushing hardest towards churn (``unknown`` without one).

    >>> v = views([DriverChange("log_count_7d.session", 1.0, -0.2, None),
    ...            DriverChange("days_since.payment_failure", 1.0, 0.9, None)])
    >>> main_category(v), main_category([])
    ('billing', 'unknown')
    """
    pushing = [d for d in drivers if d.contribution > 0]
    if not pushing:
        return "unknown"
    return max(pushing, key=lambda d: d.contribution).category


def summary(score: float, previous_score: float | None, drivers: Sequence[DriverView],
            top: int = 3) -> str:
    """One sentence for people: the score and the top drivers that push towards churn.

    >>> v = views([DriverChange("log_count_7d.session", math.log1p(2.9), 0.9,
    ...                         math.log1p(13.0), math.log1p(13.0))])
    >>> summary(0.81, 0.42, v)
    'Churn risk 81% (was 42%): sessions per week fell from 9 to 2.'
    >>> summary(0.7, None, [])
    'Churn risk 70%; the model gave no drivers.'
    """
    head = f"Churn risk {score * 100:.0f}%"
    if previous_score is not None:
        head += f" (was {previous_score * 100:.0f}%)"
    pushing = [d.text for d in drivers if d.contribution > 0][:top]
    if not pushing:
        return head + "; the model gave no drivers."
    return f"{head}: {'; '.join(pushing)}."
