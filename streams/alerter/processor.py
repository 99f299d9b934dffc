"""One batch of scores of one partition → alert, action and dead-letter records (no Kafka here).

Per batch: decode (bad records become dead letters), read the customers' stored records and
churn marks (one Redis round trip), plan each customer (:func:`alerts.batch.plan_customer`:
re-emit the outbox of scores already applied, run the policy on the others), read the features
of the customers who alert and of a small sample (segments learn from the sample), enrich the
decisions into records, and write the new stored records, all or nothing
(:class:`~streams.redis.alert_store.AlertStore`). The caller publishes the returned records and the
offsets in one Kafka transaction (:mod:`streams.alerter.service`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol
from zlib import crc32

from alerts.batch import OutboxEntry, Plan, finish, plan_customer, plan_partition
from alerts.budget import BudgetState
from alerts.contracts import BadScore, decode_score
from alerts.enrich import AlertConfig, enrich
from alerts.policy import ScoreInput
from alerts.segments import SegmentModel, behaviour
from streams.contracts import encode
from streams.dead_letter import dead_letter_record
from streams.errors import TransientError
from streams.records import OutRecord, RawRecord
from streams.redis.alert_store import AlertStore, Versioned
from streams.settings import TopicSettings

log = logging.getLogger(__name__)
MAX_CONFLICT_RETRIES = 5
_NOTHING: dict[int, OutboxEntry] = {}  # a plan without decisions produced nothing (not changed)


class FeatureReader(Protocol):
    async def features_many(self, customers: Sequence[str],
                            at: Mapping[str, float]) -> dict[str, dict[str, float]]:
        """Feature catalogues of these customers at these event times (one round trip)."""
        ...


@dataclass
class AlertTotals:
    batches: int = 0
    scores: int = 0
    dead_lettered: int = 0
    alerts: int = 0
    replayed: int = 0
    holdout: int = 0
    conflicts: int = 0
    uncalibrated: int = 0  # scores of a version still calibrating: not alerted on (issue 10)
    process_s: float = 0.0  # time in batch processing (Redis, policy), alerter
    commit_s: float = 0.0  # time in Kafka transactions, alerter
    by_severity: dict[str, int] = field(default_factory=dict)
    by_kind: dict[tuple[str, str], int] = field(default_factory=dict)  # (severity, kind)


@dataclass
class BatchResult:
    out: list[OutRecord]
    alerts: int
    replayed: int


class AlertBatchProcessor:
    def __init__(self, store: AlertStore, features: FeatureReader | None, config: AlertConfig,
                 topics: TopicSettings, segment_share: float = 0.02,
                 wall_clock: Callable[[], float] = time.time, partitions: int = 1,
                 cache_size: int = 200_000) -> None:
        self.store = store
        self.features = features
        self.config = config
        # budget mode: one BudgetState per score partition, kept between batches while the
        # version stored with it says nobody else wrote it (docs/alerts.md, "Budgets")
        self.budget = (replace(config.budget, partitions=partitions)
                       if config.budget is not None else None)
        self._budgets: dict[str, tuple[BudgetState, int]] = {}
        self.topics = topics
        self.segment_share = segment_share
        self.segments = SegmentModel.initial()
        self._wall = wall_clock
        self.totals = AlertTotals()
        # the records this alerter wrote last, with their version: not read again while they
        # are current (the compare-and-set write names any that moved; forgotten then, and
        # when partitions move)
        self.cache_size = cache_size
        self._cache: dict[str, Versioned] = {}

    def forget(self, customers: Iterable[str] | None = None) -> None:
        """Drop held records (all of them: partitions were assigned or revoked)."""
        if customers is None:
            self._cache.clear()
            return
        for cid in customers:
            self._cache.pop(cid, None)

    def _hold(self, records: Iterable[tuple[str, Versioned]]) -> None:
        cache = self._cache
        for cid, versioned in records:
            cache.pop(cid, None)  # newest last: the oldest go first when full
            cache[cid] = versioned
        while len(cache) > self.cache_size:
            del cache[next(iter(cache))]

    async def start(self) -> None:
        saved = await self.store.load_segments()
        if saved is not None and saved.names == self.segments.names:
            self.segments = saved

    async def process(self, records: Sequence[RawRecord]) -> BatchResult:
        """Records of ONE partition, in offset order."""
        if not records:
            return BatchResult([], 0, 0)
        first = records[0].offset
        now = self._wall()
        by_customer: dict[str, list[tuple[int, ScoreInput]]] = {}
        dead: dict[int, OutRecord] = {}
        decode = decode_score
        for r in records:
            try:
                if r.value is None:
                    raise BadScore("empty", "message has no value")
                score = decode(r.value, now=now)
            except BadScore as exc:
                dead[r.offset] = self._dead_letter(r, exc, now)
                continue
            if not score.calibrated:  # a probability nobody can trust yet moves no episode
                self.totals.uncalibrated += 1
                continue
            mine = by_customer.get(score.customer_id)
            if mine is None:
                by_customer[score.customer_id] = [(r.offset, score)]
            else:
                mine.append((r.offset, score))
        self.totals.dead_lettered += len(dead)
        self.totals.scores += len(records) - len(dead)
        if by_customer:
            await self._learn_segments(by_customer)
        for _ in range(MAX_CONFLICT_RETRIES):
            result = await self._attempt(by_customer, first, now, dead, records[0].partition)
            if result is not None:
                self.totals.batches += 1
                return result
            self.totals.conflicts += 1
        raise TransientError("alert state kept changing under this batch (another alerter?)")

    async def _attempt(self, by_customer: dict[str, list[tuple[int, ScoreInput]]], first: int,
                       now: float, dead: dict[int, OutRecord],
                       partition: int = 0) -> BatchResult | None:
        cache = self._cache
        held = {cid for cid in by_customer if cid in cache}
        stored, churned = await self.store.read(by_customer, held)
        for cid in held:
            stored[cid] = cache[cid]
        marked = by_customer
        if churned:  # the learner's churn marks ride on the scores of those customers
            marked = {cid: ([(o, replace(s, churned_at=mark)) for o, s in scores]
                            if (mark := churned.get(cid)) is not None else scores)
                      for cid, scores in by_customer.items()}
        plans: dict[str, Plan] = {}
        budget: tuple[str, BudgetState, int] | None = None
        if self.budget is not None:
            name = f"{self.topics.scores}:{partition}"
            live, version = await self._budget_state(name)
            budget = (name, live, version)
            plans = plan_partition({c: v[0] for c, v in stored.items()},
                                   [x for xs in marked.values() for x in xs], first,
                                   self.config.policy, live, now)
        else:
            for cid, scores in marked.items():
                plans[cid] = plan_customer(stored[cid][0], scores, first, self.config.policy,
                                           now)
        alerting = [cid for cid, p in plans.items() if p.decisions]
        features = await self._features(alerting, {cid: plans[cid].decisions[-1][1].ts
                                                   for cid in alerting})
        emitted: list[tuple[int, OutboxEntry]] = []
        writes: dict[str, Versioned] = {}
        alerts = replayed = holdout = 0
        segments, config = self.segments, self.config
        for cid, plan in plans.items():
            if plan.replayed:
                emitted.extend(plan.replayed)
                replayed += sum(1 for _, entry in plan.replayed for kind, _ in entry
                                if kind == "alert")
            if not plan.decisions:  # most customers: a new state, nothing to enrich
                if plan.changed:
                    writes[cid] = (finish(plan, _NOTHING), stored[cid][1])
                continue
            produced: dict[int, OutboxEntry] = {}
            feats = features.get(cid)
            segment = segments.assign(behaviour(feats)) if feats else "unknown"
            for offset, decision, state in plan.decisions:
                alert, action = enrich(decision, state, feats, segment, config)
                produced.setdefault(offset, []).extend([("alert", alert), ("action", action)])
                alerts += 1
                holdout += bool(alert["holdout"])
            emitted.extend(produced.items())
            writes[cid] = (finish(plan, produced), stored[cid][1])
        moved = (await self.store.write(writes) if budget is None else
                 await self.store.write(writes, budget=(budget[0], budget[1].to_json(),
                                                        budget[2])))
        if moved:
            if budget is not None:
                self._budgets.pop(budget[0], None)
            self.forget(moved)
            return None
        self._hold((cid, (write[0], write[1] + 1) if (write := writes.get(cid)) is not None
                    else stored[cid]) for cid in plans)
        if budget is not None:
            self._budgets[budget[0]] = (budget[1], budget[2] + 1)
        self.totals.alerts += alerts
        self.totals.replayed += replayed
        self.totals.holdout += holdout
        for _, entry in emitted:
            for kind, rec in entry:
                if kind == "alert":
                    sev = self.totals.by_severity
                    sev[rec["severity"]] = sev.get(rec["severity"], 0) + 1
                    pair = (str(rec["severity"]), str(rec.get("kind") or "opened"))
                    self.totals.by_kind[pair] = self.totals.by_kind.get(pair, 0) + 1
        marker: OutboxEntry = [("dead", {})]
        ordered = sorted([*emitted, *((o, marker) for o in dead)], key=lambda e: e[0])
        out: list[OutRecord] = []
        for offset, entry in ordered:
            for kind, rec in entry:
                if kind == "dead":
                    out.append(dead[offset])
                else:
                    topic = self.topics.alerts if kind == "alert" else self.topics.retention_actions
                    out.append(OutRecord(topic, str(rec["customer_id"]).encode(), encode(rec)))
        return BatchResult(out, alerts, replayed)

    async def _budget_state(self, name: str) -> tuple[BudgetState, int]:
        """The partition's budget state: the one kept from its last batch while the stored
        version still matches, else rebuilt from the store (restart, another alerter)."""
        assert self.budget is not None
        cached = self._budgets.pop(name, None)
        data, version = await self.store.read_budget(name, cached[1] if cached else None)
        if cached is not None and data is None and version == cached[1]:
            return cached[0], version
        return BudgetState.from_json(data, self.budget), version

    async def _features(self, customers: Sequence[str],
                        at: dict[str, float]) -> dict[str, dict[str, float]]:
        reader = self.features
        if reader is None or not customers:
            return {}

        try:
            return await reader.features_many(customers, at)
        except TransientError as exc:  # enrichment is best effort; the alert is not
            log.warning("features unavailable for %d customers: %s", len(customers), exc)
            return {}

    async def _learn_segments(self, by_customer: dict[str, list[tuple[int, ScoreInput]]]
                              ) -> None:
        if self.segment_share <= 0 or self.features is None:
            return
        # a fixed share of scores, drawn by score id (replayable); CRC-32, not the holdout's
        # keyed hash: it runs over every customer of every batch
        below = self.segment_share * 2.0**32
        sample = [c for c, scores in by_customer.items()
                  if crc32(scores[-1][1].score_id.encode()) < below]
        got = await self._features(sample, {c: by_customer[c][-1][1].ts for c in sample})
        model = self.segments
        for cid in sample:
            if got.get(cid):
                model, _ = model.learn(behaviour(got[cid]))
        self.segments = model

    def _dead_letter(self, record: RawRecord, error: BadScore, now: float) -> OutRecord:
        return dead_letter_record(self.topics.dead_letter, record, error, now)


def summary_line(t: AlertTotals) -> str:
    sev = " ".join(f"{k}={v}" for k, v in sorted(t.by_severity.items()))
    return (f"alerter totals: batches={t.batches} scores={t.scores} alerts={t.alerts} "
            f"holdout={t.holdout} replayed={t.replayed} dead_lettered={t.dead_lettered} "
            f"conflicts={t.conflicts} ms_per_batch: process={_per(t.process_s, t.batches)} "
            f"commit={_per(t.commit_s, t.batches)} {sev}").rstrip()


def _per(seconds: float, n: int) -> str:
    return f"{seconds * 1000 / n:.1f}" if n else "-"
