"""The dashboard's read model: open alerts per customer, their outcomes, score histories.

Built only from the three topics (``churn-alerts``, ``churn-alert-outcomes``,
``churn-scores``), so every dashboard process rebuilds it by reading them and any number can
run side by side. No I/O here: the Kafka feed (:mod:`streams.delivery.dashboard.feeds`) calls
``on_alert`` / ``on_outcome`` / ``on_score``; the web app reads.

Bounds (settings ``dashboard.*``):

* ``board_size`` customers with an alert (the least recently alerted resolved ones go first,
  then the least recently alerted);
* per customer the last ``history_points`` scores, as two float64 arrays (16 bytes a point),
  for at most ``history_customers`` customers (least recently scored first; customers on the
  board are kept): 20,000 x 200 points = 64 MB at most;
* the last 20 alerts and 50 outcomes of a customer on the board.

Status of a customer's episode: ``open`` → ``acknowledged`` → (``assigned``) → ``resolved``; an
outcome applies to the episode of its alert. A new episode (a new ``episode_id``) opens a fresh
entry; an escalation of a resolved episode reopens it; otherwise escalations keep the status
and the assignee (the page shows the new severity).

Scores of a model version still calibrating (``"calibrated": false`` on the score record, see
``online_models.calibration``) are kept and drawn, and marked: the entry's and the customer
view's ``calibrated`` say whether the current score is a calibrated probability.

Holdout customers (``"holdout": true`` in the alert: the experiment's control group, whose
alerts are recorded but must not be acted on) are left out of the board, the counts and the
live feed unless asked for (``holdout=True``), so nobody contacts them by accident.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from alerts.dispatch import SEVERITIES, severity_rank
from streams.errors import InvalidMessage
from streams.timefmt import parse_ts

STATUSES = ("open", "acknowledged", "assigned", "resolved")
ACTIONS = {"acknowledge": "acknowledged", "assign": "assigned", "resolve": "resolved"}


def _epoch_ms(ts: object) -> float | None:
    try:
        return parse_ts(ts) * 1000.0
    except InvalidMessage:
        return None


class ScoreRing:
    """The last ``size`` (event time ms, score) points of one customer, 16 bytes a point.

    >>> ring = ScoreRing(3)
    >>> for i in range(5):
    ...     ring.add(float(i), i / 10)
    >>> ring.points()
    [(2.0, 0.2), (3.0, 0.3), (4.0, 0.4)]
    """

    __slots__ = ("_n", "_next", "_scores", "_ts")

    def __init__(self, size: int) -> None:
        self._ts = array("d", bytes(8 * size))
        self._scores = array("d", bytes(8 * size))
        self._n = 0
        self._next = 0

    def add(self, ts_ms: float, score: float) -> None:
        self._ts[self._next] = ts_ms
        self._scores[self._next] = score
        self._next = (self._next + 1) % len(self._ts)
        self._n = min(self._n + 1, len(self._ts))

    def points(self) -> list[tuple[float, float]]:
        """Points in event-time order, repeats (a re-delivered score) dropped."""
        size = len(self._ts)
        start = (self._next - self._n) % size
        pts = sorted({(self._ts[(start + i) % size], self._scores[(start + i) % size])
                      for i in range(self._n)})
        return pts


@dataclass
class Entry:
    """One customer on the board: the latest alert of its current episode and what was done."""

    customer_id: str
    episode_id: str
    alert: dict[str, Any]
    status: str = "open"
    assignee: str | None = None
    score: float = 0.0
    score_ts: str = ""
    calibrated: bool = True  # the current score came from a calibrated version
    alerts: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=20))
    outcomes: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=50))
    seq: int = 0

    @property
    def holdout(self) -> bool:
        return self.alert.get("holdout") is True

    def summary(self) -> dict[str, Any]:
        a = self.alert
        return {"customer_id": self.customer_id, "alert_id": a["alert_id"],
                "episode_id": self.episode_id, "severity": a.get("severity"),
                "kind": a.get("kind"), "alert_score": a.get("score"), "score": self.score,
                "score_ts": self.score_ts, "ts": a.get("ts"), "team": a.get("team"),
                "segment": a.get("segment"), "lifecycle_stage": a.get("lifecycle_stage"),
                "customer_value": a.get("customer_value"),
                "recommended_action": a.get("recommended_action"),
                "offers": a.get("offers") or [],
                "sla_hours": a.get("sla_hours"), "summary": a.get("summary"),
                "holdout": a.get("holdout"), "status": self.status, "assignee": self.assignee,
                "calibrated": self.calibrated}


class Board:
    """Open alerts, outcomes and score histories (see the module docstring for the bounds)."""

    def __init__(self, *, board_size: int = 5000, history_points: int = 200,
                 history_customers: int = 20000) -> None:
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._alert_ids: dict[str, str] = {}  # alert id -> customer id (entries on the board)
        self._outcome_ids: set[str] = set()
        self._history: OrderedDict[str, ScoreRing] = OrderedDict()
        self._drivers: dict[str, list[Any]] = {}
        self._uncalibrated: set[str] = set()  # customers whose latest score is uncalibrated
        self.uncalibrated_scores = 0
        self._board_size = board_size
        self._points = history_points
        self._history_customers = history_customers
        self._seq = 0
        self.skipped = 0
        self._forgotten: dict[str, float] = {}  # digest of an erased id -> request time, ms
        self._digest_of: Callable[[str], str] | None = None

    # -- writes -------------------------------------------------------------------------
    def on_alert(self, alert: Mapping[str, Any]) -> Entry | None:
        """Apply an alert record; ``None`` when it was a repeat (same ``alert_id``)."""
        alert_id, cid = str(alert["alert_id"]), str(alert["customer_id"])
        if self._erased(cid, alert.get("ts")):
            return None
        if self._alert_ids.get(alert_id) == cid:
            return None
        episode = str(alert.get("episode_id") or alert_id.rsplit(":", 1)[0])
        record = dict(alert)
        entry = self._entries.get(cid)
        if entry is None or entry.episode_id != episode:
            if entry is not None:
                for old in entry.alerts:
                    self._alert_ids.pop(old["alert_id"], None)
            entry = Entry(cid, episode, record)
        else:
            entry.alert = record
            if entry.status == "resolved":
                entry.status, entry.assignee = "open", None
        entry.alerts.append(record)
        entry.score = float(alert.get("score") or 0.0)
        entry.score_ts = str(alert.get("ts") or "")
        entry.calibrated = True  # the alerter acts on calibrated scores only
        self._seq += 1
        entry.seq = self._seq
        self._alert_ids[alert_id] = cid
        self._entries[cid] = entry
        self._entries.move_to_end(cid)
        ts = _epoch_ms(alert.get("ts"))
        if ts is not None and isinstance(alert.get("score"), int | float):
            self._ring(cid).add(ts, float(alert["score"]))
        self._evict_entries()
        return entry

    def on_outcome(self, outcome: Mapping[str, Any]) -> Entry | None:
        """Apply an outcome event; ``None`` when it is a repeat or its alert is unknown."""
        outcome_id = str(outcome.get("outcome_id"))
        cid = self._alert_ids.get(str(outcome.get("alert_id")))
        action = outcome.get("action")
        if outcome_id in self._outcome_ids or cid is None or action not in ACTIONS:
            return None
        entry = self._entries[cid]
        self._outcome_ids.add(outcome_id)
        entry.outcomes.append(dict(outcome))
        if action == "assign":
            entry.assignee = outcome.get("assignee") or entry.assignee
        if action != "acknowledge" or entry.status == "open":
            entry.status = ACTIONS[str(action)]
        return entry

    def on_score(self, score: Mapping[str, Any]) -> Entry | None:
        """Add a score to the customer's history; returns the board entry it updated."""
        cid = score.get("customer_id")
        value = score.get("score")
        ts = _epoch_ms(score.get("ts"))
        if not isinstance(cid, str) or not isinstance(value, int | float) or ts is None:
            self.skipped += 1
            return None
        if self._erased(cid, score.get("ts")):
            return None
        self._ring(cid).add(ts, float(value))
        drivers = score.get("drivers")
        if drivers:
            self._drivers[cid] = list(drivers)
        calibrated = score.get("calibrated") is not False  # absent: written before the field
        if calibrated:
            self._uncalibrated.discard(cid)
        else:
            self.uncalibrated_scores += 1
            self._uncalibrated.add(cid)
        entry = self._entries.get(cid)
        if entry is not None and str(score.get("ts") or "") >= entry.score_ts:
            entry.score, entry.score_ts = float(value), str(score["ts"])
            entry.calibrated = calibrated
        return entry

    # -- erasure (streams.delivery.dashboard.erasure) -----------------------------------
    def forget_digests(self, requests: Mapping[str, float],
                       digest_of: Callable[[str], str]) -> list[str]:
        """Erase every customer whose id digest was requested; returns the ids erased now."""
        new = {d: ms for d, ms in requests.items() if d not in self._forgotten}
        if not new:
            return []
        self._forgotten.update(new)
        self._digest_of = digest_of
        held = set(self._entries) | set(self._history) | set(self._drivers)
        erased = [cid for cid in sorted(held) if digest_of(cid) in new]
        for cid in erased:
            entry = self._entries.pop(cid, None)
            if entry is not None:
                for alert in entry.alerts:
                    self._alert_ids.pop(str(alert["alert_id"]), None)
                self._outcome_ids.difference_update(str(o.get("outcome_id"))
                                                    for o in entry.outcomes)
            self._history.pop(cid, None)
            self._drivers.pop(cid, None)
            self._uncalibrated.discard(cid)
        return erased

    def _erased(self, cid: str, ts: object) -> bool:
        """A record of an erased customer dated before the erasure request."""
        if not self._forgotten or self._digest_of is None:
            return False
        asked = self._forgotten.get(self._digest_of(cid))
        at = _epoch_ms(ts)
        return asked is not None and (at is None or at <= asked)

    def _ring(self, cid: str) -> ScoreRing:
        ring = self._history.get(cid)
        if ring is None:
            ring = self._history[cid] = ScoreRing(self._points)
            self._evict_history()
        else:
            self._history.move_to_end(cid)
        return ring

    def _evict_history(self) -> None:
        for _ in range(len(self._history)):
            if len(self._history) <= self._history_customers:
                return
            cid, ring = self._history.popitem(last=False)
            if cid in self._entries:  # pinned while on the board
                self._history[cid] = ring
            else:
                self._drivers.pop(cid, None)
                self._uncalibrated.discard(cid)

    def _evict_entries(self) -> None:
        while len(self._entries) > self._board_size:
            victim = next((c for c, e in self._entries.items() if e.status == "resolved"),
                          next(iter(self._entries)))
            entry = self._entries.pop(victim)
            for old in entry.alerts:
                self._alert_ids.pop(old["alert_id"], None)

    # -- reads --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def customer_of(self, alert_id: str) -> str | None:
        return self._alert_ids.get(alert_id)

    def at_risk(self, *, severity: str | None = None, team: str | None = None,
                segment: str | None = None, status: str | None = None,
                query: str | None = None, holdout: bool = False,
                limit: int = 200) -> list[dict[str, Any]]:
        """Customers on the board, riskiest first (current score, then severity, then newest).

        ``status=None`` means every status but ``resolved``; ``"all"`` means every one.
        Holdout customers only with ``holdout=True``.
        """
        rows = []
        for e in self._entries.values():
            a = e.alert
            if e.holdout and not holdout:
                continue
            if severity and a.get("severity") != severity:
                continue
            if team and a.get("team") != team:
                continue
            if segment and a.get("segment") != segment:
                continue
            if (status is None and e.status == "resolved") or (
                    status not in (None, "all") and e.status != status):
                continue
            if query and query.lower() not in e.customer_id.lower():
                continue
            rows.append(e)
        rows.sort(key=lambda e: (-e.score, -severity_rank(str(e.alert.get("severity"))), -e.seq))
        return [e.summary() for e in rows[:limit]]

    def facets(self) -> dict[str, list[str]]:
        teams = sorted({str(e.alert.get("team")) for e in self if e.alert.get("team")})
        segments = sorted({str(e.alert.get("segment")) for e in self if e.alert.get("segment")})
        return {"severities": list(SEVERITIES), "teams": teams, "segments": segments,
                "statuses": list(STATUSES)}

    def customer(self, cid: str) -> dict[str, Any] | None:
        entry = self._entries.get(cid)
        ring = self._history.get(cid)
        if entry is None and ring is None:
            return None
        drivers = list(entry.alert.get("drivers") or []) if entry else []
        return {"customer_id": cid,
                "entry": entry.summary() if entry else None,
                "alerts": list(entry.alerts)[::-1] if entry else [],
                "outcomes": list(entry.outcomes)[::-1] if entry else [],
                "drivers": drivers or self._drivers.get(cid, []),
                "history": ring.points() if ring else [],
                "calibrated": cid not in self._uncalibrated}

    def counts(self) -> dict[str, int]:
        by_status = {s: 0 for s in STATUSES}
        by_severity = {s: 0 for s in SEVERITIES}
        held = 0
        for e in self:
            if e.holdout:
                held += 1
                continue
            by_status[e.status] += 1
            if e.status != "resolved" and e.alert.get("severity") in by_severity:
                by_severity[str(e.alert["severity"])] += 1
        return {**by_status, **{f"severity.{k}": v for k, v in by_severity.items()},
                "holdout": held, "history_customers": len(self._history)}
