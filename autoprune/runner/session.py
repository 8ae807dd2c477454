"""The search loop of one job, independent of where candidates are evaluated.

``SearchSession`` owns the ask → predict → (tell infeasible at once | evaluate) → record →
tell cycle; executors only decide where and when candidates run. The session is the only
writer of the job's trials: workers return results, the session stores them the moment they
arrive.

Resume is a replay: a fresh, seeded controller is driven through the same loop, and every
architecture it asks that the store already finished is answered from the store instead of
being evaluated again. Controllers are deterministic functions of their seed and the ordered
results they are told, and results are told in ask order (not arrival order), so the replay
reproduces the original proposals; trials that were running when the previous owner died
are evaluated again under the same trial number.

Asking is pipelined one batch ahead: batch k+1 is asked before batch k is told, and batch k+2
only after batch k is told. The sequence of ask and tell calls is therefore fixed (ask 0,
ask 1, tell 0, ask 2, tell 1, ...) whatever order results arrive in, so it stays
deterministic, while the executor always has a candidate queued when a worker frees up (Ray
Tune keeps a worker process for reuse only while trials are pending; a fresh one costs
seconds of imports).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from autoprune.errors import AutopruneError, InfeasibleError
from autoprune.space import Architecture

FINISHED = "FINISHED"
WAIT = None
FINAL_STATES = ("complete", "pruned", "failed")


class JobCancelled(AutopruneError):
    """``autoprune cancel`` asked this job to stop."""


class JobTakenOver(AutopruneError):
    """Another service claimed this job (our heartbeat expired)."""


class JobInterrupted(AutopruneError):
    """The service was asked to stop (SIGTERM); the job goes back to the queue."""


@dataclass(frozen=True)
class Candidate:
    """One architecture to evaluate, as handed to an executor."""

    number: int
    architecture: Architecture
    predicted_latency_ms: float
    attempt: int = 0


@dataclass(frozen=True)
class Outcome:
    """What evaluating a candidate gave (or why it gave nothing)."""

    state: Literal["complete", "pruned", "failed"]
    metric: float | None = None
    fidelity: int | None = None
    seconds: float | None = None
    samples: int | None = None
    error: str | None = None
    worker: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def failure(cls, error: BaseException | str, worker: str | None = None) -> Outcome:
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        return cls(state="failed", error=text[:4000], worker=worker)


@dataclass
class _Slot:
    """A position in an ask batch, filled when its result is known."""

    number: int
    architecture: Architecture
    predicted_latency_ms: float
    batch: int
    result: Any = None  # a controller TrialResult once known


@dataclass
class Progress:
    evaluated: int = 0
    infeasible: int = 0
    failed: int = 0
    replayed: int = 0
    best_feasible: float | None = None
    started: float = field(default_factory=time.monotonic)


class SearchSession:
    """Drives one job's controller against the store; executors pull candidates from it."""

    def __init__(
        self,
        store: Any,
        job_id: int,
        prepared: Any,
        *,
        batch_size: int,
        owner: str | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        max_ask_factor: int = 50,
        lookahead: int = 1,
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.prepared = prepared
        self.owner = owner
        self.batch_size = max(1, batch_size)
        self.on_progress = on_progress
        self.budget = prepared.spec.controller.evaluations
        self.progress = Progress()
        self._max_asks = max_ask_factor * self.budget
        self._asked = 0
        self._lookahead = lookahead
        self._batch_index = 0
        self._batches: deque[list[_Slot]] = deque()  # asked, not yet told; oldest first
        self._slots: dict[int, _Slot] = {}  # trial number -> its slot, while its batch is open
        self._pending: deque[Candidate] = deque()
        self._outstanding: set[int] = set()
        self._stored = {trial.architecture_hash: trial for trial in store.trials(job_id)}
        # Set when the run must end early (cancelled, taken over, infeasible); executors that
        # cannot raise from their callbacks (Ray Tune's searcher) stop on it and re-raise it.
        self.aborted: BaseException | None = None
        self.stop_event: threading.Event | None = None
        # Wall time spent inside this class (controller ask/tell + store reads and writes):
        # the orchestration's own cost, which the service-overhead benchmark reports.
        self.orchestration_seconds = 0.0

    # ---- the executor-facing side --------------------------------------------------------
    def next_candidate(self) -> Candidate | str | None:
        """A candidate to evaluate, ``WAIT`` (None) while a batch is in flight, or FINISHED."""
        with self._timed():
            return self._next_candidate()

    def _next_candidate(self) -> Candidate | str | None:
        while True:
            if self._pending:
                return self._pending.popleft()
            if len(self._batches) > self._lookahead:
                return WAIT  # batch k+2 is asked only after batch k was told
            remaining = self.budget - self.progress.evaluated - len(self._outstanding)
            if remaining <= 0:
                return WAIT if self._outstanding else FINISHED
            self._check_control()
            self._open_batch(min(self.batch_size, remaining))

    def record(self, candidate: Candidate, outcome: Outcome) -> None:
        """Store an evaluated candidate's outcome at once; tell the batch when it is whole."""
        with self._timed():
            self._record(candidate, outcome)

    def _record(self, candidate: Candidate, outcome: Outcome) -> None:
        metric = outcome.metric
        state = outcome.state
        error = outcome.error
        if state != "failed" and (metric is None or not math.isfinite(metric)):
            state, error = "failed", f"the estimator returned a non-finite metric ({metric!r})"
            metric = None
        reward = None
        if metric is not None:
            reward = self.prepared.objective.reward(metric, candidate.predicted_latency_ms)
        slot = self._slots[candidate.number]
        extra = {"batch": slot.batch, **outcome.extra}
        if outcome.seconds is not None:
            extra["seconds"] = round(outcome.seconds, 3)
        if outcome.samples is not None:
            extra["samples"] = outcome.samples
        self.store.update_trial(
            self.job_id,
            candidate.number,
            state=state,
            metric_value=metric,
            fidelity=outcome.fidelity,
            reward=reward,
            worker=outcome.worker,
            error=error,
            extra=extra,
            finished=True,
        )
        self._count(state, metric, candidate.predicted_latency_ms)
        self._fill(candidate.number, state, metric, candidate.predicted_latency_ms)
        self._outstanding.discard(candidate.number)
        self._maybe_tell()
        self._notify()

    def mark_running(self, candidate: Candidate, worker: str | None = None) -> None:
        with self._timed():
            self.store.update_trial(self.job_id, candidate.number, state="running", worker=worker,
                                    started=True)

    @contextmanager
    def _timed(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.orchestration_seconds += time.perf_counter() - started

    @property
    def done(self) -> bool:
        return self.progress.evaluated >= self.budget and not self._outstanding

    # ---- internals -----------------------------------------------------------------------
    def _check_control(self) -> None:
        if self.stop_event is not None and self.stop_event.is_set():
            raise JobInterrupted(f"job {self.job_id} interrupted; it goes back to the queue")
        job = self.store.get_job(self.job_id)
        if job.cancel_requested or job.state == "cancelled":
            raise JobCancelled(f"job {self.job_id} was cancelled")
        if self.owner is not None and not self.store.heartbeat(self.job_id, self.owner):
            raise JobTakenOver(f"job {self.job_id} is owned by another service now")

    def _open_batch(self, n: int) -> None:
        if self._asked >= self._max_asks:
            raise InfeasibleError(
                f"{self._asked} candidates proposed and only {self.progress.evaluated} feasible: "
                "the latency budget is probably below what the search space can reach"
            )
        self._batch_index += 1
        architectures = self.prepared.controller.ask(n)
        self._asked += len(architectures)
        batch: list[_Slot] = []
        self._batches.append(batch)
        admitted: list[tuple[_Slot, bool, Any]] = []  # (slot, infeasible, stored trial or None)
        for architecture in architectures:
            predicted = float(self.prepared.predict_latency(architecture))
            slot = _Slot(0, architecture, predicted, self._batch_index)
            batch.append(slot)
            stored = self._stored.get(architecture.hash)
            if stored is not None and stored.state in FINAL_STATES:
                slot.number = stored.number
                self._slots[slot.number] = slot
                self._replay(slot, stored)
                continue
            infeasible = not self.prepared.objective.feasible(predicted) and self.prepared.skip_infeasible
            if stored is not None:  # left waiting or running by a previous owner
                slot.number = stored.number
                self.store.update_trial(self.job_id, stored.number, **self._trial_fields(slot, infeasible))
            admitted.append((slot, infeasible, stored))
        new = [(slot, infeasible) for slot, infeasible, stored in admitted if stored is None]
        if new:  # one transaction for the batch's new trials
            records = self.store.add_trials(self.job_id, [
                {"architecture_json": slot.architecture.to_json(),
                 "architecture_hash": slot.architecture.hash,
                 "state": "pruned" if infeasible else "waiting",
                 **self._trial_fields(slot, infeasible, new=True)}
                for slot, infeasible in new
            ])
            for (slot, _), record in zip(new, records):
                slot.number = record.number
                self._stored[slot.architecture.hash] = record
        for slot, infeasible, stored in admitted:  # in ask order: executors run them in it
            self._slots[slot.number] = slot
            if infeasible:
                self._fill(slot.number, "infeasible", None, slot.predicted_latency_ms)
                self.progress.infeasible += 1
                continue
            attempt = (stored.attempt if stored is not None else 0) or 0
            self._pending.append(Candidate(slot.number, slot.architecture,
                                           slot.predicted_latency_ms, attempt))
            self._outstanding.add(slot.number)
        self._maybe_tell()
        self._notify()

    def _trial_fields(self, slot: _Slot, infeasible: bool, new: bool = False) -> dict[str, Any]:
        """The columns the session sets on a proposed trial (a new or a left-over one)."""
        stats = self.prepared.space.stats(slot.architecture)
        fields: dict[str, Any] = {
            "predicted_latency_ms": slot.predicted_latency_ms,
            "size_bytes": stats.bytes,
            "metric_name": self.prepared.metric_name,
            "extra": {"batch": slot.batch, "parameters": stats.parameters,
                      "budget_ms": round(self.prepared.budget_ms, 4),
                      **({"infeasible": True} if infeasible else {})},
        }
        if infeasible:
            fields.update(error="infeasible: predicted latency over budget", fidelity=0,
                          finished=True)
            if not new:
                fields["state"] = "pruned"
        return fields

    def _replay(self, slot: _Slot, stored: Any) -> None:
        infeasible = bool((stored.extra or {}).get("infeasible"))
        state = "infeasible" if infeasible else stored.state
        self._fill(slot.number, state, stored.metric_value, slot.predicted_latency_ms)
        if infeasible:
            self.progress.infeasible += 1
            return
        self.progress.replayed += 1
        self._count(stored.state, stored.metric_value, slot.predicted_latency_ms)

    def _count(self, state: str, metric: float | None, latency_ms: float) -> None:
        """Progress of one evaluated trial, new or replayed from the store."""
        self.progress.evaluated += 1
        if state == "failed":
            self.progress.failed += 1
        elif metric is not None and self.prepared.objective.feasible(latency_ms):
            best = self.progress.best_feasible
            self.progress.best_feasible = metric if best is None else max(best, metric)

    def _fill(self, number: int, state: str, metric: float | None, latency: float) -> None:
        slot = self._slots[number]
        slot.result = self.prepared.make_result(number, slot.architecture, state, metric, latency,
                                                slot.batch)

    def _maybe_tell(self) -> None:
        """Tell finished batches, oldest first: never a batch before an older one."""
        while self._batches and all(slot.result is not None for slot in self._batches[0]):
            batch = self._batches.popleft()
            self.prepared.controller.tell([slot.result for slot in batch])
            for slot in batch:
                self._slots.pop(slot.number, None)

    def _notify(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.progress)
