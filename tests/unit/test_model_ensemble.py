"""The ensemble model (online_models/ensemble.py): mean log-odds of logreg and tempered bayes."""

from __future__ import annotations

import copy
import math
import pickle
import random
from collections.abc import Hashable
from typing import Any, cast

from online_models.calibration import logit
from online_models.calibration_window import log_odds_of
from online_models.ensemble import MeanLogOdds, class_weight
from online_models.learner import Learner, balanced_weight
from online_models.linear_batch import Rows
from online_models.model import ModelHandle, dump_checkpoint, load_checkpoint, make_model
from online_models.observations import Observation, Resolution


def _rows(n: int, seed: int) -> list[tuple[dict[str, float], bool]]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rnd.gauss(0, 1), rnd.expovariate(0.1)
        x = {"a": a, "tenure_days": b, "log_count_30d": math.log1p(rnd.randrange(20))}
        if rnd.random() < 0.3:
            x["log_count_30d.login"] = math.log1p(rnd.randrange(10))
        out.append((x, rnd.random() < 1 / (1 + math.exp(-(1.5 * a - 3.0)))))
    return out


def _resolutions(rows: list[tuple[dict[str, float], bool]], start: int
                 ) -> list[Resolution]:
    return [Resolution(Observation(f"c{start + i}", float(start + i), x, 0.5, "1-ensemble"), y)
            for i, (x, y) in enumerate(rows)]


def test_class_weight_is_the_learners() -> None:
    for pos, total in ((0, 0), (1, 1), (3, 100), (1, 10_000), (60, 100)):
        for y in (True, False):
            assert class_weight(y, pos, total) == balanced_weight(y, pos, total)


def test_learner_batches_learn_what_one_by_one_learns() -> None:
    """The learner's batched path (members stepped by matrix) gives the model that
    ``learn_one`` row by row gives: logreg with the learner's class weights, bayes unweighted,
    and the served log-odds are the mean of the members' prior-corrected log-odds."""
    rows = _rows(1200, 1)
    learner = Learner.create("ensemble", learning_rate=0.01)
    assert not learner.champion.balanced
    for start in range(0, len(rows), 150):
        learner.learn_batch(_resolutions(rows[start:start + 150], start))
    alone = MeanLogOdds(make_model("logreg", learning_rate=0.01), make_model("bayes"))
    lr: Any = make_model("logreg", learning_rate=0.01)
    bayes = make_model("bayes")
    positives = 0
    for n, (x, y) in enumerate(rows, 1):
        xs = cast(dict[Hashable, Any], x)
        alone.learn_one(xs, y)
        positives += int(y)
        lr.learn_one(xs, y, w=balanced_weight(y, positives, n))
        bayes.learn_one(xs, y)
    raw = learner.champion.model.raw
    assert isinstance(raw, MeanLogOdds)
    shift = -math.log(balanced_weight(True, positives, len(rows))
                      / balanced_weight(False, positives, len(rows)))
    assert abs(raw.shift - shift) < 1e-12
    test = [x for x, _ in _rows(200, 2)]
    for x in test:
        xs = cast(dict[Hashable, Any], x)
        want = 0.5 * (logit(lr.predict_proba_one(xs)[True]) + shift
                      + logit(bayes.predict_proba_one(xs)[True]))
        assert abs(raw.log_odds(x) - want) < 1e-9
        assert abs(alone.log_odds(x) - want) < 1e-9
    # batched scoring (shadow predictions, calibration evidence) = one by one
    batch = Rows(test)
    many = log_odds_of(learner.champion.model, batch, list(range(len(test))))
    for x, z in zip(test, many, strict=True):
        assert abs(z - learner.champion.model.log_odds(x)) < 1e-9


def test_it_ranks_and_is_served_calibrated() -> None:
    rows = _rows(3000, 3)
    learner = Learner.create("ensemble", learning_rate=0.01)
    for start in range(0, len(rows), 200):
        learner.learn_batch(_resolutions(rows[start:start + 200], start))
    test = _rows(2000, 4)
    ps = [learner.serve(x) for x, _ in test]
    pos = [p for p, (_, y) in zip(ps, test, strict=True) if y]
    neg = [p for p, (_, y) in zip(ps, test, strict=True) if not y]
    auc = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg) / (len(pos) * len(neg))
    assert auc > 0.8
    assert abs(sum(ps) / len(ps) - len(pos) / len(test)) < 0.03  # served as a probability
    assert learner.champion.model.calibrated


