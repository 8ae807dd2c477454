"""``autoprune verify``: measure a job's best candidates on this machine before one is exported.

The search chose by *predicted* latency. A latency model is only as good as the period it was
profiled in: on one Intel Xeon a profile taken in a fast period put dense at 14.9 ms, two
hours later the host ran it at 18.2 ms, and the compressed models slowed down more than dense
did (0.503x and 0.309x of dense measured where 0.459x and 0.285x were predicted), so two
exports of an end-to-end run came out 4-9% over their budgets although the search had held
back the model's own held-out error. Dividing by dense cancels a uniform slow-down, not that.

So before a fine-tune is spent on exporting one, the ``top`` best candidates that the search
saw within the budget (complete trials, best search metric first) are built (their structure
and bit-widths; the weights do not change the latency, so no fine-tune is replayed) and timed
here with the latency protocol, in interleaved rounds with the dense model as the reference,
in a fresh process (:mod:`autoprune.fresh_process`; also under ``search --verify``, whose
own process has just searched), under the export's :class:`~autoprune.drift.DriftGuard`.
Each figure is put on the latency model's scale (measured ratio to dense times the profiled
dense latency), the scale of the budget and the predictions, and stored on its trial as the
re-measured latency (``autoprune pareto`` shows it beside the prediction).
:attr:`VerifyReport.best` is the candidate with the best search metric that measures within
the budget: the one to export.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from autoprune.drift import DEFAULT_DRIFT_GUARD, DriftGuard, measure_steadily
from autoprune.errors import LatencyModelError, VerifyError
from autoprune.front import best_within_budget, job_budget_ms
from autoprune.fresh_process import run_in_fresh_process

DEFAULT_TOP = 5


@dataclass(frozen=True)
class VerifiedCandidate:
    """One candidate measured here; latencies on the latency model's scale (ms)."""

    trial: int
    architecture: str
    metric: float
    predicted_latency_ms: float
    measured_latency_ms: float
    ratio_to_dense: float       # measured in the same rounds as dense
    p10_ms: float
    p90_ms: float
    within_budget: bool | None  # under the budget less the margin; None: the job has no budget

    @property
    def error(self) -> float:
        """Measured over predicted, minus 1 (positive: slower than the search believed)."""
        return self.measured_latency_ms / self.predicted_latency_ms - 1


@dataclass(frozen=True)
class VerifyReport:
    job: int
    budget_ms: float | None
    margin: float                    # a candidate fits when measured <= budget_ms * (1 - margin)
    profiled_dense_ms: float
    measured_dense_ms: float         # this machine now, raw
    dense_drifts: list[float]        # dense measured / profiled - 1, every attempt (none: the
                                     # profile is another machine's, measured once, no guard)
    candidates: list[VerifiedCandidate] = field(default_factory=list)  # best metric first
    seconds: float = 0.0
    created_at: str = ""

    @property
    def best(self) -> VerifiedCandidate | None:
        """The best search metric among the candidates that measure within the budget."""
        return next((c for c in self.candidates if c.within_budget is not False), None)

    @property
    def predicted_best(self) -> VerifiedCandidate | None:
        """The candidate the predictions alone would have exported."""
        return self.candidates[0] if self.candidates else None

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {**asdict(self), "best_trial": None if best is None else best.trial,
                "candidates": [{**asdict(c), "error": round(c.error, 4)} for c in self.candidates]}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> VerifyReport:
        names = VerifiedCandidate.__dataclass_fields__
        candidates = [VerifiedCandidate(**{k: v for k, v in c.items() if k in names})
                      for c in values["candidates"]]
        fields = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**{**fields, "candidates": candidates})

    def _less_margin(self) -> str:
        return f" less {self.margin:.0%}" if self.margin else ""

    def summary_lines(self) -> list[str]:
        drift = self.measured_dense_ms / self.profiled_dense_ms - 1
        taken = len(self.dense_drifts)
        lines = [f"dense: {self.measured_dense_ms:.2f} ms here now, {drift:+.0%} off its profiled "
                 f"{self.profiled_dense_ms:.2f} ms ("
                 + (f"{taken} measurement{'s' if taken != 1 else ''})" if taken
                    else "profiled on another machine: measured once)")]
        best, first = self.best, self.predicted_best
        if best is None:
            lines.append(f"none of the {len(self.candidates)} candidates measures within the "
                         f"{self.budget_ms:.2f} ms budget{self._less_margin()} on this machine")
        elif first is not None and best.trial != first.trial:
            lines.append(f"trial {first.trial} (best predicted) measures {first.measured_latency_ms:.2f} ms, "
                         f"over the {self.budget_ms:.2f} ms budget{self._less_margin()}: export "
                         f"trial {best.trial} instead")
        else:
            lines.append(f"export trial {best.trial}: the best candidate, and it measures within "
                         "the budget" if self.budget_ms is not None else
                         f"export trial {best.trial}: the best candidate (the job has no budget)")
        return lines


