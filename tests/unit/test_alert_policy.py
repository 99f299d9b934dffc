"""The risk state machine: hysteresis, dwell, cooldown, tiers, suppression, replay determinism."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.policy import (
    AlertDecision,
    Driver,
    PolicyParams,
    RiskState,
    ScoreInput,
    run,
    update,
)
from alerts.policy_state import state_from_json, state_to_json

H = 3600.0
DAY = 86400.0
P = PolicyParams()  # enter .6, exit .45, high .75, critical .9, dwell 1 h + 2 scores, 7 d cooldown


def scores(values: list[tuple[float, float]], cid: str = "c", reason: str = "event",
           ) -> list[ScoreInput]:
    return [ScoreInput(cid, f"{cid}:{i}", s, t, reason) for i, (t, s) in enumerate(values)]


def ids(decisions: list[AlertDecision]) -> list[str]:
    return [d.alert_id for d in decisions]


def test_hysteresis_one_crossing_one_alert() -> None:
    # enters, dwells, alerts; dips between exit and enter (stays in the episode); comes back
    _, out = run(scores([(0, 0.65), (H, 0.66), (2 * H, 0.5), (3 * H, 0.68), (4 * H, 0.55)]), P)
    assert ids(out) == ["c:0:medium"]
    assert [d.kind for d in out] == ["opened"]


def test_below_exit_closes_the_episode_and_a_new_crossing_is_a_new_episode() -> None:
    values = [(0, 0.65), (H, 0.66), (2 * H, 0.4), (10 * DAY, 0.7), (10 * DAY + H, 0.7)]
    _, out = run(scores(values), P)
    assert ids(out) == ["c:0:medium", f"c:{int(10 * DAY * 1000)}:medium"]


def test_dwell_needs_time_and_scores() -> None:
    _, out = run(scores([(0, 0.7), (H / 2, 0.7)]), P)  # two scores, half an hour
    assert out == []
    _, out = run(scores([(0, 0.7), (2 * H, 0.4)]), P)  # a spike that went away
    assert out == []
    _, out = run(scores([(0, 0.7), (H, 0.7)]), P)
    assert ids(out) == ["c:0:medium"]
    assert out[0].ts == H


def test_critical_skips_dwell_unless_configured() -> None:
    _, out = run(scores([(0, 0.95)]), P)
    assert ids(out) == ["c:0:critical"]
    _, out = run(scores([(0, 0.95)]), replace(P, critical_skips_dwell=False))
    assert out == []


def test_cooldown_defers_a_new_episode_until_it_is_over() -> None:
    values = [(0, 0.7), (H, 0.7), (2 * H, 0.3),          # episode 1 alerts at 1 h
              (DAY, 0.7), (DAY + H, 0.7),                 # episode 2 inside the cooldown
              (3 * DAY, 0.65), (8 * DAY, 0.66)]           # still open after the cooldown
    _, out = run(scores(values), P)
    assert ids(out) == ["c:0:medium", f"c:{int(DAY * 1000)}:medium"]
    assert out[1].ts == 8 * DAY
    # a critical score skips the cooldown
    _, out = run(scores([(0, 0.7), (H, 0.7), (2 * H, 0.3), (DAY, 0.95)]), P)
    assert ids(out) == ["c:0:medium", f"c:{int(DAY * 1000)}:critical"]


def test_escalation_once_per_tier_within_an_episode() -> None:
    values = [(0, 0.65), (H, 0.65), (2 * H, 0.8), (3 * H, 0.65), (4 * H, 0.8), (5 * H, 0.92),
              (6 * H, 0.95)]
    _, out = run(scores(values), P)
    assert [(d.kind, d.severity, d.previous_severity) for d in out] == [
        ("opened", "medium", None), ("escalated", "high", "medium"),
        ("escalated", "critical", "high")]
    assert out[1].previous_score == 0.65 and out[2].previous_score == 0.8


def test_without_escalation_an_alerted_episode_stays_quiet_until_it_closes() -> None:
    """``escalate`` false (``CHURN_ALERTS__ESCALATE``): one alert per episode, at the tier the
    score had when it alerted; a new episode alerts again (after the cooldown)."""
    values = [(0, 0.65), (H, 0.8), (2 * H, 0.95), (3 * H, 0.3),  # closes below exit
              (8 * 24 * H, 0.8), (8 * 24 * H + H, 0.8)]
    _, out = run(scores(values), replace(P, escalate=False))
    assert [(d.kind, d.severity) for d in out] == [("opened", "high"), ("opened", "high")]
    _, both = run(scores(values), P)
    assert [(d.kind, d.severity) for d in both] == [
        ("opened", "high"), ("escalated", "critical"), ("opened", "high")]


def test_opened_at_a_high_tier_and_previous_score_is_before_the_episode() -> None:
    _, out = run(scores([(0, 0.3), (H, 0.8), (2 * H, 0.8)]), P)
    assert [(d.severity, d.previous_score) for d in out] == [("high", 0.3)]


def test_duplicate_and_stale_scores_change_nothing() -> None:
    s = scores([(0, 0.7), (H, 0.7)])
    dup = [s[0], s[0], replace(s[0], ts=2 * H)]  # same id twice: still one score
    state, out = run(dup, P)
    assert out == []
    assert state["c"].scores_applied == 1 and state["c"].scores_skipped == 2
    stale = [s[1], replace(s[0], score_id="older", ts=0.0)]
    state, _ = run(stale, P)
    assert state["c"].last_ts == H and state["c"].scores_skipped == 1


def test_churned_customers_are_suppressed_until_an_event_after_the_churn() -> None:
    churn_at = 5 * H
    xs = [replace(s, churned_at=churn_at) for s in scores(
        [(0, 0.7), (6 * H, 0.9), (7 * H, 0.9)], reason="sweep")]
    state, out = run(xs, P)
    assert out == []
    assert state["c"].churned_at == churn_at and not state["c"].in_episode
    back = replace(scores([(8 * H, 0.95)], cid="c")[0], score_id="c:back", churned_at=churn_at)
    new, out = update(state["c"], back, P, now=0.0)
    assert ids(out) == [f"c:{int(8 * H * 1000)}:critical"]
    assert new.returned_at == 8 * H and new.churned_at is None


def test_driver_changes_are_relative_to_the_previous_alert() -> None:
    d1 = (Driver("log_count_7d.session", 2.0, 0.5),)
    d2 = (Driver("log_count_7d.session", 1.0, 0.9), Driver("days_since_last", 9.0, 0.3))
    xs = [ScoreInput("c", "a", 0.8, 0.0, drivers=d1), ScoreInput("c", "b", 0.8, H, drivers=d1),
          ScoreInput("c", "c", 0.95, 2 * H, drivers=d2)]
    _, out = run(xs, P)
    assert [dc.change for dc in out[0].drivers] == [None]
    assert [dc.change for dc in out[1].drivers] == [-1.0, None]
    assert [dc.reference for dc in out[1].drivers] == [2.0, None]


def test_texts_compare_with_the_last_calm_score_before_the_first_alert() -> None:
    import math

    from alerts.drivers import views

    calm = (Driver("log_count_7d.session", math.log1p(13.0), -0.8),)
    risky = (Driver("log_count_7d.session", math.log1p(2.9), 0.9),)
    xs = [ScoreInput("c", "a", 0.2, 0.0, drivers=calm), ScoreInput("c", "b", 0.8, H, drivers=risky),
          ScoreInput("c", "c", 0.8, 2 * H, drivers=risky)]
    _, out = run(xs, P)
    [driver] = out[0].drivers
    assert driver.change is None  # no previous alert
    assert views(out[0].drivers)[0].text == "sessions per week fell from 9 to 2"


# --- properties ---------------------------------------------------------------------------

score_steps = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]),
              st.sampled_from([600.0, 3600.0, 6 * 3600.0, 3 * 86400.0, 9 * 86400.0]),
              st.floats(0.0, 1.0), st.booleans(), st.sampled_from(["event", "sweep"])),
    max_size=60)


def build(steps: list[tuple[str, float, float, bool, str]]) -> list[ScoreInput]:
    clock: dict[str, float] = defaultdict(float)
    out: list[ScoreInput] = []
    for i, (cid, gap, score, duplicate, reason) in enumerate(steps):
        if duplicate and out:
            out.append(out[-1])
            continue
        clock[cid] += gap
        out.append(ScoreInput(cid, f"{cid}:{i}", score, clock[cid], reason))
    return out


@settings(max_examples=200, deadline=None)
@given(score_steps, st.integers(0, 60))
def test_replay_of_any_prefix_from_stored_state_gives_the_same_alerts(
        steps: list[tuple[str, float, float, bool, str]], cut: int) -> None:
    xs = build(steps)
    _, whole = run(xs, P)
    cut = min(cut, len(xs))
    states, first = run(xs[:cut], P)
    stored = {c: state_from_json(state_to_json(s)) for c, s in states.items()}  # a restart
    _, rest = run(xs[:cut] + xs[cut:], P, states=stored)  # the prefix again, then the rest
    assert ids(first) + ids(rest) == ids(whole)


@settings(max_examples=200, deadline=None)
@given(score_steps)
def test_alerts_are_unique_and_escalate_within_episodes(
        steps: list[tuple[str, float, float, bool, str]]) -> None:
    _, out = run(build(steps), P)
    assert len(set(ids(out))) == len(out)
    by_episode: dict[str, list[AlertDecision]] = defaultdict(list)
    for d in out:
        by_episode[d.episode_id].append(d)
    order = ["medium", "high", "critical"]
    for alerts in by_episode.values():
        assert alerts[0].kind == "opened"
        assert all(a.kind == "escalated" for a in alerts[1:])
        ranks = [order.index(a.severity) for a in alerts]
        assert ranks == sorted(set(ranks))
        assert all(a.score >= P.exit for a in alerts)


@settings(max_examples=100, deadline=None)
@given(score_steps)
def test_duplicates_never_add_alerts(steps: list[tuple[str, float, float, bool, str]]) -> None:
    xs = build(steps)
    doubled = [x for s in xs for x in (s, s)]
    assert ids(run(doubled, P)[1]) == ids(run(xs, P)[1])


def test_state_round_trips_through_json() -> None:
    state, _ = run(scores([(0, 0.7), (H, 0.8)]), P)
    s = state["c"]
    assert state_from_json(state_to_json(s)) == s
    assert isinstance(s, RiskState)


feature_names = st.sampled_from(["a", "b", "c", "log_count_7d.session"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(feature_names, st.floats(-5, 5)), max_size=20),
       st.lists(st.tuples(feature_names, st.floats(-5, 5), st.floats(-1, 1)), max_size=3),
       st.integers(0, 12), st.one_of(st.none(), st.floats(0, 100)),
       st.floats(0.0, 0.5999), st.one_of(st.none(), st.floats(0.0, 0.5999)))
def test_a_calm_score_changes_exactly_what_the_rules_say(
        baseline: list[tuple[str, float]], drivers: list[tuple[str, float, float]],
        seen: int, first_seen: float | None, value: float, rank: float | None) -> None:
    """The most common score (applied, below enter, no episode, no churn mark) takes a short
    path in :func:`update`; it must change what the rules say and nothing else: its time,
    score and id, first seen, the applied count, and the calm drivers as the baseline."""
    before = RiskState(last_ts=10.0, last_score=0.3,
                       recent_ids=tuple(f"old{i}" for i in range(seen)), first_seen=first_seen,
                       episodes=2, alerts=1, last_alert_ts=1.0, scores_applied=seen,
                       alerted_values=(("a", 1.0),),
                       baseline_values=tuple(sorted(dict(baseline).items()))[:16])
    score = ScoreInput("c", "new", value if rank is None else 0.95, 20.0, rank=rank,
                       drivers=tuple(Driver(f, v, c) for f, v, c in drivers))
    after, out = update(before, score, P, now=0.0)
    base = dict(before.baseline_values)
    base.update((d.feature, d.value) for d in score.drivers)
    assert out == []
    assert after == before._replace(
        last_ts=20.0, last_score=score.score,
        recent_ids=(*before.recent_ids, "new")[-P.dedup_ids:],
        first_seen=20.0 if first_seen is None else first_seen,
        scores_applied=seen + 1,
        baseline_values=(tuple(sorted(base.items()))[:16] if drivers
                         else before.baseline_values))