def test_versions_pickle_and_frozen_copies_stay_frozen() -> None:
    rows = _rows(400, 5)
    learner = Learner.create("ensemble")
    learner.learn_batch(_resolutions(rows[:200], 0))
    model = learner.champion.model
    frozen = copy.deepcopy(model)
    back: Any = load_checkpoint(dump_checkpoint(ModelHandle("3-ensemble", model))).model
    x = rows[0][0]
    assert back.proba(x) == model.proba(x)
    learner.learn_batch(_resolutions(rows[200:], 200))
    assert frozen.proba(x) == back.proba(x) != model.proba(x)
    assert pickle.loads(pickle.dumps(learner)).serve(x) == learner.serve(x)


def test_drivers_are_exact_for_the_mean() -> None:
    """The ensemble's contributions are the members' averaged per feature: two inputs' log-odds
    (every feature present) differ by exactly the difference of their contributions' sums."""
    from online_models.explain import LinearExplainer, MeanExplainer

    rows = _rows(600, 6)
    learner = Learner.create("ensemble")
    learner.learn_batch(_resolutions(rows, 0))
    model = learner.champion.model
    explainer = LinearExplainer.of(model)
    assert isinstance(explainer, MeanExplainer)
    raw = model.raw
    assert isinstance(raw, MeanLogOdds)
    x1, x2 = [x for x, _ in rows if "log_count_30d.login" in x][:2]  # every input present
    c1 = sum(c.contribution for c in explainer.top(x1, 99))
    c2 = sum(c.contribution for c in explainer.top(x2, 99))
    assert abs((raw.log_odds(x1) - raw.log_odds(x2)) - (c1 - c2)) < 1e-9
    top = explainer.drivers(x1, 3)
    assert len(top) == 3 and all(d["feature"] in x1 or d["feature"].startswith("share_")
                                 for d in top)


def test_offline_configs_weigh_models_as_the_learner_does() -> None:
    """bench/learning_stream.py's configs: bayes and the ensemble learn unweighted, as
    ``Learner.create`` (and so the live learner) has them; ``:u`` still unweights others."""
    from online_models.grid import config_learner

    for spec, balanced in (("ensemble", False), ("bayes", False), ("logreg", True),
                           ("logreg:u", False)):
        assert config_learner(spec).champion.balanced is balanced
        name = spec.split(":")[0]
        if ":" not in spec:
            assert Learner.create(name).champion.balanced is balanced


def test_batch_scores_and_drivers_are_the_row_by_row_ones() -> None:
    """The worker's batch path (online_models/ensemble_score.py) serves what the version's
    own ``predict_proba_one`` serves (within 1e-12) with the explainer's drivers."""
    from online_models.ensemble_score import MeanScorer
    from online_models.explain import LinearExplainer

    rows = _rows(900, 7)
    learner = Learner.create("ensemble")
    for start in range(0, len(rows), 300):
        learner.learn_batch(_resolutions(rows[start:start + 300], start))
    model = learner.champion.model
    scorer = MeanScorer.of(model)
    assert scorer is not None and MeanScorer.of(make_model("logreg")) is None
    explainer = LinearExplainer.of(model)
    assert explainer is not None
    xs = [x for x, _ in _rows(300, 8)]
    scores, drivers = scorer.score(xs, 5)
    for x, s, d in zip(xs, scores, drivers, strict=True):
        assert abs(s - model.proba(x)) < 1e-12
        want = explainer.drivers(x, 5)
        assert [e["feature"] for e in d] == [e["feature"] for e in want]
        assert all(abs(e["contribution"] - w["contribution"]) < 1e-12 and
                   e["value"] == w["value"] for e, w in zip(d, want, strict=True))
    again, _ = scorer.score(xs[::-1], 5)  # a row scores the same in any batch
    assert again[::-1] == scores


def test_the_worker_scores_an_ensemble_version_a_batch_at_once() -> None:
    from online_models.ensemble_score import MeanScorer
    from streams.worker.scoring import Scorers

    rows = _rows(500, 9)
    learner = Learner.create("ensemble")
    learner.learn_batch(_resolutions(rows, 0))
    model = learner.champion.model
    scorers = Scorers()
    xs = [x for x, _ in rows[:50]]
    scores, drivers = scorers.score(ModelHandle("2-ensemble", model), xs)
    assert isinstance(scorers._batch, MeanScorer)
    assert all(abs(s - model.proba(x)) < 1e-12 for s, x in zip(scores, xs, strict=True))
    assert all(len(d) >= 3 for d in drivers)  # a, tenure_days, log_count_30d (+ shares)
