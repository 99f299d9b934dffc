"""The dashboard's calibration panel (data and diagram) and the board's calibration marks."""

from __future__ import annotations

import random
import re
import xml.etree.ElementTree as ET

from online_models.calibration import reliability, reliability_json
from streams.delivery.dashboard.board import Board
from streams.delivery.dashboard.calibration import calibration_view, reliability_svg


def status(churners: int, stayers: int, bins: list[dict[str, float]]) -> dict[str, object]:
    return {"version": 4, "champion": "logreg", "resolved": churners + stayers,
            "positives": churners,
            "served": {"ece": 0.02, "n": churners + stayers, "reliability": bins},
            "models": {"logreg": {"calibration": {"a": 1.0, "b": 0.0, "shift": -3.0,
                                                  "churners": churners,
                                                  "stayers": stayers}}}}


def test_the_panel_says_calibrating_until_both_classes_have_enough_outcomes() -> None:
    assert calibration_view(None)["state"] == "waiting"
    young = calibration_view(status(12, 3000, []))
    assert young["state"] == "calibrating" and "12 churners" in young["message"]
    grown = calibration_view(status(20, 3000, []))
    assert grown["state"] == "calibrated" and grown["version"] == "4-logreg"
    assert grown["base_rate"] == round(20 / 3020, 4)
    # a status written before the counts existed: calibrating, not an error
    old = status(0, 0, [])
    old["models"] = {"logreg": {"calibration": {"a": 1.0, "b": 0.0, "shift": 0.0}}}
    assert calibration_view(old)["state"] == "calibrating"
    junk = calibration_view({"champion": 3, "served": [], "models": None})
    assert junk["state"] == "calibrating" and junk["bins"] == [] and junk["ece"] is None


def test_the_diagram_draws_every_bin_with_its_count_from_real_reliability_data() -> None:
    rnd = random.Random(3)
    ps = [min(0.99, rnd.expovariate(1 / 0.05)) for _ in range(5000)]
    ys = [rnd.random() < p for p in ps]
    bins = reliability_json(reliability(ps, ys))
    view = calibration_view(status(sum(ys), len(ys) - sum(ys), bins))
    assert len(view["bins"]) == len(bins) and view["ece"] == 0.02
    svg = reliability_svg(view["bins"], view["ece"])
    root = ET.fromstring(svg)  # well-formed SVG
    assert root.tag.endswith("svg")
    assert svg.count('class="bin"') == len(bins)
    counts = [int(c.replace(",", "")) for c in re.findall(r"n=([\d,]+)</text>", svg)]
    assert counts == [b["n"] for b in bins] and sum(counts) == 5000
    assert "ECE 0.020" in svg
    # the dot of each bin sits at (predicted, observed): a calibrated bin on the diagonal
    diag = reliability_svg([{"lo": 0.0, "hi": 0.1, "n": 10.0, "predicted": 0.05,
                             "observed": 0.05}])
    cx, cy = (float(v) for v in re.search(r'<circle cx="([\d.]+)" cy="([\d.]+)"', diag).groups())
    line = re.search(r'class="diagonal" x1="([\d.]+)" y1="([\d.]+)" x2="([\d.]+)" '
                     r'y2="([\d.]+)"', diag)
    assert line is not None
    x1, y1, x2, y2 = (float(v) for v in line.groups())
    assert abs((cy - y1) * (x2 - x1) - (cx - x1) * (y2 - y1)) < 0.5 * abs(x2 - x1)


def test_the_board_marks_customers_whose_score_is_not_yet_calibrated() -> None:
    board = Board()
    score = {"customer_id": "c-1", "score": 0.5, "ts": "2026-01-01T00:00:00Z",
             "calibrated": False}
    board.on_score(score)
    view = board.customer("c-1")
    assert view is not None and view["calibrated"] is False
    assert board.uncalibrated_scores == 1
    board.on_score(dict(score, ts="2026-01-02T00:00:00Z", score=0.04, calibrated=True))
    assert board.customer("c-1")["calibrated"] is True  # type: ignore[index]
    board.on_score({"customer_id": "c-2", "score": 0.1, "ts": "2026-01-01T00:00:00Z"})
    assert board.customer("c-2")["calibrated"] is True  # type: ignore[index]
    board.on_alert({"alert_id": "c-2:1:high", "customer_id": "c-2", "episode_id": "c-2:1",
                    "severity": "high", "score": 0.3, "ts": "2026-01-01T01:00:00Z"})
    board.on_score({"customer_id": "c-2", "score": 0.5, "ts": "2026-01-01T02:00:00Z",
                    "calibrated": False})
    row = board.at_risk()[0]
    assert row["customer_id"] == "c-2" and row["calibrated"] is False
