"""The demo's retention figures and simulated offer answers (issue 16 in the demo)."""

from __future__ import annotations

import orjson

from streams.contracts import decode_event, offer_of
from streams.dev.demo_procs import demo_specs
from streams.dev.demo_retention import ANSWER_SHARE, CATALOGUE, DemoRetention, accept_rate


def _action(i: int, holdout: bool = False, offers: list[str] | None = None) -> bytes:
    rec: dict[str, object] = {"action_id": f"c{i}:0:high", "customer_id": f"c{i}",
                              "holdout": holdout, "segment": "fading" if i % 2 else "power",
                              "ts": "2026-01-01T00:00:00+00:00"}
    if offers is not None:
        rec["offers"] = offers
    return orjson.dumps(rec)


def test_answers_are_valid_offer_events_for_about_half_the_actioned_and_no_holdout() -> None:
    view = DemoRetention()
    answers = [a for i in range(2000) for a in view.on_action(_action(i, holdout=i % 5 == 0))]
    actioned = 2000 - 400
    assert abs(len(answers) / actioned - ANSWER_SHARE) < 0.05
    assert view.answers == len(answers)
    assert view.tally.holdout == 400 and view.tally.with_offers == 0
    seen = set()
    for key, value in answers:
        event = decode_event(value, key)
        offer, answer = offer_of(event) or ("", "")
        assert offer in CATALOGUE and answer in ("accepted", "declined")
        assert int(event.customer_id[1:]) % 5 != 0  # never a holdout customer
        seen.add(offer)
    assert seen == set(CATALOGUE)  # before a recommender: the whole catalogue is tried
    # the same action again answers the same way (a replayed topic gives the same events)
    assert DemoRetention().on_action(_action(7)) == DemoRetention().on_action(_action(7))


def test_an_alert_with_offers_is_answered_about_its_first_offer_by_segment_taste() -> None:
    view = DemoRetention()
    answers = [a for i in range(4000)
               for a in view.on_action(_action(i, offers=["discount_20", "free_month"]))]
    assert view.tally.with_offers == 4000
    by_segment: dict[str, list[bool]] = {}
    for key, value in answers:
        event = decode_event(value, key)
        offer, answer = offer_of(event) or ("", "")
        assert offer == "discount_20"
        segment = "fading" if int(event.customer_id[1:]) % 2 else "power"
        by_segment.setdefault(segment, []).append(answer == "accepted")
    for segment, accepted in by_segment.items():
        rate = sum(accepted) / len(accepted)
        assert abs(rate - accept_rate(segment, "discount_20")) < 0.06, segment


def test_the_demo_runs_the_retention_process_with_the_learning_policy() -> None:
    from pathlib import Path

    specs = {s.name: s for s in demo_specs(1, Path("state"), None, 8765)}
    assert specs["retention"].argv == ("retention",)
    assert specs["retention"].ready == b"retention ready"
    assert specs["alerter"].env.get("CHURN_RETENTION__BANDIT", "true") == "true"
