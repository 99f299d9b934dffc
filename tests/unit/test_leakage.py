"""Leakage: information from after the scored time never reaches the model.

The history is built so that one feature is a perfect predictor *if* it is read from the
future. Every customer behaves identically (Poisson sessions, nothing else), and churn is
drawn at random, except that each churner opens the cancellation page (``cancel_page_view``)
a few hours before its churn label. With a 30-day horizon, a churner's positive snapshots
span the 30 days before the churn, so almost all of them were taken *before* that page view.

What the test proves, precisely:

1. Every snapshot the learner learned from carries the features of its scored instant: its
   ``cancel_page_view`` features are present exactly when such an event happened at or before
   the snapshot's time (checked snapshot by snapshot). The label decides ``y``; it never
   re-reads ``x``.
2. Consequently the leaky feature is (almost) useless to the model: over the learned
   snapshots, its ROC AUC for churn stays near chance (it only separates the few snapshots
   legitimately taken after the page view), whereas the same snapshots with features read at
   the churn label time — what a pipeline that joins labels to *current* features would learn
   from — make it a near-perfect predictor (AUC > 0.99; the control shows the test can fail).
3. The backtest's own evaluation uses only information available at scoring time: the AUC
   of the scores served before each churner's page view is at chance, as it must be, since
   behaviour before it carries no signal. A path that exploited post-scoring information
   would report far better than chance here.

It does not prove that nothing else leaks (e.g. a label published before its event time);
those are the label semantics tested in ``test_backtest.py``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import orjson
import pytest

from online_models.feature_vector import feature_vector
from online_models.features import replay
from online_models.observations import Resolution
from online_models.report_metrics import roc_auc
from streams.offline.backtest import Backtest, BacktestOptions
from streams.offline.history import load_history
from streams.settings import load_settings

DAY = 86400.0
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()
LEAK = "cancel_page_view"


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds")


def ms(t: float) -> float:
    """Event times as the wire carries them (milliseconds)."""
    return math.floor(t * 1000) / 1000


def build_history(out: Path, customers: int = 260, days: int = 120,
                  seed: int = 17) -> tuple[dict[str, float], dict[str, float],
                                           dict[str, list[tuple[str, float]]]]:
    """Write events/labels; return churn times, page-view times and every customer's events."""
    rng = np.random.default_rng(seed)
    events: list[tuple[float, dict[str, object]]] = []
    labels: list[dict[str, object]] = []
    churn_at: dict[str, float] = {}
    view_at: dict[str, float] = {}
    history: dict[str, list[tuple[str, float]]] = defaultdict(list)
    n = 0
    for c in range(customers):
        cid = f"c{c:04d}"
        end = START + days * DAY
        if rng.random() < 0.4:
            end = START + rng.uniform(40, days - 2) * DAY
            end = ms(end)
            churn_at[cid] = end
            view_at[cid] = ms(end - rng.uniform(2, 30) * 3600)
        t = ms(START + rng.uniform(0, DAY))
        while t < end:
            if cid in view_at and t >= view_at[cid]:
                break
            n += 1
            events.append((t, {"event_id": f"e{n}", "customer_id": cid,
                               "event_type": "session", "ts": iso(t)}))
            history[cid].append(("session", t))
            t = ms(t + rng.exponential(DAY / 3))
        if cid in view_at:
            n += 1
            events.append((view_at[cid], {"event_id": f"e{n}", "customer_id": cid,
                                          "event_type": LEAK, "ts": iso(view_at[cid])}))
            history[cid].append((LEAK, view_at[cid]))
            labels.append({"label_id": f"l-{cid}", "customer_id": cid,
                           "ts": iso(churn_at[cid]), "churned": True})
    events.sort(key=lambda te: te[0])
    (out / "events.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for _, e in events))
    (out / "labels.jsonl").write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in labels))
    return churn_at, view_at, history


def has_leak(x: dict[str, float]) -> bool:
    return any(LEAK in name for name in x)


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory) -> tuple[
        list[Resolution], dict[str, float], dict[str, float],
        dict[str, list[tuple[str, float]]], Backtest]:
    out = tmp_path_factory.mktemp("leak")
    churn_at, view_at, events = build_history(out)
    backtest = Backtest(load_settings(), BacktestOptions(baseline_rows=False))
    seen: list[Resolution] = []
    learn = backtest.loop.learner.learn_batch

    def recording(resolutions: list[Resolution], now: float | None = None) -> list[str]:
        seen.extend(resolutions)
        return learn(resolutions, now)

    backtest.loop.learner.learn_batch = recording  # type: ignore[method-assign]
    history = load_history(out / "events.jsonl", out / "labels.jsonl")
    asyncio.run(backtest.execute(history))
    return seen, churn_at, view_at, events, backtest


def test_every_learned_snapshot_has_the_features_of_its_scored_instant(learned) -> None:  # type: ignore[no-untyped-def]
    seen, _, view_at, _, _ = learned
    positives = [r for r in seen if r.churned]
    assert len(positives) > 1000 and len(seen) > 5000
    before = [r for r in positives if r.observation.t < view_at[r.observation.customer_id]]
    assert len(before) > 0.8 * len(positives)  # most positives predate the page view
    for r in seen:
        obs = r.observation
        viewed = obs.customer_id in view_at and view_at[obs.customer_id] <= obs.t
        assert has_leak(dict(obs.x)) == viewed, (obs.customer_id, obs.t)


def test_the_leaky_feature_stays_near_chance_unless_read_from_the_future(learned) -> None:  # type: ignore[no-untyped-def]
    seen, churn_at, _, events, backtest = learned
    y = [r.churned for r in seen]
    ours = [float(has_leak(dict(r.observation.x))) for r in seen]
    assert roc_auc(ours, y) < 0.56
    # control: the same snapshots with x read when the outcome became known (the leaky
    # join): at the churn label for positives, at the horizon's end for negatives
    spec, horizon = backtest.store.spec, backtest.policy.horizon_s
    cache: dict[tuple[str, float], bool] = {}

    def leaky_x_has_leak(cid: str, at: float) -> bool:
        if (cid, at) not in cache:
            state = replay([(k, ts, None) for k, ts in events[cid] if ts <= at], spec)
            cache[(cid, at)] = has_leak(feature_vector(state, at, spec))
        return cache[(cid, at)]

    leaky = []
    for r in seen:
        cid, t = r.observation.customer_id, r.observation.t
        if r.churned:
            leaky.append(float(leaky_x_has_leak(cid, churn_at[cid])))
        else:  # no page view before the horizon's end (else it would have churned inside)
            leaky.append(float(any(k == LEAK and ts <= t + horizon for k, ts in events[cid])))
    assert roc_auc(leaky, y) > 0.99


def test_scores_served_before_the_page_view_are_at_chance(learned) -> None:  # type: ignore[no-untyped-def]
    seen, _, view_at, _, backtest = learned
    rows = [(r.observation.score, r.churned) for r in seen
            if r.observation.customer_id not in view_at
            or r.observation.t < view_at[r.observation.customer_id]]
    trained = [(p, y) for p, y in rows if p != 0.5]  # leave out the untrained start
    auc = roc_auc([p for p, _ in trained], [y for _, y in trained])
    assert abs(auc - 0.5) < 0.06, auc
    assert backtest.run.version > 10  # the model did learn and was re-published all along
