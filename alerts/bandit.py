"""Next-best action that learns: a contextual Beta-Bernoulli bandit over a row's actions (pure).

The routing row (:mod:`alerts.routing`) names the action the static table takes and the
alternatives its team may take instead (``route.allowed``). This policy chooses among them per
*context* (by default the customer's segment and driver category) from the resolved outcomes
of earlier actions (:mod:`alerts.outcomes`): reward 1 when the customer stayed through the
horizon, 0 when they churned.

* **Greedy by evidence.** The choice is the allowed action with the highest posterior mean
  stay rate (Beta(1 + stayed, 1 + churned)) — but an alternative replaces the table's action
  only once it has ``min_pulls`` outcomes in that context and beats the table's action; with no
  evidence the policy *is* the static table.
* **Bounded exploration.** With probability ``explore`` a decision is instead a Thompson draw
  among the allowed actions; no other decision departs from the greedy choice.
* **Deterministic per episode.** The random numbers of a decision come from
  ``blake2b(salt, episode id)``, not from a process-wide generator: a replay that applies the
  same outcomes in the same (event-time) order decides exactly the same.
* **The holdout is untouched.** The caller asks the policy for holdout customers too (the
  action they *would* get is recorded) but nothing is done for them, and their outcomes are not
  rewards (:meth:`BanditState.learn` is only called for actioned customers).

River's ``bandit`` policies draw from one generator per policy object, which a replay cannot
reproduce per episode; the Beta-Bernoulli posterior here is the same model as
``river.bandit.ThompsonSampling`` with a ``Beta`` prior, kept as plain counts so it serialises
to JSON.

>>> s = BanditState()
>>> p = BanditParams(explore=0.0, min_pulls=5)
>>> allowed = ("email", "call")
>>> choose(s, "steady|engagement", allowed, "c-1:0", p).action   # no evidence: the table
'email'
>>> for i in range(20):
...     s.learn("steady|engagement", "email", stayed=i % 2 == 0)
...     s.learn("steady|engagement", "call", stayed=i % 5 != 0)
>>> d = choose(s, "steady|engagement", allowed, "c-1:0", p)
>>> d.action, d.explored, round(d.means["call"], 2)
('call', False, 0.77)
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class BanditParams:
    """How the learning policy decides (``CHURN_RETENTION__…`` settings)."""

    explore: float = 0.1
    min_pulls: int = 30
    salt: str = ""
    context: tuple[str, ...] = ("segment", "driver_category")

    def __post_init__(self) -> None:
        if not 0.0 <= self.explore <= 1.0:
            raise ValueError(f"explore {self.explore} must be within [0, 1]")
        if self.min_pulls < 0:
            raise ValueError("min_pulls must be >= 0")


@dataclass(frozen=True, slots=True)
class Choice:
    """One decision: the action, whether it was an exploration draw, and the evidence."""

    action: str
    table_action: str
    explored: bool
    means: Mapping[str, float]

    def to_wire(self) -> dict[str, Any]:
        return {"action": self.action, "table_action": self.table_action,
                "explored": self.explored,
                "means": {a: round(m, 4) for a, m in self.means.items()}}


@dataclass
class BanditState:
    """Outcome counts per (context, action): ``[stayed, churned]``."""

    counts: dict[str, list[int]] = field(default_factory=dict)

    @staticmethod
    def key(context: str, action: str) -> str:
        return f"{context}\x1f{action}"

    def stats(self, context: str, action: str) -> tuple[int, int]:
        got = self.counts.get(self.key(context, action))
        return (got[0], got[1]) if got else (0, 0)

    def learn(self, context: str, action: str, stayed: bool) -> None:
        """Add one resolved outcome (call once per outcome: :mod:`alerts.outcomes` ids)."""
        got = self.counts.setdefault(self.key(context, action), [0, 0])
        got[0 if stayed else 1] += 1

    def to_json(self) -> dict[str, Any]:
        return {"counts": {k: list(v) for k, v in sorted(self.counts.items())}}

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> BanditState:
        """
        >>> s = BanditState(); s.learn("a", "x", True)
        >>> BanditState.from_json(s.to_json()).stats("a", "x")
        (1, 0)
        """
        return BanditState({str(k): [int(v[0]), int(v[1])]
                            for k, v in dict(obj.get("counts", {})).items()})


def context_of(fields: Mapping[str, Any], params: BanditParams) -> str:
    """The context key of a customer from an alert's fields.

    >>> context_of({"segment": "power users", "driver_category": "billing"}, BanditParams())
    'power users|billing'
    """
    return "|".join(str(fields.get(name, "")) for name in params.context)


def episode_rng(episode_id: str, salt: str = "") -> random.Random:
    """The random numbers of one episode's decisions (same id, same numbers)."""
    digest = hashlib.blake2b(f"{salt}\x00{episode_id}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def choose(state: BanditState, context: str, allowed: Sequence[str], episode_id: str,
           params: BanditParams) -> Choice:
    """The action for one alert (see the module docstring); ``allowed[0]`` is the table's."""
    if not allowed:
        raise ValueError("no allowed action")
    table = allowed[0]
    stats = {a: state.stats(context, a) for a in allowed}
    means = {a: (1 + s) / (2 + s + c) for a, (s, c) in stats.items()}
    greedy = table
    for a in allowed[1:]:
        s, c = stats[a]
        if s + c >= params.min_pulls and means[a] > means[greedy]:
            greedy = a
    rng = episode_rng(episode_id, params.salt)
    if len(allowed) > 1 and rng.random() < params.explore:
        draws = {a: rng.betavariate(1 + s, 1 + c) for a, (s, c) in stats.items()}
        pick = max(allowed, key=lambda a: draws[a])
        return Choice(pick, table, pick != greedy, means)
    return Choice(greedy, table, False, means)
