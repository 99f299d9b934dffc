"""The demo's retention figures and its simulated offer answers (pure).

The live simulation has no offers, so the demo plays the customers who answer them: for half of
the actioned (not holdout) alerts the customer answers one offer with an ``offer_accepted`` or
``offer_declined`` event on the events topic, an hour (event time) after the alert. The offer
is the alert's first recommended one, or, before the retention process has published a
recommender (no offers on alerts yet), one of :data:`CATALOGUE`. Acceptance depends on the
segment and the offer (:func:`accept_rate`), so the recommender has something to learn. These
answers are synthetic: the demo shows the loop running, not a measured effect.

>>> v = DemoRetention()
>>> a = {"action_id": "c1:0:high", "customer_id": "c1", "holdout": False, "segment": "fading",
...      "ts": "2026-01-01T00:00:00+00:00", "offers": ["free_month"],
...      "policy": {"context": "fading|engagement", "explored": False}}
>>> [orjson.loads(value)["properties"] for _, value in v.on_action(orjson.dumps(a))]
[{'offer': 'free_month'}]
>>> v.on_outcome(orjson.dumps({"outcome_id": "c1:0:high:outcome", "outcome": "stayed",
...                             "holdout": False}))
>>> v.on_outcome(orjson.dumps({"outcome_id": "c1:0:high:outcome", "outcome": "stayed",
...                             "holdout": False}))  # a re-publication: counted once
>>> print(v.actions_line())  # doctest: +NORMALIZE_WHITESPACE
1 decided · 0 in the holdout (no action) · 1 carried offers · 1 chosen by the learning
policy (0 explored)
>>> v.outcomes_line()
'1 joined (0 churned · 1 stayed) · 1 offer answers sent by the demo'
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field

import orjson

from streams.retention.tally import RetentionTally

CATALOGUE = ("free_month", "discount_20", "upgrade_trial")
ANSWER_SHARE = 0.5  # of actioned alerts whose customer answers an offer
ANSWER_DELAY_S = 3600.0


def accept_rate(segment: str, offer: str) -> float:
    """The simulated chance that a customer of ``segment`` accepts ``offer``: one offer in
    three suits a segment well (0.6), the others rarely (0.1).

    >>> sorted({accept_rate("fading", o) for o in CATALOGUE + ("x", "y", "z")})
    [0.1, 0.6]
    """
    return 0.6 if zlib.crc32(f"{segment}|{offer}".encode()) % 3 == 0 else 0.1


@dataclass
class DemoRetention:
    """Retention actions and outcomes the demo has read, and the offer answers it made."""

    tally: RetentionTally = field(default_factory=RetentionTally)  # the process's own counts
    answers: int = 0
    outcomes: dict[str, str] = field(default_factory=dict)  # outcome id -> churned/stayed

    def on_action(self, raw: bytes) -> list[tuple[bytes, bytes]]:
        """Count a ``retention-actions`` record; the offer answer to publish (key, value)."""
        try:
            rec = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(rec, dict):
            return []
        self.tally.add_action(rec)
        offers = rec.get("offers")
        return self._answer(rec, offers if isinstance(offers, list) else [])

    def _answer(self, rec: dict[str, object], offers: list[object]) -> list[tuple[bytes, bytes]]:
        from alerts.contracts import BadScore, parse_ts
        from streams.timefmt import format_ts

        action_id, cid = str(rec.get("action_id") or ""), str(rec.get("customer_id") or "")
        if rec.get("holdout") is not False or not action_id or not cid:
            return []
        rng = random.Random(zlib.crc32(action_id.encode()))  # the same answer on a replay
        if rng.random() >= ANSWER_SHARE:
            return []
        try:
            ts = parse_ts(rec.get("ts")) + ANSWER_DELAY_S
        except BadScore:
            return []
        offer = str(offers[0]) if offers else CATALOGUE[rng.randrange(len(CATALOGUE))]
        kind = ("offer_accepted" if rng.random() < accept_rate(str(rec.get("segment") or ""),
                                                                offer) else "offer_declined")
        self.answers += 1
        event = {"event_id": f"{action_id}:answer", "customer_id": cid, "event_type": kind,
                 "ts": format_ts(ts), "properties": {"offer": offer}}
        return [(cid.encode(), orjson.dumps(event))]

    def on_outcome(self, raw: bytes) -> None:
        """Count a ``retention-outcomes`` record (the first of each id)."""
        try:
            rec = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return
        if isinstance(rec, dict) and isinstance(rec.get("outcome_id"), str):
            self.outcomes.setdefault(rec["outcome_id"], str(rec.get("outcome")))

    def actions_line(self) -> str:
        t = self.tally
        return (f"{t.actions:,} decided · {t.holdout:,} in the holdout (no action) · "
                f"{t.with_offers:,} carried offers · {t.policy:,} chosen by the "
                f"learning policy ({t.explored:,} explored)")

    def outcomes_line(self) -> str:
        churned = sum(1 for o in self.outcomes.values() if o == "churned")
        return (f"{len(self.outcomes):,} joined ({churned:,} churned · "
                f"{len(self.outcomes) - churned:,} stayed) · {self.answers:,} offer answers "
                "sent by the demo")
