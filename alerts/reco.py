"""Offer recommendations by collaborative filtering, with a popularity fallback (pure).

Customers' answers to offers (``offer_accepted`` → 1, ``offer_declined`` → 0; see
``docs/retention.md``) train a biased matrix factorisation (``river.reco.BiasedMF``): a
customer's score for an offer is ``global mean + customer bias + offer bias + <customer factors,
offer factors>``, so customers who accepted the same offers share tastes, and an offer the
customer never saw is scored from people like them. A customer with fewer than
``min_history`` answers (a cold start) gets the offers ranked by *popularity*: the acceptance
rate over everyone (Beta(1, 1)-smoothed). The alert carries the top offers
(:meth:`OfferRecommender.top`).

>>> r = OfferRecommender(("a", "b", "c"), min_history=2, seed=1)
>>> for i in range(40):
...     r.learn(f"u{i}", "a", True); r.learn(f"u{i}", "b", i % 4 == 0)
...     r.learn(f"u{i}", "c", i % 8 == 0)
>>> [o.offer for o in r.top("newcomer", 2)], r.top("newcomer", 1)[0].source
(['a', 'b'], 'popularity')
>>> r.top("u3", 1)[0].source
'cf'
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from river import optim, reco

MAX_OFFERS = 200  # live catalogue size: answers about offers beyond it are not learned


@dataclass(frozen=True, slots=True)
class Offer:
    offer: str
    score: float
    source: str  # "cf" or "popularity"

    def to_wire(self) -> dict[str, Any]:
        return {"offer": self.offer, "score": round(self.score, 4), "source": self.source}


def biased_mf(seed: int = 0, n_factors: int = 8) -> reco.BiasedMF:
    """The factorisation with the learning rates the hit-rate bench was measured with."""
    return reco.BiasedMF(
        n_factors=n_factors,
        bias_optimizer=optim.SGD(0.02),
        latent_optimizer=optim.SGD(0.05),
        l2_bias=0.001,
        l2_latent=0.001,
        weight_initializer=optim.initializers.Zeros(),
        latent_initializer=optim.initializers.Normal(mu=0.0, sigma=0.1, seed=seed),
        seed=seed,
    )


@dataclass
class OfferRecommender:
    """The catalogue, the factorisation, the popularity counts and each customer's history."""

    offers: tuple[str, ...]
    min_history: int = 3
    seed: int = 0
    n_factors: int = 8
    model: reco.BiasedMF | None = None
    accepted: dict[str, int] = field(default_factory=dict)
    presented: dict[str, int] = field(default_factory=dict)
    answers: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.offers:
            raise ValueError("the offer catalogue is empty")
        if self.model is None:
            self.model = biased_mf(self.seed, self.n_factors)

    def add_offer(self, offer: str, max_offers: int = MAX_OFFERS) -> bool:
        """Grow the catalogue by an offer first seen in the answers (live: the catalogue is
        what customers are offered); False when the catalogue is full (``max_offers``).

        >>> r = OfferRecommender(("a",)); r.add_offer("b"), r.add_offer("b"), r.offers
        (True, True, ('a', 'b'))
        >>> r.add_offer("c", max_offers=2)
        False
        """
        if offer in self.offers:
            return True
        if len(self.offers) >= max_offers:
            return False
        self.offers = (*self.offers, offer)
        return True

    def learn(self, customer_id: str, offer: str, accepted: bool) -> None:
        """One answer of a customer to an offer."""
        assert self.model is not None
        self.model.learn_one(customer_id, offer, 1.0 if accepted else 0.0)
        self.presented[offer] = self.presented.get(offer, 0) + 1
        if accepted:
            self.accepted[offer] = self.accepted.get(offer, 0) + 1
        self.answers[customer_id] = self.answers.get(customer_id, 0) + 1

    def learn_many(self, answers: Iterable[tuple[str, str, bool]], epochs: int = 1) -> None:
        """Learn a history; more ``epochs`` pass it again through the factorisation only
        (counts once). The bench's hit-rate figures use 3."""
        items = list(answers)
        for customer_id, offer, accepted in items:
            self.learn(customer_id, offer, accepted)
        assert self.model is not None
        for _ in range(epochs - 1):
            for customer_id, offer, accepted in items:
                self.model.learn_one(customer_id, offer, 1.0 if accepted else 0.0)

    def popularity(self, offer: str) -> float:
        return (self.accepted.get(offer, 0) + 1) / (self.presented.get(offer, 0) + 2)

    def top(self, customer_id: str, k: int = 3, exclude: Sequence[str] = ()) -> list[Offer]:
        """The ``k`` best offers for the customer (CF when warm, popularity when cold)."""
        assert self.model is not None
        candidates = [o for o in self.offers if o not in exclude]
        if self.answers.get(customer_id, 0) >= self.min_history:
            scored = [Offer(o, float(self.model.predict_one(customer_id, o)), "cf")
                      for o in candidates]
        else:
            scored = [Offer(o, self.popularity(o), "popularity") for o in candidates]
        scored.sort(key=lambda x: (-x.score, self.offers.index(x.offer)))
        return scored[:k]

    def to_bytes(self) -> bytes:
        """Checkpoint (pickle: River models round-trip; store the River version beside it)."""
        return pickle.dumps(self)

    @staticmethod
    def from_bytes(data: bytes) -> OfferRecommender:
        obj = pickle.loads(data)  # noqa: S301 - our own signed checkpoint, never user input
        if not isinstance(obj, OfferRecommender):
            raise TypeError("not an OfferRecommender checkpoint")
        return obj


def hit_rate(recommend: Any, held_out: Iterable[tuple[str, str]], k: int = 3) -> float:
    """Share of held-out accepted ``(customer, offer)`` pairs whose offer is in the top ``k``
    of ``recommend(customer, k)`` (a list of offer names).

    >>> hit_rate(lambda c, k: ["a", "b", "c"][:k], [("u", "a"), ("u", "c")], k=2)
    0.5
    """
    pairs = list(held_out)
    if not pairs:
        return float("nan")
    return sum(1 for c, o in pairs if o in recommend(c, k)) / len(pairs)


def attach_offers(alert: dict[str, Any], recommender: OfferRecommender, k: int = 3) -> None:
    """Put the customer's top ``k`` offers on an alert record (``"offers"``: offer, score,
    source), so the team that acts sees what to propose.

    >>> r = OfferRecommender(("a", "b"))
    >>> alert = {"customer_id": "c-1"}
    >>> attach_offers(alert, r, 1); alert["offers"]
    [{'offer': 'a', 'score': 0.5, 'source': 'popularity'}]
    """
    alert["offers"] = [o.to_wire() for o in recommender.top(str(alert["customer_id"]), k)]
