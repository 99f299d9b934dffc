"""What a score predicts, and how delayed labels turn scored snapshots into training examples.

A score at event time ``t`` predicts "this customer churns within (t, t + H]" (H = ``horizon_s``).
At most one snapshot per customer per observation interval is kept — the very features that were
scored, the score and the model version — until it resolves:

* a churn label at ``T`` resolves every pending snapshot of that customer with
  ``T − H <= t < T`` as **positive** (snapshots taken at or after ``T`` are dropped: they were
  scored on a customer that had already churned, which the pipeline does not do on purpose);
* a snapshot whose horizon ``t + H`` has passed the watermark without a churn label resolves as
  **negative**;
* a snapshot is learned from exactly once; the learner never sees features from after ``t``
  (no leakage: the label decides ``y``, the snapshot decides ``x``);
* a snapshot is *learned* when its horizon has passed, whatever its outcome
  (:func:`churned_within` decides it then, from the churn times seen): learning positives as
  soon as their label arrives, up to H before the negatives of the same time, would teach the
  model that anything growing with time (tenure, days since an old event) means churn.

Everything here is pure: the stores and the learner process live in ``streams``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

DAY_S = 86400.0


@dataclass(frozen=True, slots=True)
class LabelPolicy:
    """Horizon and sampling of observations (see the module docstring)."""

    horizon_s: float = 30 * DAY_S
    interval_s: float = DAY_S

    def slot(self, t: float) -> int:
        """The observation interval ``t`` falls in; one snapshot per customer per slot.

        >>> LabelPolicy(interval_s=10.0).slot(25.0)
        2
        """
        return math.floor(t / self.interval_s)

    def due(self, obs: Observation) -> float:
        """Event time at which ``obs`` resolves negative if no churn arrived."""
        return obs.t + self.horizon_s


@dataclass(frozen=True, slots=True)
class Observation:
    """A scored snapshot waiting for its outcome."""

    customer_id: str
    t: float
    x: Mapping[str, float]
    score: float
    model_version: str
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def obs_id(self) -> str:
        """Deterministic id: one snapshot per customer and time.

        >>> Observation("c1", 86400.5, {}, 0.2, "v1").obs_id
        'c1@86400500'
        """
        return f"{self.customer_id}@{round(self.t * 1000)}"

    def to_json(self) -> dict[str, Any]:
        return {"customer_id": self.customer_id, "t": self.t, "x": dict(self.x),
                "score": self.score, "model_version": self.model_version,
                "extra": dict(self.extra)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Observation:
        return cls(str(data["customer_id"]), float(data["t"]),
                   {str(k): float(v) for k, v in data["x"].items()}, float(data["score"]),
                   str(data["model_version"]), dict(data.get("extra", {})))


@dataclass(frozen=True, slots=True)
class Resolution:
    """An observation with its outcome, ready to learn from."""

    observation: Observation
    churned: bool


def resolve_churn(pending: Iterable[Observation], churn_t: float,
                  policy: LabelPolicy) -> tuple[list[Resolution], list[Observation],
                                                list[Observation]]:
    """Apply a churn label at ``churn_t`` to one customer's pending snapshots.

    Returns ``(positives, untouched, dropped)``: snapshots inside ``[churn_t − H, churn_t)`` are
    positive; older ones are left for the horizon to resolve (their horizon ended before the
    churn, they are negative); snapshots at or after ``churn_t`` are dropped.

    >>> p = LabelPolicy(horizon_s=10.0, interval_s=1.0)
    >>> obs = [Observation("c", t, {}, 0.5, "v") for t in (1.0, 5.0, 12.0, 20.0)]
    >>> pos, keep, drop = resolve_churn(obs, 15.0, p)
    >>> [r.observation.t for r in pos], [o.t for o in keep], [o.t for o in drop]
    ([5.0, 12.0], [1.0], [20.0])
    """
    positives: list[Resolution] = []
    untouched: list[Observation] = []
    dropped: list[Observation] = []
    for obs in pending:
        if obs.t >= churn_t:
            dropped.append(obs)
        elif obs.t >= churn_t - policy.horizon_s:
            positives.append(Resolution(obs, True))
        else:
            untouched.append(obs)
    return positives, untouched, dropped


def expire(pending: Iterable[Observation], watermark: float,
           policy: LabelPolicy) -> tuple[list[Resolution], list[Observation]]:
    """Snapshots whose horizon passed the watermark resolve negative.

    >>> p = LabelPolicy(horizon_s=10.0)
    >>> neg, keep = expire([Observation("c", t, {}, 0.5, "v") for t in (1.0, 5.0)], 12.0, p)
    >>> [r.observation.t for r in neg], [o.t for o in keep]
    ([1.0], [5.0])
    """
    negatives: list[Resolution] = []
    waiting: list[Observation] = []
    for obs in pending:
        if policy.due(obs) <= watermark:
            negatives.append(Resolution(obs, False))
        else:
            waiting.append(obs)
    return negatives, waiting


def churned_within(obs: Observation, churn_times: Iterable[float], policy: LabelPolicy) -> bool:
    """Whether a churn time falls in the snapshot's horizon ``(t, t + H]``.

    >>> p = LabelPolicy(horizon_s=10.0)
    >>> o = Observation("c", 5.0, {}, 0.5, "v")
    >>> churned_within(o, [5.0], p), churned_within(o, [15.0], p), churned_within(o, [16.0], p)
    (False, True, False)
    """
    return any(obs.t < t <= obs.t + policy.horizon_s for t in churn_times)


def prune_churn_times(churn_times: dict[str, list[float]], watermark: float,
                      policy: LabelPolicy) -> None:
    """Forget churn times no pending snapshot can still need (at or before watermark − H).

    Every snapshot still pending after the watermark passed has ``t + H > watermark``.

    >>> times = {"a": [1.0, 50.0], "b": [2.0]}
    >>> prune_churn_times(times, 40.0, LabelPolicy(horizon_s=30.0))
    >>> times
    {'a': [50.0]}
    """
    floor = watermark - policy.horizon_s
    for cid in list(churn_times):
        kept = [t for t in churn_times[cid] if t > floor]
        if kept:
            churn_times[cid] = kept
        else:
            del churn_times[cid]
