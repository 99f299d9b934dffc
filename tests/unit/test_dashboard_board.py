"""The dashboard's read model, live hub and token helpers (no Kafka, no web server)."""

from __future__ import annotations

from typing import Any

from streams.delivery.dashboard.auth import tokens_of, user_for
from streams.delivery.dashboard.board import Board, ScoreRing
from streams.delivery.dashboard.feeds import Hub
from streams.settings import DashboardSettings


def alert(cid: str, severity: str = "high", score: float = 0.8, episode: int = 1,
          team: str = "csm", segment: str = "power users", ts: str = "2026-11-30T10:00:00Z",
          kind: str = "opened") -> dict[str, Any]:
    return {"alert_id": f"{cid}:{episode}:{severity}", "customer_id": cid,
            "episode_id": f"{cid}:{episode}", "severity": severity, "score": score,
            "team": team, "segment": segment, "ts": ts, "kind": kind,
            "drivers": [{"feature": "f", "value": 1.0, "contribution": 0.5}]}


def outcome(a: dict[str, Any], action: str, n: int = 1, assignee: str | None = None) -> dict[
        str, Any]:
    return {"outcome_id": f"{a['alert_id']}:{action}:{n}", "alert_id": a["alert_id"],
            "customer_id": a["customer_id"], "action": action, "assignee": assignee,
            "by": "alice", "at": "2026-11-30T10:05:00Z"}


def score(cid: str, value: float, ts: str) -> dict[str, Any]:
    return {"customer_id": cid, "score": value, "ts": ts, "score_id": f"{cid}:{ts}"}


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["customer_id"] for r in rows]


def test_riskiest_first_with_filters_and_resolved_hidden() -> None:
    board = Board()
    board.on_alert(alert("a", "medium", 0.6, team="growth", segment="casual"))
    board.on_alert(alert("b", "critical", 0.95))
    board.on_alert(alert("c", "high", 0.8, segment="casual"))
    assert ids(board.at_risk()) == ["b", "c", "a"]
    assert ids(board.at_risk(severity="high")) == ["c"]
    assert ids(board.at_risk(team="growth")) == ["a"]
    assert ids(board.at_risk(segment="casual")) == ["c", "a"]
    assert ids(board.at_risk(query="B")) == ["b"]
    board.on_outcome(outcome(alert("b", "critical", 0.95), "resolve"))
    assert ids(board.at_risk()) == ["c", "a"]
    assert ids(board.at_risk(status="resolved")) == ["b"]
    assert ids(board.at_risk(status="all")) == ["b", "c", "a"]
    assert board.facets()["teams"] == ["csm", "growth"]
    assert board.counts()["severity.critical"] == 0  # resolved ones are not counted


def test_holdout_customers_only_on_request() -> None:
    board = Board()
    board.on_alert(alert("a", "high", 0.7))
    held = dict(alert("h", "critical", 0.99), holdout=True)
    assert board.on_alert(held) is not None
    assert ids(board.at_risk()) == ["a"]
    assert ids(board.at_risk(holdout=True)) == ["h", "a"]
    assert board.at_risk(holdout=True)[0]["holdout"] is True
    counts = board.counts()
    assert (counts["open"], counts["severity.critical"], counts["holdout"]) == (1, 0, 1)


def test_a_newer_score_moves_the_customer_but_an_older_one_does_not() -> None:
    board = Board()
    board.on_alert(alert("a", score=0.7))
    board.on_alert(alert("b", score=0.8))
    board.on_score(score("a", 0.9, "2026-11-30T11:00:00Z"))
    board.on_score(score("b", 0.1, "2026-11-30T09:00:00Z"))  # older than b's alert
    assert ids(board.at_risk()) == ["a", "b"]
    assert [r["score"] for r in board.at_risk()] == [0.9, 0.8]


def test_repeats_are_ignored() -> None:
    board = Board()
    a = alert("a")
    assert board.on_alert(a) is not None
    assert board.on_alert(dict(a)) is None
    assert board.on_outcome(outcome(a, "acknowledge")) is not None
    assert board.on_outcome(outcome(a, "acknowledge")) is None
    assert board.on_outcome(outcome(alert("zz"), "resolve")) is None  # unknown alert
    view = board.customer("a")
    assert view is not None and len(view["alerts"]) == 1 and len(view["outcomes"]) == 1


