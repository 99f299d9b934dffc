"""CPU per learner step of the calibration refit (issue 10): full evidence window, four models.

Every learner step re-scores the evidence window (the last 10,000 resolved rows) with each
model about to be published and refits its calibration and tail cap
(``online_models/calibration_window.py``). This measures a live-sized step (40 resolutions)
with the default champion and challengers, with the refit and with the evidence of before
(each pair scored once, by the model before its batch), and the pickled size of the window::

    python bench/bench_calibration_step.py [--features 44] [--steps 100]
"""

from __future__ import annotations

import argparse
import os
import pickle
import random
import time
from typing import Any

import numpy as np

import online_models.learner as learner_module
from online_models import calibration_window
from online_models.calibration import sigmoid
from online_models.learner import Learner
from online_models.observations import Observation, Resolution

DAY = 86400.0


def history(n: int, features: int, seed: int) -> list[Resolution]:
    """Daily snapshots (ten per customer, one outcome each), features as half floats (as
    the observation store keeps them)."""
    rnd = random.Random(seed)
    out = []
    for c in range(n // 10):
        base = [rnd.gauss(0, 1) for _ in range(features)]
        y = rnd.random() < sigmoid(1.4 * base[0] - 0.6 * base[1] - 3.0)
        for d in range(10):
            x = {f"f{j}": float(np.float16(v + rnd.gauss(0, 0.3))) for j, v in enumerate(base)}
            out.append(Resolution(Observation(f"c{c}", (c // 20 + d) * DAY, x, 0.2,
                                              "1-logreg"), y))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=44)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--per-step", type=int, default=40)
    args = parser.parse_args()
    calibration_window.RESCORE = True  # off by default: measured here
    rows = history(12_000 + args.steps * args.per_step, args.features, seed=5)
    warm = Learner.create(challengers=("logreg_robust", "bayes", "svm"))
    for i in range(0, 12_000, 500):
        warm.learn_batch(rows[i:i + 500])
    state = pickle.dumps(warm)
    refit = learner_module.refit_calibration

    def run(with_refit: bool) -> float:
        learner = pickle.loads(state)
        off: Any = lambda *a, **k: False  # noqa: E731
        learner_module.refit_calibration = refit if with_refit else off
        t0 = time.process_time()
        for k in range(args.steps):
            at = 12_000 + k * args.per_step
            learner.learn_batch(rows[at:at + args.per_step])
        learner_module.refit_calibration = refit
        return (time.process_time() - t0) / args.steps

    with_ms, without_ms = 1000 * run(True), 1000 * run(False)
    t0 = time.process_time()
    for _ in range(20):
        pickle.dumps(warm, protocol=pickle.HIGHEST_PROTOCOL)
    dump_ms = 1000 * (time.process_time() - t0) / 20
    print(f"{args.features} features, window {len(warm.evidence):,} rows, 4 models, "
          f"{args.per_step} resolutions a step: {with_ms:.1f} ms CPU a step with the refit, "
          f"{without_ms:.1f} ms with the evidence of before: the refit costs "
          f"{with_ms - without_ms:.1f} ms; pickled window {len(pickle.dumps(warm.evidence)):,} B "
          f"of a {len(state):,} B learner state (pickled in {dump_ms:.1f} ms CPU); load average "
          f"{os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
