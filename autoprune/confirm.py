"""``autoprune export --trial best --confirm C``: export the C best candidates, keep the best.

The search ranks candidates by a short fine-tune; the model a user takes home trains for
thousands of steps in the export's final phase, and the two rankings disagree on models that
drop layers. In the 0.3x searches of the end-to-end benchmark, the 400-step estimate put a
5-layer uniform model (0.8853) above a 4-layer importance-guided one (0.8796), which, trained
as the export trains it, scored 0.8911 against the uniform model's 0.8796
(``benchmarks/pick_at_export.py``; the uniform model's figure is the Zen 4 run's export).
One seed's estimate cannot tell them apart either: the uniform model led in two seeds of
three. Confirming makes the kept model better; it does not make a search beat a baseline
confirmed the same way: at the guided start's own latency, the uniform model ``h4/f1/b8`` in 4
layers exported 0.46 below it, 0.23 above it and 1.26 below it at fine-tune seeds 0, 1 and 2.

So the C best candidates within the budget (by the search's metric; a candidate that a
verification or an earlier export measured over the budget is left out) are each exported
with the same ``steps`` to ``DIR/trial-N``; the best export that re-measures within the
budget is the one to keep (``DIR/best`` links to it, ``DIR/confirm.json`` lists them all).
The choice is made on the dev set, as the search's own choices are: a comparison with a
baseline is fair only when the baseline is confirmed the same way (``end_to_end.py
--confirm`` does both).
"""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from autoprune.errors import ExportError
from autoprune.front import best_within_budget, job_budget_ms

REPORT_FILE = "confirm.json"
BEST_LINK = "best"


@dataclass(frozen=True)
class ConfirmedCandidate:
    trial: int
    architecture: str
    search_metric: float
    metric: float                # the export's, on the whole dev set
    measured_latency_ms: float   # the export's re-measurement, on the latency model's scale
    within_budget: bool | None   # None: the job has no budget
    directory: str


@dataclass(frozen=True)
class ConfirmReport:
    job: int
    steps: int | None
    budget_ms: float | None
    candidates: list[ConfirmedCandidate] = field(default_factory=list)  # search's order

    @property
    def best(self) -> ConfirmedCandidate | None:
        """The best exported metric among the candidates that re-measure within the budget."""
        fitting = [c for c in self.candidates if c.within_budget is not False]
        return max(fitting, key=lambda c: (c.metric, -c.measured_latency_ms)) if fitting else None

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {**asdict(self), "best_trial": None if best is None else best.trial}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ConfirmReport:
        return cls(job=values["job"], steps=values["steps"], budget_ms=values["budget_ms"],
                   candidates=[ConfirmedCandidate(**c) for c in values["candidates"]])

    def summary_lines(self) -> list[str]:
        lines = [f"trial {c.trial}: search {c.search_metric:.4f} -> export {c.metric:.4f}, "
                 f"{c.measured_latency_ms:.2f} ms"
                 + ("" if c.within_budget is None else
                    " (within budget)" if c.within_budget else " (over budget)")
                 for c in self.candidates]
        best = self.best
        lines.append("no export re-measures within the budget" if best is None else
                     f"kept trial {best.trial}: {best.directory}")
        return lines


def confirm(store: Any, job_id: int, count: int, out_dir: str | Path, *,
            steps: int | None = None, force: bool = False, progress: bool = True,
            **export_options: Any) -> ConfirmReport:
    """Export the ``count`` best candidates of job ``job_id`` under ``out_dir`` (see the
    module docstring). Refuses (:class:`~autoprune.errors.ExportError`, exit code 2, nothing
    written) ``count`` below 1, a job with no complete trial within its budget, and a
    non-empty ``out_dir`` unless ``force`` and it holds an earlier confirmation, which is
    then replaced. ``export_options`` go to :func:`autoprune.export.export_trial`."""
    from autoprune.export import export_trial

    if count < 1:
        raise ExportError(f"--confirm {count}: must be >= 1")
    job = store.get_job(job_id)
    trials = store.trials(job_id)
    budget = job_budget_ms(job, trials)
    # Latencies measured here (verify, earlier exports) count over predictions.
    rows = best_within_budget(trials, budget, count, measured=True)
    if not rows:
        raise ExportError(f"job {job_id}: no complete trial meets the budget, so there is "
                          "nothing to confirm")
    out = Path(out_dir).expanduser().resolve()
    earlier = None
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not (force and (out / REPORT_FILE).is_file()):
            raise ExportError(f"--out {out}: exists and is not empty"
                              + ("" if force else " (--force replaces an earlier confirmation)")
                              if out.is_dir() else f"--out {out}: is a file")
        # Set aside, not deleted, until the new confirmation is complete: a failed or
        # interrupted one must not cost the user the earlier one.
        earlier = out.parent / f".{out.name}.confirm-{uuid.uuid4().hex[:8]}"
        out.rename(earlier)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        confirmed = []
        for row in rows:
            directory = out / f"trial-{row.number}"
            report = export_trial(store, job_id, row.number, directory, steps=steps,
                                  force=True, progress=progress, **export_options)
            confirmed.append(ConfirmedCandidate(
                trial=row.number, architecture=row.architecture, search_metric=row.metric,
                metric=float(report.metric), measured_latency_ms=float(report.stored_latency_ms),
                within_budget=None if budget is None else report.stored_latency_ms <= budget,
                directory=str(directory)))
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        if earlier is not None:
            earlier.rename(out)
        raise
    if earlier is not None:
        shutil.rmtree(earlier, ignore_errors=True)
    result = ConfirmReport(job=job_id, steps=steps, budget_ms=budget, candidates=confirmed)
    best = result.best
    if best is not None:
        (out / BEST_LINK).symlink_to(Path(best.directory).name, target_is_directory=True)
    (out / REPORT_FILE).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result