def test_status_lifecycle_over_episodes_and_escalations() -> None:
    board = Board()
    first = alert("a", "medium", 0.6)
    board.on_alert(first)
    board.on_outcome(outcome(first, "assign", assignee="dana"))
    board.on_outcome(outcome(first, "acknowledge", 2))  # does not undo the assignment
    assert board.at_risk()[0]["status"] == "assigned"
    escalated = alert("a", "critical", 0.9, kind="escalated")
    board.on_alert(escalated)
    row = board.at_risk()[0]
    assert (row["status"], row["assignee"], row["severity"]) == ("assigned", "dana", "critical")
    board.on_outcome(outcome(escalated, "resolve"))
    assert board.at_risk() == []
    next_episode = alert("a", "high", 0.8, episode=2)
    board.on_alert(next_episode)
    row = board.at_risk()[0]
    assert (row["status"], row["assignee"], row["alert_id"]) == ("open", None, "a:2:high")
    assert board.on_outcome(outcome(first, "resolve", 9)) is None  # the old episode is gone


def test_score_history_is_bounded_and_customers_on_the_board_stay() -> None:
    board = Board(history_points=3, history_customers=2)
    board.on_alert(alert("pinned", ts="2026-11-30T10:00:00Z"))
    for minute in range(5):
        board.on_score(score("pinned", minute / 10, f"2026-11-30T10:0{minute}:30Z"))
    for cid in ("x", "y", "z"):
        board.on_score(score(cid, 0.5, "2026-11-30T10:00:00Z"))
    view = board.customer("pinned")
    assert view is not None
    assert [s for _, s in view["history"]] == [0.2, 0.3, 0.4]
    assert board.customer("x") is None and board.customer("y") is None
    assert board.customer("z") is not None
    assert board.counts()["history_customers"] == 2


def test_the_board_drops_resolved_customers_first() -> None:
    board = Board(board_size=2)
    a, b = alert("a", score=0.9), alert("b", score=0.8)
    board.on_alert(a)
    board.on_alert(b)
    board.on_outcome(outcome(b, "resolve"))
    board.on_alert(alert("c", score=0.7))
    assert ids(board.at_risk(status="all")) == ["a", "c"]
    assert board.customer_of(b["alert_id"]) is None


def test_unreadable_scores_are_counted() -> None:
    board = Board()
    assert board.on_score({"customer_id": "a", "score": "high", "ts": "x"}) is None
    assert board.on_score({"customer_id": "a", "score": 0.5, "ts": "2026-01-01T00:00:00"}) is None
    assert board.skipped == 2


def test_score_ring_drops_repeats_and_sorts_by_event_time() -> None:
    ring = ScoreRing(4)
    for ts, s in ((2.0, 0.2), (1.0, 0.1), (2.0, 0.2)):
        ring.add(ts, s)
    assert ring.points() == [(1.0, 0.1), (2.0, 0.2)]


def test_hub_drops_a_client_that_falls_behind() -> None:
    hub = Hub(max_backlog=3)
    slow, fast = hub.subscribe(), hub.subscribe()
    for i in range(3):
        hub.publish("alert", {"i": i})
        fast.get_nowait()
    hub.publish("alert", {"i": 3})
    assert len(hub) == 1
    items = [slow.get_nowait() for _ in range(4)]
    assert items[-1] is None and items[0] == ("alert", b'{"i":0}')
    hub.close_all()
    assert fast.get_nowait() == ("alert", b'{"i":3}') and fast.get_nowait() is None


def test_tokens() -> None:
    by_token, generated = tokens_of(DashboardSettings())
    assert generated is not None and len(generated) >= 32
    assert by_token == {generated: "support"}
    a, b = "t-a-0123456789abcd", "t-b-0123456789abcd"
    configured, none = tokens_of(DashboardSettings(tokens={"alice": a, "bob": b}))
    assert none is None
    assert user_for(b, configured) == "bob"
    assert user_for("t-", configured) is None and user_for(None, configured) is None
    assert a not in repr(DashboardSettings(tokens={"alice": a}))


def test_forget_erases_a_customer_and_ignores_their_older_records() -> None:
    import datetime as dt

    board = Board()
    first = alert("c1", ts="2026-11-30T10:00:00Z")
    board.on_alert(first)
    board.on_outcome(outcome(first, "acknowledge"))
    board.on_score(score("c1", 0.7, "2026-11-30T09:00:00Z"))
    board.on_alert(alert("c10"))
    asked = dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC).timestamp() * 1000

    def digest_of(cid: str) -> str:
        return f"d-{cid}"

    assert board.forget_digests({"d-c1": asked}, digest_of) == ["c1"]
    assert board.customer("c1") is None and board.customer("c10") is not None
    assert ids(board.at_risk(status="all")) == ["c10"]
    assert board.customer_of(first["alert_id"]) is None
    # a restarted feed re-reads the topics: the customer's records before the request stay out
    assert board.on_alert(first) is None
    assert board.on_score(score("c1", 0.9, "2026-11-30T11:00:00Z")) is None
    assert board.customer("c1") is None
    assert board.forget_digests({"d-c1": asked}, digest_of) == []  # served once
    # the customer came back after the erasure: new records are theirs to show
    assert board.on_alert(alert("c1", episode=2, ts="2026-12-01T08:00:00Z")) is not None
