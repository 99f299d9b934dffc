"""What the retention process has read and joined, counted for ``/metrics`` and the demo (pure).

The counts live in the process's checkpoint beside the loop (``state["tally"]``), so they move
exactly as the loop does: a record re-read after a crash is counted once, and a restart resumes
the totals instead of starting at zero. A checkpoint written before the tally existed loads as
zeros (:meth:`RetentionTally.from_json` of ``None``).

=================  ==========================================================================
field              counted when
=================  ==========================================================================
actions            a new action record is read (an id seen before is a duplicate, not counted)
holdout            ... of a holdout customer (no action taken)
with_offers        ... that carried offers (the alerter attached the recommender's top offers)
policy             ... whose action the learning policy chose (``policy`` in the record)
explored           ... of those, an exploration draw
outcomes           an action's outcome is resolved (by ``churned`` / ``stayed``)
input_errors       an input is refused: ``action:<code>`` dead-lettered, ``label:<code>`` or
                   ``offer:<code>`` skipped (the learner and the worker dead-letter those)
=================  ==========================================================================

>>> t = RetentionTally()
>>> t.add_action({"holdout": False, "offers": ["a", "b"],
...               "policy": {"context": "x", "explored": True}})
>>> t.add_action({"holdout": True})
>>> t.add_outcome({"outcome": "stayed"}); t.add_error("action:bad_json")
>>> (t.actions, t.holdout, t.with_offers, t.policy, t.explored, t.outcomes, t.input_errors)
(2, 1, 1, 1, 1, {'stayed': 1}, {'action:bad_json': 1})
>>> RetentionTally.from_json(t.to_json()) == t
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_REASONS = 50  # distinct error reasons kept (labels of a metric stay bounded)


@dataclass
class RetentionTally:
    """Counts of the retention process (see the module docstring)."""

    actions: int = 0
    holdout: int = 0
    with_offers: int = 0
    policy: int = 0
    explored: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    input_errors: dict[str, int] = field(default_factory=dict)

    def add_action(self, rec: Mapping[str, Any]) -> None:
        """A new (not duplicate) action record."""
        self.actions += 1
        self.holdout += rec.get("holdout") is True
        offers = rec.get("offers")
        self.with_offers += isinstance(offers, list) and bool(offers)
        policy = rec.get("policy")
        if isinstance(policy, Mapping):
            self.policy += 1
            self.explored += policy.get("explored") is True

    def add_outcome(self, wire: Mapping[str, Any]) -> None:
        """A resolved outcome (its wire record)."""
        kind = "churned" if wire.get("outcome") == "churned" else "stayed"
        self.outcomes[kind] = self.outcomes.get(kind, 0) + 1

    def add_error(self, reason: str) -> None:
        """A refused input; reasons beyond :data:`MAX_REASONS` count as ``other``.

        >>> t = RetentionTally()
        >>> for i in range(MAX_REASONS + 2): t.add_error(f"r{i}")
        >>> len(t.input_errors), t.input_errors["other"]
        (51, 2)
        """
        if reason not in self.input_errors and len(self.input_errors) >= MAX_REASONS:
            reason = "other"
        self.input_errors[reason] = self.input_errors.get(reason, 0) + 1

    @property
    def joined(self) -> int:
        """Outcomes resolved so far."""
        return sum(self.outcomes.values())

    def to_json(self) -> dict[str, Any]:
        return {"actions": self.actions, "holdout": self.holdout,
                "with_offers": self.with_offers, "policy": self.policy,
                "explored": self.explored, "outcomes": dict(self.outcomes),
                "input_errors": dict(self.input_errors)}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any] | None) -> RetentionTally:
        """The tally of a checkpoint (None, from a checkpoint older than the tally: zeros)."""
        if not obj:
            return cls()
        return cls(int(obj.get("actions", 0)), int(obj.get("holdout", 0)),
                   int(obj.get("with_offers", 0)), int(obj.get("policy", 0)),
                   int(obj.get("explored", 0)),
                   {str(k): int(v) for k, v in (obj.get("outcomes") or {}).items()},
                   {str(k): int(v) for k, v in (obj.get("input_errors") or {}).items()})
