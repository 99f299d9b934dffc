"""The backtest: a recorded history through the live code path, in-process and deterministic.

No Kafka, no Redis: the very objects the live pipeline runs — :class:`EventBatchProcessor`
(decode → features → score → record the snapshot, skip churned customers → publish), the
:class:`~streams.worker.sweeper.Sweeper` (re-scores quiet customers at their event-time due times)
and
:class:`~streams.learner.loop.LearningLoop` with the live learner's :class:`Learner` — wired to
in-memory ports (:mod:`streams.offline.backtest_stores`, :class:`InMemoryFeatureStore`).

The history (events and labels, :mod:`streams.offline.history`) is walked in event-time order:

* consecutive events form batches of at most ``batch_size`` records, processed as one worker
  batch on one partition;
* a churn label first flushes the events before it (they are scored first, as they would be
  live), then goes to the learning loop: the customer is marked churned (not scored until an
  event after the churn) and its pending snapshots inside the horizon resolve positive;
* after every batch comes one **learner step**, the live learner's rule: the watermark (newest
  event time minus the allowed lateness) resolves expired snapshots negative, and if the step
  learned anything the champion is published as the next model version
  (``<n>-<champion>``), which the next batch scores with. Live, a step runs about once a second
  of wall time; here once per batch, so the same history always gives the same versions and
  scores (tested: two runs are identical);
* at every UTC month start the batch baseline's rows are taken (:mod:`online_models.baseline`):
  the feature vector of every active customer at that instant, and the current online model's
  score of the same vector, so both models are compared on the same rows.

``run_backtest`` returns a :class:`BacktestRun` holding everything the report
(:mod:`streams.offline.backtest_report`) and the warm start (:mod:`streams.offline.train`) need.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from online_models.baseline import BaselineRow, month_starts
from online_models.feature_vector import feature_vector
from online_models.learner import Learner
from online_models.model import UNTRAINED_VERSION, ModelHandle, make_model
from online_models.observations import LabelPolicy, Resolution
from streams.contracts import ChurnLabel, decode_label
from streams.errors import InvalidMessage
from streams.kafka.chunk import EVENT
from streams.learner.loop import LearningLoop
from streams.learner.service import new_learner
from streams.offline.backtest_stores import IndexedObservationStore, InProcessModels, ScoreLog
from streams.offline.history import History
from streams.records import RawRecord
from streams.redis.churned import InMemoryChurnedCustomers
from streams.redis.feature_store import InMemoryFeatureStore
from streams.settings import Settings
from streams.worker.processor import EventBatchProcessor
from streams.worker.sweeper import Sweeper
from streams.worker.watermarks import Watermarks

PARTITION = 0
STEP_EVENTS = 500
"""Events per batch, so per learner step, unless :class:`BacktestOptions` says otherwise. Not
the worker's ``CHURN_WORKER__BATCH_SIZE``: that is a fetch limit, raised to 2,000 for the
drain rate, while this sets the learning cadence that every model-quality and alert figure in
the docs was measured at (500, which was also the worker's limit until then)."""
Progress = Callable[[int, int, float], None]  # (records done, total, event time reached)


@dataclass(frozen=True)
class BacktestOptions:
    """How to walk the history (defaults: batches of :data:`STEP_EVENTS`, learning on)."""

    batch_size: int | None = None
    learn: bool = True
    sweep: bool = True
    keep_score_ids: bool = False
    baseline_rows: bool = True
    initial: ModelHandle | None = None


@dataclass
class Resolved:
    """A learned resolution, as the report needs it: served score and outcome."""

    customer_id: str
    t: float
    served: float
    model_version: str
    churned: bool


@dataclass
class BacktestRun:
    """What a backtest produced."""

    policy: LabelPolicy
    learner: Learner
    loop: LearningLoop
    observations: IndexedObservationStore
    churned: InMemoryChurnedCustomers
    scores: ScoreLog
    models: InProcessModels
    version: int = 0
    resolved: list[Resolved] = field(default_factory=list)
    churns: list[tuple[str, float]] = field(default_factory=list)
    month_rows: list[tuple[BaselineRow, float, str]] = field(default_factory=list)
    first_ts: float = 0.0
    last_ts: float = 0.0
    n_events: int = 0
    n_labels: int = 0
    bad_labels: int = 0
    batches: int = 0
    steps_published: int = 0
    seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.n_events / self.seconds if self.seconds > 0 else 0.0

    def handle(self) -> ModelHandle:
        """The newest published model version."""
        return self.models.handle


class Backtest:
    """One backtest over one history (see the module docstring)."""

    def __init__(self, settings: Settings, options: BacktestOptions | None = None) -> None:
        self.settings = settings
        self.options = options or BacktestOptions()
        self.batch_size = self.options.batch_size or STEP_EVENTS
        self.policy = settings.model.policy
        self.now = 0.0
        sweep = settings.sweep.model_copy(update={"clock": "event"})
        self.sweep_settings = sweep
        self.store = InMemoryFeatureStore(settings.features)
        self.observations = IndexedObservationStore(self.policy)
        self.churned = InMemoryChurnedCustomers()
        self.scores = ScoreLog(settings.topics.scores, keep_ids=self.options.keep_score_ids)
        initial = self.options.initial or ModelHandle(UNTRAINED_VERSION, make_model())
        self.models = InProcessModels(initial)
        self.watermarks = Watermarks(sweep)
        self.processor = EventBatchProcessor(
            store=self.store, models=self.models, sink=self.scores, topics=settings.topics,
            wall_clock=self._clock, rescore_after_s=sweep.rescore_after_s if self.options.sweep
            else None, watermarks=self.watermarks, observations=self.observations,
            policy=self.policy, churned=self.churned)
        self.sweeper = Sweeper(self.store, self.processor, self.watermarks, sweep,
                               wall_clock=self._clock)
        learner = new_learner(settings)
        self.loop = LearningLoop(self.observations, learner, self.policy, self.churned.mark,
                                 mark_many=self.churned.mark_many, deferred=True)
        self.run = BacktestRun(self.policy, learner, self.loop, self.observations, self.churned,
                               self.scores, self.models)
        self._pending: list[RawRecord] = []
        self._learned = 0
        self._labels: list[ChurnLabel] = []
        self._held: list[ChurnLabel] = []
        self._newest = float("-inf")

    def _clock(self) -> float:
        """The backtest's wall clock is event time (``scored_at`` = when it would have been)."""
        return self.now

    async def execute(self, history: History, progress: Progress | None = None) -> BacktestRun:
        began = time.monotonic()
        run = self.run
        n = len(history)
        if n:
            run.first_ts, run.last_ts = history.ts_ms[0] / 1000, history.ts_ms[-1] / 1000
        months = (month_starts(run.first_ts, run.last_ts)
                  if n and self.options.baseline_rows else [])
        m = 0
        topic = self.settings.topics.events
        ts_ms, kinds, keys, values = history.ts_ms, history.kinds, history.keys, history.values
        for i in range(n):
            ts = ts_ms[i] / 1000
            while m < len(months) and ts >= months[m]:
                await self._flush()
                await self._month_rows(months[m])
                m += 1
            self.now = ts
            if kinds[i] == EVENT:
                run.n_events += 1
                self._pending.append(RawRecord(topic, PARTITION, i, keys[i], values[i]))
                if len(self._pending) >= self.batch_size:
                    await self._flush()
            else:
                self._label(values[i])
            if progress is not None and i % 5000 == 0:
                progress(i, n, ts)
        await self._flush()
        run.seconds = time.monotonic() - began
        if progress is not None:
            progress(n, n, run.last_ts)
        return run

    async def _flush(self) -> None:
        """Process the pending events as one worker batch, then one learner step, then
        re-score the quiet customers up to the watermark.

        The step comes before the sweep so that a churn the watermark has reached is marked
        before its customer could come due: live, the sweeper and the learner run
        concurrently and a quiet churner can be re-scored once in between (see
        docs/backtest.md); here never.
        """
        swept = False
        if self._pending:
            records, self._pending = self._pending, []
            await self.processor.process(records)
            self.run.batches += 1
            swept = self.options.sweep
        await self._step()
        mark = self.watermarks.watermark(PARTITION)
        if swept and mark is not None:
            await self.sweeper.sweep(PARTITION, mark)

    def _label(self, value: bytes) -> None:
        """A label is read: it waits for the next learner step (as on the labels topic)."""
        try:
            label = decode_label(value)
        except InvalidMessage:
            self.run.bad_labels += 1
            return
        self.run.n_labels += 1
        if label.churned:
            self.run.churns.append((label.customer_id, label.ts))
        self._labels.append(label)

    async def _step(self) -> None:
        """The live learner's step (:meth:`LearnerService.step`): labels read since the last
        step are held until the watermark reaches them, then resolve; the watermark expires
        snapshots; what resolved is learned as one batch; a step that learned publishes."""
        mark = self.watermarks.watermark(PARTITION)
        labels, self._labels = self._labels, []
        if not self.options.learn:  # score only: churn marks still stop scoring
            self._held += labels
            ready = [lb for lb in self._held if mark is not None and lb.ts <= mark]
            self._held = [lb for lb in self._held if mark is None or lb.ts > mark]
            for lb in ready:
                if lb.churned:
                    await self.churned.mark(lb.customer_id, lb.ts)
            return
        loop = self.loop
        positives, dropped = await loop.on_labels(labels, mark)
        self._record(positives)
        resolved = [r.observation for r in positives] + dropped
        if mark is not None:
            negatives = await loop.on_watermark(mark)
            self._record(negatives)
            resolved += [r.observation for r in negatives]
        loop.flush()
        if self._learned:
            run = self.run
            run.version += 1
            champion = run.learner.champion
            self.models.publish(ModelHandle(f"{run.version}-{champion.name}",
                                            copy.deepcopy(champion.model),
                                            {"resolved": run.learner.total}))
            run.steps_published += 1
            self._learned = 0
        if resolved:
            await self.observations.remove(resolved)
        loop.settle()
        loop.events.clear()

    def _record(self, resolutions: list[Resolution]) -> None:
        self._learned += len(resolutions)
        out = self.run.resolved
        for r in resolutions:
            obs = r.observation
            out.append(Resolved(obs.customer_id, obs.t, obs.score, obs.model_version,
                                r.churned))

    async def _month_rows(self, at: float) -> None:
        """Baseline rows at a month start: every active customer's features at ``at``."""
        handle = self.models.handle
        spec = self.store.spec
        churned = self.churned.times
        rows = self.run.month_rows
        for cid in sorted(self.scores.customers):
            state = await self.store.get(cid)
            if not state or state.get("t_first", at) >= at:
                continue
            churn = churned.get(cid)
            if churn is not None and state.get("t_last", 0.0) <= churn:
                continue
            x = feature_vector(state, at, spec)
            rows.append((BaselineRow(cid, at, x, False), handle.score(x), handle.version))


async def run_backtest(settings: Settings, history: History,
                       options: BacktestOptions | None = None,
                       progress: Progress | None = None) -> BacktestRun:
    """Run ``history`` through the live code path in-process (see the module docstring)."""
    return await Backtest(settings, options).execute(history, progress)


def outcomes(run: BacktestRun) -> list[tuple[BaselineRow, float, str]]:
    """Month rows with their outcome: churned within (t, t + H]; rows whose horizon goes past
    the end of the history are left out (their outcome is unknown)."""
    horizon = run.policy.horizon_s
    by_customer: dict[str, list[float]] = {}
    for cid, t in run.churns:
        by_customer.setdefault(cid, []).append(t)
    out = []
    for row, online, version in run.month_rows:
        if row.t + horizon > run.last_ts:
            continue
        churned = any(row.t < t <= row.t + horizon for t in by_customer.get(row.customer_id, ()))
        out.append((BaselineRow(row.customer_id, row.t, row.x, churned), online, version))
    return out
