"""The live retention loop's state and steps: outcomes joined, rewards learned, offers (pure).

The retention process (:mod:`streams.retention.service`) feeds it the three inputs it reads
from Kafka, in any interleaving:

* an action record (``retention-actions``): :meth:`RetentionLoop.on_action` tracks it in the
  :class:`~alerts.outcomes.OutcomeJoiner` (an id seen again adds nothing);
* a churn label (``churn-labels``): :meth:`RetentionLoop.on_label` resolves what it can;
* an offer answer (``offer_accepted`` / ``offer_declined`` customer events):
  :meth:`RetentionLoop.on_offer` teaches the recommender, and an accepted offer is attached to
  the customer's outcomes.

Every resolved outcome of an *actioned* customer is a reward for the learning policy
(:class:`~alerts.bandit.BanditState`, stayed = 1) under the context the alert recorded (or the
one its fields give); holdout outcomes are not rewards. The state is plain data plus the
recommender (:meth:`to_json`; the process checkpoints it with the offsets it covers), so a
restart from a checkpoint learns every outcome once.

>>> loop = RetentionLoop(horizon_s=100.0)
>>> rec = {"action_id": "c-1:0:high", "customer_id": "c-1", "ts": "2026-03-01T00:00:00Z",
...        "action": "email", "holdout": False, "segment": "fading",
...        "driver_category": "engagement", "severity": "high"}
>>> loop.on_action(rec), loop.on_action(rec), loop.counts.duplicate_actions
([], [], 1)
>>> [o.outcome_id for o in loop.on_label("c-1", parse_ts("2026-03-01T00:01:00Z"), True)]
['c-1:0:high:outcome']
>>> loop.bandit.stats("fading|engagement", "email")
(0, 1)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from alerts.bandit import BanditParams, BanditState, context_of
from alerts.contracts import BadScore, parse_ts
from alerts.outcomes import Action, ActionOutcome, OutcomeJoiner
from alerts.reco import OfferRecommender


class BadAction(ValueError):
    """An action record that breaks the contract (``code`` goes to the dead-letter headers)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def action_of(rec: Mapping[str, Any], params: BanditParams) -> Action:
    """The :class:`~alerts.outcomes.Action` of a ``retention-actions`` record.

    ``action`` is what was done, for the holdout the action it *would* have got (the
    record's ``recommended_action``); ``context`` the policy's context (recorded, else from the
    record's fields).
    """
    try:
        action_id, customer_id = str(rec["action_id"]), str(rec["customer_id"])
        holdout = rec["holdout"]
        ts = parse_ts(rec["ts"])
    except KeyError as exc:
        raise BadAction("missing_field", f"{exc.args[0]} is required") from None
    except BadScore as exc:
        raise BadAction("bad_timestamp", exc.detail) from None
    if not isinstance(holdout, bool):
        raise BadAction("bad_field", "holdout must be true or false")
    if not action_id or not customer_id:
        raise BadAction("bad_field", "action_id and customer_id must be non-empty")
    done = str(rec.get("recommended_action") if holdout else rec.get("action") or "")
    policy = rec.get("policy")
    context = (str(policy["context"]) if isinstance(policy, Mapping) and "context" in policy
               else context_of(rec, params))
    offers = rec.get("offers")
    return Action(action_id, customer_id, ts, done, holdout, str(rec.get("segment") or ""),
                  str(rec.get("driver_category") or ""), str(rec.get("severity") or ""),
                  context, tuple(str(o) for o in offers) if isinstance(offers, list) else ())


