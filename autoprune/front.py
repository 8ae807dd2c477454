"""The Pareto front out of the store: rows for tables, CSV/JSON and plots.

A front member is a finished trial with a metric (complete, or pruned early by ASHA at a
lower fidelity) that no other such trial beats on both metric and latency. Latency is the
re-measured one where a trial was exported and measured, else the predicted one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from autoprune.objectives import pareto_front
from autoprune.space import Architecture


@dataclass(frozen=True)
class FrontRow:
    number: int
    state: str
    metric: float
    latency_ms: float
    predicted_latency_ms: float | None
    measured_latency_ms: float | None
    size_bytes: int | None
    fidelity: int | None
    feasible: bool
    on_front: bool
    architecture: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def trial_latency(trial: Any) -> float | None:
    return trial.measured_latency_ms if trial.measured_latency_ms is not None else trial.predicted_latency_ms


def front_rows(trials: Sequence[Any], budget_ms: float | None) -> list[FrontRow]:
    """Every trial with a metric and a latency, marked feasible and on-front, by latency."""
    usable = [t for t in trials if t.metric_value is not None and trial_latency(t) is not None
              and t.state in ("complete", "pruned")]
    points = [(-t.metric_value, trial_latency(t)) for t in usable]
    front = set(pareto_front(points)) if points else set()
    rows = []
    for index, trial in enumerate(usable):
        latency = float(trial_latency(trial))
        rows.append(FrontRow(
            number=trial.number, state=trial.state, metric=float(trial.metric_value),
            latency_ms=latency, predicted_latency_ms=trial.predicted_latency_ms,
            measured_latency_ms=trial.measured_latency_ms, size_bytes=trial.size_bytes,
            fidelity=trial.fidelity, feasible=budget_ms is None or latency <= budget_ms,
            on_front=index in front,
            architecture=Architecture.from_json(trial.architecture_json).summary(),
        ))
    return sorted(rows, key=lambda row: (row.latency_ms, -row.metric))


def job_budget_ms(job: Any, trials: Sequence[Any]) -> float | None:
    """The job's budget in ms, as the runner recorded it (``extra.budget_ms``) or as specified."""
    for trial in trials:
        budget = (trial.extra or {}).get("budget_ms")
        if budget is not None:
            return float(budget)
    spec = json.loads(job.spec_json)
    return spec.get("latency", {}).get("budget_ms")


def best_feasible(rows: Sequence[FrontRow]) -> FrontRow | None:
    feasible = [row for row in rows if row.feasible and row.state == "complete"]
    return max(feasible, key=lambda row: (row.metric, -row.latency_ms)) if feasible else None
