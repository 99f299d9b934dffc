"""The default challenger grid and named learner configurations for comparisons.

Self-tuning through the registry: the learner runs a small grid of challengers in shadow and
the promotion rule (paired, statistically careful, :mod:`online_models.learner`) lets the
delayed outcomes pick. The grid covers alternatives to the default champion (the mean of the
SGD ``logreg`` and the second-order ``bayes``, :mod:`online_models.ensemble`): the robust
transform with AdaGrad, and a linear SVM. Not its own members: promoting one drops the other,
and on the issue-11 histories ``bayes`` as a challenger was promoted in 6 of 15 runs (on its
lower log loss) and cost one run where the mean beat the batch refit (docs/learning.md). Each
challenger adds ~30-70 µs of learner CPU per resolution. Trees and forests
(``hat``, ``arf``) are opt-in: even trained on a sample, a horizon of frozen copies of a
Hoeffding tree made the learner state 56 MB (pickled at every step).

:func:`config_learner` builds a one-model learner from a spec ``name[:option...]`` for offline
comparisons (``bench/learning_stream.py``): options ``u`` (no class weights; ``bayes`` and
``ensemble`` are unweighted anyway, as in :meth:`online_models.learner.Learner.create`),
``lr=<float>`` and ``l2=<float>``.
"""

from __future__ import annotations

from online_models.learner import Learner, ModelSlot
from online_models.model import make_model, model_config
from online_models.served import CalibratedModel

DEFAULT_CHALLENGERS: tuple[str, ...] = ("logreg_robust", "svm")


def config_learner(spec: str, learning_rate: float = 0.001, l2: float = 0.0) -> Learner:
    """A learner whose champion is ``spec`` (see the module docstring), no challengers.

    >>> learner = config_learner("logreg:u:lr=0.01")
    >>> learner.champion.name, learner.champion.balanced
    ('logreg:u:lr=0.01', False)
    """
    name, *options = spec.split(":")
    config = model_config(name)
    balanced = config.balanced  # as Learner.create has it (bayes, ensemble: unweighted)
    for option in options:
        if option == "u":
            balanced = False
        elif option.startswith("lr="):
            learning_rate = float(option[3:])
        elif option.startswith("l2="):
            l2 = float(option[3:])
        else:
            raise ValueError(f"unknown option {option!r} in {spec!r}")
    model = make_model(name, learning_rate=learning_rate, l2=l2)  # type: ignore[arg-type]
    return Learner(ModelSlot(spec, CalibratedModel(model), sample=config.sample,
                             balanced=balanced))