def candidates_to_verify(trials: list[Any], budget_ms: float | None, top: int) -> list[Any]:
    """The ``top`` complete trials within the budget by predicted latency, best metric first
    (lower predicted latency breaks ties), as the search ranked them."""
    return best_within_budget(trials, budget_ms, top, measured=False)


def verify(store: Any, job_id: int, top: int = DEFAULT_TOP, *, margin: float = 0.0,
           protocol: Any = None, drift_guard: DriftGuard = DEFAULT_DRIFT_GUARD,
           record: bool = True, progress: Any = None, factory: Any = None) -> VerifyReport:
    """Measure the ``top`` best candidates of job ``job_id`` here (see the module docstring).

    ``margin``: the fraction of the budget a measurement must stay under to fit, room for the
    measurement's own noise (a later measurement, the export's, differs by it: two passes over
    the same 50 models differed by 1.9% in the median, 5.0% at the 95th percentile, on an
    Intel Xeon). Refuses (:class:`~autoprune.errors.VerifyError`, exit code 2) ``top`` below
    1, ``margin`` outside [0, 1), a job whose latency model is not a readable file, and a job
    with no complete trial within its budget.
    ``record``: store each figure on its trial as the re-measured latency. ``factory``: builds
    the models (default: the compression engine on a randomly initialised copy of the job's
    base model, as the profile measured them).
    """
    from autoprune.latency import DEFAULT_PROTOCOL, LatencyModel, NullProgress
    from autoprune.latency.factory import base_shape
    from autoprune.space import Architecture, SearchSpace
    from autoprune.spec import JobSpec

    if top < 1:
        raise VerifyError(f"--top {top}: must be >= 1")
    if not 0 <= margin < 1:
        raise VerifyError(f"--margin {margin}: must be in [0, 1)")
    began = time.monotonic()
    job = store.get_job(job_id)
    spec = JobSpec.from_json(job.spec_json)
    path = spec.latency.model
    if path is None or not path.is_file():
        raise VerifyError(f"job {job_id} has no latency-model file ({path or 'none set'}): "
                          "there is no profiled scale to verify its candidates on")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # another device: the figures still compare
            latency = LatencyModel.load(path)
    except LatencyModelError as exc:
        raise VerifyError(f"job {job_id}: {exc}") from exc
    trials = store.trials(job_id)
    budget = job_budget_ms(job, trials)
    rows = candidates_to_verify(trials, budget, top)
    if not rows:
        where = "within its budget" if budget is not None else "with a metric"
        raise VerifyError(f"job {job_id} has no complete trial {where}: nothing to verify")

    # A factory handed in (tests' synthetic devices) lives in this process and is timed here;
    # the default one is rebuilt in a fresh process for each measurement (see fresh_process).
    fresh = factory is None
    space = SearchSpace.load(spec.space, base_shape(spec.model) if fresh else factory.shape)
    by_number = {trial.number: trial for trial in trials}
    archs = {row.number: Architecture.from_json(by_number[row.number].architecture_json) for row in rows}
    dense = space.dense()
    progress = progress or NullProgress()
    protocol = protocol or DEFAULT_PROTOCOL

    def measure_once() -> dict[str, Any]:
        if fresh:
            progress.start("verify: candidates and dense, interleaved, in a fresh process", 1)
            figures = run_in_fresh_process(measure_candidates, spec.model, latency.backend,
                                           latency.batch, latency.seq_len, latency.threads,
                                           list(archs.values()), dense, protocol)
            progress.advance()
            return figures
        progress.start("verify: candidates and dense, interleaved", len(archs))
        return measure_candidates_with(factory, latency.backend, latency.batch, latency.seq_len,
                                       latency.threads, list(archs.values()), dense, protocol,
                                       progress)

    # Only a profile of this machine says how fast dense should run here (as in export).
    here = not latency.device_differences()
    figures, drifts = measure_steadily(
        measure_once, dense.hash, latency.dense_ms if here else None, drift_guard,
        on_wait=lambda attempt, drift: progress.start(
            f"verify: dense {drift:+.0%} off its profile, waiting {drift_guard.wait_s:.0f} s "
            f"(attempt {attempt + 1} of {drift_guard.attempts})", 1))
    dense_now = figures[dense.hash].median_ms

    def on_profile_scale(ms: float) -> float:  # the ratio to dense now, times profiled dense
        return ms / dense_now * latency.dense_ms

    verified = []
    for row in rows:
        figure = figures[archs[row.number].hash]
        scaled = on_profile_scale(figure.median_ms)
        verified.append(VerifiedCandidate(
            trial=row.number, architecture=row.architecture, metric=row.metric,
            predicted_latency_ms=float(row.latency_ms), measured_latency_ms=round(scaled, 4),
            ratio_to_dense=round(figure.median_ms / dense_now, 4),
            p10_ms=round(on_profile_scale(figure.p10_ms), 4),
            p90_ms=round(on_profile_scale(figure.p90_ms), 4),
            within_budget=None if budget is None else scaled <= budget * (1 - margin)))
    report = VerifyReport(job=job_id, budget_ms=budget, margin=margin, profiled_dense_ms=float(latency.dense_ms),
                          measured_dense_ms=round(dense_now, 4), dense_drifts=drifts,
                          candidates=verified, seconds=round(time.monotonic() - began, 2),
                          created_at=datetime.now(UTC).isoformat(timespec="seconds"))
    if record:
        for candidate in verified:
            store.update_trial(job_id, candidate.trial, measured_latency_ms=candidate.measured_latency_ms,
                               extra={"verified": {"ratio_to_dense": candidate.ratio_to_dense,
                                                   "dense_ms": report.measured_dense_ms,
                                                   "at": report.created_at}})
    return report


def measure_candidates(model: str, backend: str, batch: int, seq_len: int, threads: int,
                       archs: list[Any], dense: Any, protocol: Any) -> dict[str, Any]:
    """Figures by architecture hash of ``archs`` and ``dense``, built by the compression
    engine from a random copy of ``model``: what :func:`run_in_fresh_process` runs."""
    from autoprune.latency.factory import CompressFactory

    return measure_candidates_with(CompressFactory(model), backend, batch, seq_len, threads,
                                   archs, dense, protocol)


def measure_candidates_with(factory: Any, backend: str, batch: int, seq_len: int, threads: int,
                            archs: list[Any], dense: Any, protocol: Any,
                            progress: Any = None) -> dict[str, Any]:
    """Every architecture in one interleaved group with ``dense`` as the reference."""
    from autoprune.latency.profile import make_backend, measure_architectures

    runner = make_backend(backend, factory, batch, seq_len, threads)
    return dict(measure_architectures(runner.model, archs, protocol, threads=runner.threads,
                                      group_size=len(archs), reference=dense, progress=progress))


def report_json(report: VerifyReport) -> str:
    return json.dumps(report.to_dict(), indent=2) + "\n"
