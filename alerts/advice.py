"""What the alerter adds from the live retention state: the top offers and, when the learning
policy is on, its choice of action (pure; ``docs/retention.md``, "What runs live").

The retention process (``churnpulse retention``) learns the offer recommender from offer
answers and the bandit's counts from resolved outcomes, and publishes both; the alerter holds
the newest published :class:`Advice` and :func:`advise` applies it to each alert as it is made:

* ``offers``: the customer's top ``k`` offers (:func:`alerts.reco.attach_offers`; popularity
  for customers with few answers), with ``advice_version``;
* with ``params`` set (the learning policy is on): ``recommended_action`` becomes the policy's
  choice among the routing row's allowed actions (:func:`alerts.bandit.choose`, deterministic
  per episode id), and ``policy`` records the context, the table's action, whether it was an
  exploration draw and the evidence. Holdout customers get the same would-be choice recorded
  and nothing done (:func:`alerts.contracts.action_record`).

>>> from alerts.bandit import BanditParams, BanditState
>>> from alerts.reco import OfferRecommender
>>> from alerts.routing import RoutingTable
>>> route = RoutingTable.default().route("engagement", "medium", "low")
>>> alert = {"customer_id": "c-1", "episode_id": "c-1:0", "segment": "fading",
...          "driver_category": "engagement", "recommended_action": route.action}
>>> advise(alert, route, Advice("7", OfferRecommender(("a", "b")), BanditState(),
...                             BanditParams(explore=0.0)))
>>> alert["recommended_action"], alert["policy"]["context"], [o["offer"] for o in alert["offers"]]
('re-engagement email', 'fading|engagement', ['a', 'b'])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from alerts.bandit import BanditParams, BanditState, choose, context_of
from alerts.reco import OfferRecommender, attach_offers
from alerts.routing import Route


@dataclass(frozen=True)
class Advice:
    """One published retention state as the alerter uses it (``version`` names it)."""

    version: str
    recommender: OfferRecommender | None = None  # None: no offer answer seen yet
    bandit: BanditState | None = None
    params: BanditParams | None = None  # None: the static table decides (policy off)
    k: int = 3


def advise(alert: dict[str, Any], route: Route, advice: Advice) -> None:
    """Add the offers and the policy's choice to an alert record (in place)."""
    if advice.params is not None:
        state = advice.bandit if advice.bandit is not None else BanditState()
        context = context_of(alert, advice.params)
        choice = choose(state, context, route.allowed, str(alert["episode_id"]),
                        advice.params)
        alert["recommended_action"] = choice.action
        alert["policy"] = {**choice.to_wire(), "context": context, "version": advice.version}
    if advice.recommender is not None:
        attach_offers(alert, advice.recommender, advice.k)
        alert["advice_version"] = advice.version


def action_extras(alert: Mapping[str, Any]) -> dict[str, Any]:
    """The fields an action record carries beside :func:`alerts.contracts.action_record`'s:
    the segment (for the uplift breakdown), the offers proposed and the policy's context (the
    retention process learns the outcome under it).

    >>> action_extras({"segment": "fading", "offers": [{"offer": "a", "score": 0.5,
    ...                "source": "popularity"}]})
    {'segment': 'fading', 'offers': ['a']}
    """
    out: dict[str, Any] = {"segment": str(alert.get("segment") or "")}
    if alert.get("offers"):
        out["offers"] = [str(o["offer"]) for o in alert["offers"]]
    policy = alert.get("policy")
    if isinstance(policy, Mapping):
        out["policy"] = {k: policy[k] for k in ("context", "table_action", "explored", "version")
                         if k in policy}
    return out