@dataclass
class LoopCounts:
    actions: int = 0
    duplicate_actions: int = 0
    labels: int = 0
    offer_answers: int = 0
    offers_refused: int = 0  # answers about offers beyond the catalogue's size
    outcomes: int = 0
    rewards: int = 0

    def to_json(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass
class RetentionLoop:
    """Joiner, bandit counts, recommender (see the module docstring)."""

    horizon_s: float
    params: BanditParams = field(default_factory=BanditParams)
    joiner: OutcomeJoiner | None = None
    bandit: BanditState = field(default_factory=BanditState)
    recommender: OfferRecommender | None = None
    counts: LoopCounts = field(default_factory=LoopCounts)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.joiner is None:
            self.joiner = OutcomeJoiner(self.horizon_s)

    def on_action(self, rec: Mapping[str, Any]) -> list[ActionOutcome]:
        """Track an action record (an id seen before adds nothing); the outcomes it resolves
        at once (its churn label was read first). Raises :class:`BadAction` for a malformed
        record."""
        assert self.joiner is not None
        if not self.joiner.add_action(action_of(rec, self.params)):
            self.counts.duplicate_actions += 1
            return []
        self.counts.actions += 1
        return self._learn(self.joiner.advance(self.joiner.clock))

    def on_label(self, customer_id: str, ts: float, churned: bool) -> list[ActionOutcome]:
        """A churn label: the outcomes it resolves (rewards learned already)."""
        assert self.joiner is not None
        self.counts.labels += 1
        return self._learn(self.joiner.add_label(customer_id, ts, churned))

    def on_offer(self, customer_id: str, ts: float, offer: str, answer: str,
                 join: bool = True) -> bool:
        """An offer event (answer ``accepted``, ``declined`` or ``presented``); False when the
        offer is beyond the catalogue's size and was not learned. ``join=False``: for the
        recommender only (an event the joiner has seen, re-read because the recommender's
        checkpoint is older than the joiner's)."""
        if answer not in ("accepted", "declined"):
            return True
        if self.recommender is None:
            self.recommender = OfferRecommender((offer,), seed=self.seed)
        if not self.recommender.add_offer(offer):  # beyond reco.MAX_OFFERS: not learned
            self.counts.offers_refused += 1
            return False
        accepted = answer == "accepted"
        self.recommender.learn(customer_id, offer, accepted)
        self.counts.offer_answers += join
        if accepted and join:
            assert self.joiner is not None
            self.joiner.add_offer(customer_id, ts, offer)
        return True

    def _learn(self, outcomes: list[ActionOutcome]) -> list[ActionOutcome]:
        self.counts.outcomes += len(outcomes)
        for o in outcomes:
            if not o.action.holdout and o.action.action:
                self.bandit.learn(o.action.context, o.action.action, o.stayed)
                self.counts.rewards += 1
        return outcomes

    def prune(self, keep_s: float | None = None) -> int:
        """Forget labels, accepted offers and resolved ids older than ``keep_s`` (default two
        horizons) before the labels' clock (:meth:`alerts.outcomes.OutcomeJoiner.prune`)."""
        assert self.joiner is not None
        return self.joiner.prune(2 * self.horizon_s if keep_s is None else keep_s)

    def to_json(self) -> dict[str, Any]:
        """Everything but the recommender (checkpointed beside it)."""
        assert self.joiner is not None
        return {"horizon_s": self.horizon_s, "joiner": self.joiner.to_json(),
                "bandit": self.bandit.to_json(), "counts": self.counts.to_json(),
                "seed": self.seed}

    @staticmethod
    def from_json(obj: Mapping[str, Any], params: BanditParams,
                  recommender: OfferRecommender | None) -> RetentionLoop:
        """
        >>> loop = RetentionLoop(10.0); loop.bandit.learn("x", "a", True)
        >>> back = RetentionLoop.from_json(loop.to_json(), BanditParams(), None)
        >>> back.bandit.stats("x", "a"), back.horizon_s
        ((1, 0), 10.0)
        """
        return RetentionLoop(float(obj["horizon_s"]), params,
                             OutcomeJoiner.from_json(obj["joiner"]),
                             BanditState.from_json(obj["bandit"]), recommender,
                             LoopCounts(**{k: int(v) for k, v in obj["counts"].items()}),
                             int(obj.get("seed", 0)))
