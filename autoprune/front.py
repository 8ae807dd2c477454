"""The Pareto front out of the store: rows for tables, CSV/JSON and plots.

A front member is a finished trial with a metric (complete, or pruned early by ASHA at a
lower fidelity) that no other such trial beats on both metric and latency. Latency is the
re-measured one where a trial was exported and measured, else the predicted one.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from autoprune.errors import SpaceError
from autoprune.objectives import pareto_front
from autoprune.space import Architecture

CLOSEST = 5  # trials shown instead of the front when none meets the budget

# What `autoprune trials --format csv|json` adds to every stored column, so that the plot can
# be rebuilt elsewhere without the front or the budget being recomputed there.
TRIAL_EXTRA_FIELDS: tuple[str, ...] = ("architecture_summary", "latency_ms", "infeasible", "on_front",
                                       "budget_ms")


@dataclass(frozen=True)
class FrontRow:
    number: int
    state: str
    metric_name: str | None
    metric: float
    latency_ms: float
    predicted_latency_ms: float | None
    measured_latency_ms: float | None
    size_bytes: int | None
    fidelity: int | None
    feasible: bool
    on_front: bool
    budget_ms: float | None
    architecture: str

    @property
    def size_mb(self) -> float | None:
        return None if self.size_bytes is None else self.size_bytes / 1e6

    def to_dict(self) -> dict[str, Any]:
        values = {**asdict(self), "size_mb": self.size_mb}
        return {name: values[name] for name in FRONT_FIELDS}


# The columns of `autoprune pareto --format csv|json`, size in MB beside the size in bytes.
_COLUMNS = tuple(FrontRow.__dataclass_fields__)
FRONT_FIELDS: tuple[str, ...] = (*_COLUMNS[:_COLUMNS.index("size_bytes") + 1], "size_mb",
                                 *_COLUMNS[_COLUMNS.index("size_bytes") + 1:])


def by_latency(row: FrontRow) -> tuple[float, float, int]:
    """Fastest first; among equally fast rows the better metric, then the lower number."""
    return (row.latency_ms, -row.metric, row.number)


def trial_latency(trial: Any, measured: bool = True) -> float | None:
    if measured and trial.measured_latency_ms is not None:
        return trial.measured_latency_ms
    return trial.predicted_latency_ms


def architecture_summary(architecture_json: str) -> str:
    # Listing a job must not fail on one odd row (hand-made or from an older space): blank it.
    try:
        return Architecture.from_json(architecture_json).summary()
    except (SpaceError, ValueError):
        return ""


def is_infeasible(trial: Any) -> bool:
    """Skipped before any fine-tune because its predicted latency was over the budget."""
    return bool((trial.extra or {}).get("infeasible"))


def front_rows(trials: Sequence[Any], budget_ms: float | None, measured: bool = True) -> list[FrontRow]:
    """Every trial with a metric and a latency, marked feasible and on-front, by latency.

    ``measured=False`` ranks the trials as the search saw them, by predicted latency: an export
    records a measured latency on its trial, which would otherwise move it on or off the front.
    """
    usable = [t for t in trials if t.metric_value is not None
              and trial_latency(t, measured) is not None and t.state in ("complete", "pruned")]
    points = [(-t.metric_value, trial_latency(t, measured)) for t in usable]
    front = set(pareto_front(points)) if points else set()
    rows = []
    for index, trial in enumerate(usable):
        latency = float(trial_latency(trial, measured))  # type: ignore[arg-type]
        rows.append(FrontRow(
            number=trial.number, state=trial.state, metric_name=trial.metric_name,
            metric=float(trial.metric_value), latency_ms=latency,
            predicted_latency_ms=trial.predicted_latency_ms,
            measured_latency_ms=trial.measured_latency_ms, size_bytes=trial.size_bytes,
            fidelity=trial.fidelity, feasible=budget_ms is None or latency <= budget_ms,
            on_front=index in front, budget_ms=budget_ms,
            architecture=architecture_summary(trial.architecture_json),
        ))
    return sorted(rows, key=by_latency)


def job_budget_ms(job: Any, trials: Sequence[Any]) -> float | None:
    """The job's budget in ms, as the runner recorded it (``extra.budget_ms``) or as specified."""
    for trial in trials:
        budget = (trial.extra or {}).get("budget_ms")
        if budget is not None:
            return float(budget)
    budget = _latency_spec(job).get("budget_ms")
    return None if budget is None else float(budget)


def latency_axis_label(job: Any) -> str:
    """``latency (ms, batch B, seq L)``: a latency means little without the shape it was taken at."""
    latency = _latency_spec(job)
    batch, seq_len = latency.get("batch"), latency.get("seq_len")
    if batch is None or seq_len is None:
        return "latency (ms)"
    return f"latency (ms, batch {batch}, seq {seq_len})"


