"""What the dashboard shows about calibration: can a person trust "risk 23 %"?

Read from the learner's status (the JSON the learner writes with every checkpoint, the one
``churnpulse model status`` prints): the *served* delayed metrics — the scores the workers
actually served when each snapshot was taken, against what happened — give the reliability
diagram (predicted vs observed churn per bin of the score, with the count of snapshots per
bin) and the expected calibration error (ECE); the champion's calibration says whether the
version being served is *calibrated* or still *calibrating* (fewer than
``online_models.calibration.MIN_CLASS_OUTCOMES`` churners or stayers behind it: its scores
carry ``calibrated: false`` and the alerter does not act on them).

Pure: :func:`calibration_view` turns a status into the panel's data, :func:`reliability_svg`
draws the diagram (an SVG document the page inserts; numbers only, no text from the data).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from online_models.calibration import MIN_CLASS_OUTCOMES, is_calibrated

W, H, L, R, T, B = 300, 230, 34, 10, 10, 34  # viewBox and margins of the diagram


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _bins(rows: object) -> list[dict[str, float]]:
    """The well-formed reliability bins of a status (anything else dropped)."""
    out: list[dict[str, float]] = []
    if not isinstance(rows, list):
        return out
    for row in rows:
        if not isinstance(row, Mapping):
            continue
        nums = {k: _number(row.get(k)) for k in ("lo", "hi", "n", "predicted", "observed")}
        if any(v is None for v in nums.values()):
            continue
        out.append({k: float(v) for k, v in nums.items() if v is not None})
    return out


def calibration_view(status: Mapping[str, Any] | None) -> dict[str, Any]:
    """The calibration panel's data from a learner status (``None``: no learner yet).

    ``state``: ``waiting`` (no version published), ``calibrating`` (the served version's
    calibration rests on too few outcomes) or ``calibrated``.

    >>> calibration_view(None)["state"]
    'waiting'
    >>> status = {"version": 7, "champion": "logreg", "resolved": 900, "positives": 40,
    ...           "served": {"ece": 0.012, "n": 900, "positives": 40, "reliability": [
    ...               {"lo": 0.0, "hi": 0.1, "n": 850, "predicted": 0.03, "observed": 0.035}]},
    ...           "models": {"logreg": {"calibration": {"a": 0.9, "b": -0.1, "shift": -3.0,
    ...                                                 "churners": 40, "stayers": 860}}}}
    >>> v = calibration_view(status)
    >>> v["state"], v["version"], v["ece"], v["bins"][0]["n"], v["base_rate"]
    ('calibrated', '7-logreg', 0.012, 850.0, 0.0444)
    """
    if not status:
        return {"state": "waiting", "version": None, "ece": None, "bins": [], "n": 0,
                "churners": 0, "stayers": 0, "base_rate": None,
                "message": "no model version yet: scores come from the untrained start and are"
                           " not probabilities (the alerter ignores them)"}
    champion = str(status.get("champion") or "")
    served = status.get("served") if isinstance(status.get("served"), Mapping) else {}
    assert isinstance(served, Mapping)
    models = status.get("models") if isinstance(status.get("models"), Mapping) else {}
    assert isinstance(models, Mapping)
    model = models.get(champion) if isinstance(models.get(champion), Mapping) else {}
    cal = model.get("calibration") if isinstance(model, Mapping) else None
    cal = cal if isinstance(cal, Mapping) else {}
    churners = int(_number(cal.get("churners")) or 0)
    stayers = int(_number(cal.get("stayers")) or 0)
    calibrated = is_calibrated(churners, stayers)
    resolved = int(_number(status.get("resolved")) or 0)
    positives = int(_number(status.get("positives")) or 0)
    base = round(positives / resolved, 4) if resolved else None
    version = f"{status.get('version')}-{champion}"
    if calibrated:
        message = (f"version {version} is calibrated on {churners:,} churners and "
                   f"{stayers:,} stayers: a risk of 20% means about 1 in 5 such customers "
                   "churn within the horizon")
    else:
        message = (f"version {version} is calibrating ({churners:,} churners, {stayers:,} "
                   f"stayers; needs {MIN_CLASS_OUTCOMES} of each): its scores are shrunk "
                   "towards the base rate and carry no alerts")
    return {"state": "calibrated" if calibrated else "calibrating", "version": version,
            "ece": _number(served.get("ece")), "bins": _bins(served.get("reliability")),
            "n": int(_number(served.get("n")) or 0), "churners": churners,
            "stayers": stayers, "base_rate": base, "message": message,
            "a": _number(cal.get("a")), "b": _number(cal.get("b"))}


def reliability_svg(bins: Sequence[Mapping[str, float]], ece: float | None = None) -> str:
    """A reliability diagram: the diagonal (perfect calibration), per bin a bar of the
    observed churn share at the bin's mean predicted probability, its count written above,
    and a dot at (predicted, observed). Axes from 0 to the largest bin edge (scores are
    mostly small: a 0-1 axis would squash them into a corner).

    >>> svg = reliability_svg([{"lo": 0.0, "hi": 0.1, "n": 850, "predicted": 0.03,
    ...                         "observed": 0.035}], ece=0.012)
    >>> svg.count('class="bin"'), "n=850" in svg, "ECE 0.012" in svg
    (1, True, True)
    >>> "no resolved" in reliability_svg([])
    True
    """
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" '
            'aria-label="reliability diagram" class="reliability">')
    if not bins:
        return (head + f'<text class="empty" x="{W / 2}" y="{H / 2}" text-anchor="middle">'
                "no resolved scores yet</text></svg>")
    top = max(max(b["hi"] for b in bins), max(b["observed"] for b in bins), 0.1)
    top = min(1.0, math.ceil(top * 10) / 10)
    pw, ph = W - L - R, H - T - B

    def x(p: float) -> float:
        return L + min(p, top) / top * pw

    def y(p: float) -> float:
        return T + (1 - min(p, top) / top) * ph

    step = 0.1 if top >= 0.4 else 0.05 if top >= 0.2 else 0.02
    parts = [head]
    for i in range(round(top / step) + 1):
        v = i * step
        parts.append(f'<line class="grid" x1="{L}" x2="{W - R}" y1="{y(v):.1f}" '
                     f'y2="{y(v):.1f}"/>')
        parts.append(f'<text class="axis" x="{L - 4}" y="{y(v) + 3:.1f}" '
                     f'text-anchor="end">{100 * v:.0f}%</text>')
        parts.append(f'<text class="axis" x="{x(v):.1f}" y="{H - B + 12}" '
                     f'text-anchor="middle">{100 * v:.0f}%</text>')
    parts.append(f'<line class="diagonal" x1="{x(0):.1f}" y1="{y(0):.1f}" x2="{x(top):.1f}" '
                 f'y2="{y(top):.1f}"/>')
    width = max(4.0, pw / max(10, round(top * 10) * 2) * 0.8)
    for b in bins:
        cx, oy = x(b["predicted"]), y(b["observed"])
        n = int(b["n"])
        parts.append(
            f'<g class="bin"><title>scores {100 * b["lo"]:.0f}-{100 * b["hi"]:.0f}%: {n:,} '
            f'snapshots, predicted {100 * b["predicted"]:.1f}%, churned '
            f'{100 * b["observed"]:.1f}%</title>'
            f'<rect x="{cx - width / 2:.1f}" y="{oy:.1f}" width="{width:.1f}" '
            f'height="{y(0) - oy:.1f}"/>'
            f'<circle cx="{cx:.1f}" cy="{oy:.1f}" r="3"/>'
            f'<text class="count" x="{cx:.1f}" y="{oy - 5:.1f}" text-anchor="middle">'
            f'n={n:,}</text></g>')
    parts.append(f'<text class="axis" x="{L + pw / 2}" y="{H - 4}" text-anchor="middle">'
                 "predicted risk (served)</text>")
    parts.append(f'<text class="axis" transform="translate(9 {T + ph / 2}) rotate(-90)" '
                 'text-anchor="middle">churned</text>')
    if ece is not None:
        parts.append(f'<text class="ece" x="{L + 6}" y="{T + 12}">ECE {ece:.3f}</text>')
    parts.append("</svg>")
    return "".join(parts)