def _latency_spec(job: Any) -> dict[str, Any]:
    try:
        spec = json.loads(job.spec_json)
    except (TypeError, ValueError):
        return {}
    latency = spec.get("latency") if isinstance(spec, dict) else None
    return latency if isinstance(latency, dict) else {}


def best_within_budget(trials: Sequence[Any], budget_ms: float | None, top: int,
                       measured: bool) -> list[FrontRow]:
    """The ``top`` complete trials within the budget, best metric first (lower latency breaks
    ties): what ``verify`` measures (``measured=False``: as the search ranked them) and
    ``export --confirm`` exports (``measured=True``: a re-measured latency counts)."""
    rows = [row for row in front_rows(trials, budget_ms, measured=measured)
            if row.feasible and row.state == "complete"]
    rows.sort(key=lambda row: (-row.metric, row.latency_ms, row.number))
    return rows[:top]


def best_feasible(rows: Sequence[FrontRow]) -> FrontRow | None:
    feasible = [row for row in rows if row.feasible and row.state == "complete"]
    return max(feasible, key=lambda row: (row.metric, -row.latency_ms)) if feasible else None


def closest_to_budget(rows: Sequence[FrontRow], n: int = CLOSEST) -> list[FrontRow]:
    """The ``n`` fastest rows: when every row is over the budget, the ones nearest to it."""
    return sorted(rows, key=by_latency)[:n]


@dataclass(frozen=True)
class FrontReport:
    """A job's front, and what to show when there is no front or no feasible trial."""

    job_id: int
    job_name: str
    metric_name: str
    budget_ms: float | None
    latency_label: str
    rows: list[FrontRow]  # every trial with a metric and a latency, by latency
    trials: list[Any]

    @property
    def front(self) -> list[FrontRow]:
        return [row for row in self.rows if row.on_front]

    @property
    def any_feasible(self) -> bool:
        return any(row.feasible for row in self.rows)

    @property
    def shown(self) -> list[FrontRow]:
        """The front, or the trials closest to the budget when none meets it."""
        return self.front if self.any_feasible else closest_to_budget(self.rows)

    @property
    def best(self) -> FrontRow | None:
        return best_feasible(self.rows)

    def no_metric_reason(self) -> str:
        """Why there is nothing to show: no trial yet, or none with a metric (and why not)."""
        if not self.trials:
            return f"job {self.job_id} has no trials yet"
        infeasible = [t for t in self.trials if is_infeasible(t)]
        counts = Counter(t.state for t in self.trials if not is_infeasible(t))
        parts = [f"{n} {state}" for state, n in sorted(counts.items())]
        if infeasible:
            over = "over the budget" if self.budget_ms is None else f"over the {self.budget_ms:.2f} ms budget"
            parts.insert(0, f"{len(infeasible)} skipped as predicted {over}")
            fastest = min((t for t in infeasible if t.predicted_latency_ms is not None),
                          key=lambda t: t.predicted_latency_ms, default=None)
            if fastest is not None:
                parts[0] += (f", the fastest trial {fastest.number} at "
                             f"{fastest.predicted_latency_ms:.2f} ms")
        return f"no trial of job {self.job_id} has a metric yet ({'; '.join(parts)})"

    def no_feasible_reason(self) -> str:
        shown = len(self.shown)
        return (f"no trial of job {self.job_id} meets the {self.budget_ms:.2f} ms budget: "
                f"the {shown} closest to it (fastest) are shown instead")


def front_report(job: Any, trials: Sequence[Any]) -> FrontReport:
    trials = list(trials)
    budget = job_budget_ms(job, trials)
    metric_name = next((t.metric_name for t in trials if t.metric_name), None) or "metric"
    return FrontReport(job_id=job.id, job_name=job.name, metric_name=metric_name, budget_ms=budget,
                       latency_label=latency_axis_label(job), rows=front_rows(trials, budget),
                       trials=trials)


def trial_rows(job: Any, trials: Sequence[Any]) -> list[dict[str, Any]]:
    """Every stored column of every trial plus ``TRIAL_EXTRA_FIELDS`` (for CSV/JSON)."""
    budget = job_budget_ms(job, trials)
    on_front = {row.number for row in front_rows(trials, budget) if row.on_front}
    rows = []
    for trial in trials:
        rows.append({
            **trial.to_dict(),
            "architecture_summary": architecture_summary(trial.architecture_json),
            "latency_ms": trial_latency(trial),
            "infeasible": is_infeasible(trial),
            "on_front": trial.number in on_front,
            "budget_ms": budget,
        })
    return rows
