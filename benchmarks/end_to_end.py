"""Does the search pay? Search, export, re-measure, and compare with the uniform baseline.

For each (latency budget, space) and seed, on MiniLM + SST-2 (batch 1, sequence length 128,
the default 2,000-step teacher of the estimation benchmark):

1. **search**: a real job (``evolution``; cheap distilled fine-tunes with ASHA rungs; local
   executor) under ``budget_ratio`` x the dense latency of this machine's latency model, its
   initial population warm-started with the top ``--warm-start`` models of the uniform sweep
   and the top ``--guided-start`` importance-guided allocations (global ranking of heads and
   neurons by the teacher's importance),
   aiming ``--margin`` under the budget (``latency.margin``: room for the latency model's
   error, so that the exported model re-measures within the budget); with ``--fill-to F``
   its children are grown until predicted at F of that (evolution's ``fill_to``);
2. with ``--verify K``, **verify**: the search's K best candidates within the budget are built
   and timed here (``autoprune verify``: the latency protocol, relative to dense in the same
   rounds) and the best that measures within the budget is the one exported (a profile
   taken in a fast period had exported models 4-9% over their budgets);
3. **export** its best feasible trial with a longer fine-tune (``--export-steps``), which
   re-measures its latency (the latency protocol, interleaved with the dense model, in a
   fresh process since 2026-11-27: ``autoprune.fresh_process``) and
   re-evaluates accuracy on the whole dev set; the other feasible front members are exported at
   the fidelity they reached (all of them, or ``--front``) to check that they re-measure within
   the budget;
   With ``--confirm C`` the C best candidates (as verify left them) are each exported and
   the best export that re-measures within the budget is kept (``autoprune export --confirm``):
   a 400-step estimate ranks models that drop layers below what their exports score;
4. **baseline**: a ``uniform`` job (the hand-crafted baseline: the same configuration in every
   layer, swept from the budget downwards) with ``--uniform-evaluations`` candidates, whose
   budget is the searched model's latency on the latency model's scale, predicted: the scale
   the uniform sweep selects on, given as a share of dense, since the baseline's job profiles
   the host afresh when it finds dense running faster. (An earlier version gave it the searched model's
   *re-measured* latency; the latency model over-predicts int8 and shallow models by 2-9%, so
   the baseline was held to a tighter budget than the model it was compared with and could
   not even choose that same model.) Its best trial is exported with the same
   ``--export-steps`` (with ``--confirm C``, its C best, the best export kept, as for the
   search) and re-measured; both re-measured latencies are reported. The difference
   of the two dev metrics is the search's gain at matched latency.

Jobs live in ``$AUTOPRUNE_HOME/benchmarks/end_to_end.db`` and exports under
``$AUTOPRUNE_HOME/benchmarks/end_to_end/``; finished steps are reused, so an interrupted run
resumes. ``--phase search`` runs only the searches (they need no quiet machine), ``--phase
export`` the rest (latency is measured: run it on a quiet machine).

Writes ``benchmarks/results/end_to_end.json`` with keys ``runs`` (one per budget and seed:
``budget_ratio``, ``space``, ``seed``, ``measured_ratio``, ``metric``, ``teacher_metric``,
``uniform_metric_at_matched_latency``, ...), ``front_within_budget_share``,
``searched_minus_uniform_median`` (metric on its 0-1 scale: 1 point = 0.01), ``targets``, and
``teacher_minus_uniform_median``: how far the uniform baseline is below the teacher, which
bounds the search's gain unless its model beats the teacher. With ``--confirm C`` each run
also has ``searched_minus_uniform_unconfirmed`` (and the file its median): the gain had each
side exported only its first pick (the search's verified best, the baseline's best by its
estimate), both read from the confirmed exports, so that the two protocols are compared on
the same models.

The defaults are the settings of the Intel 24-candidate runs (24 candidates per search, one
400-step estimate each, 5 verified, the 2 best of each side exported with 2,000 steps, the
margin from the latency model's held-out error, this machine profiled first, each seed also
seeding the fine-tunes: every target met at 0.3x, all but the gain at 0.5x); the first runs'
settings are in ``FIRST_SETTINGS``.

    python benchmarks/end_to_end.py --phase search    # the searches (no quiet machine needed)
    python benchmarks/end_to_end.py                   # then the rest: 2 budgets x 3 seeds
    python benchmarks/end_to_end.py --seeds 1 --budgets 0.5:bert-structured --merge
    python benchmarks/end_to_end.py --rungs 50,100    # ASHA's first cut after 50 steps, at the median

On an Intel Xeon (2 cores) each search takes 10-30 min and each run's verification, exports
and baseline about 20 min: about 4 hours for both budgets and three seeds, plus the teacher.

``--latency-model here`` (the default) profiles this machine first (``latency.profile: auto``
on a file under ``$AUTOPRUNE_HOME``: the first job measures it, about 1.5 minutes on a Zen 4,
and validates it for ``--margin auto``; later jobs on the same machine reuse it, unless dense
runs more than 10% faster than it, when that job profiles again and the runs after it are
budgeted with the new file); ``--latency-model latency_models/this-cpu-torch-b1-s128.json``
uses the committed one. Two machines of one CPU model share a fingerprint and can still run
at different speeds (a Zen 4 ran dense 14-28% faster than another Zen 4's profile), which a
profile of another machine cannot know.

With ``--no-finetune-seeds`` only the controller's seed changes between seeds and every
fine-tune (search, exports, uniform baseline) runs at seed 0, so two seeds that pick the same
architecture report the same accuracy to the last digit, and the median over seeds does not
sample training noise (about a point for one 1,000-step export: ``selection_fidelity.py
--final``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from e2e_targets import GAIN_SEEDS, gain_seeds, meets_accuracy_target, meets_gain_target, tolerance

from autoprune.confirm import REPORT_FILE as CONFIRM_REPORT
from autoprune.confirm import ConfirmReport, confirm
from autoprune.export import export_trial
from autoprune.front import best_feasible, front_rows, job_budget_ms
from autoprune.latency.fingerprint import device_fingerprint, differences
from autoprune.latency.profile import wait_until_quiet
from autoprune.runner.prepare import autoprune_home
from autoprune.runner.service import HEARTBEAT_TIMEOUT_S, run_job
from autoprune.spec import EstimateSpec, JobSpec
from autoprune.store import Store
from autoprune.verify import VerifyReport, report_json, verify

REPO = Path(__file__).resolve().parent.parent
GLUE = Path(os.environ.get("AUTOPRUNE_SHARED", REPO.parent / "shared")) / "data" / "glue"
RESULTS = REPO / "benchmarks" / "results" / "end_to_end.json"
LATENCY_MODEL = REPO / "latency_models" / "this-cpu-torch-b1-s128.json"
OWNER = "end-to-end-benchmark"
EXPORTS = autoprune_home() / "benchmarks" / "end_to_end"
# --latency-model here: profiled on this machine by the first job that needs it.
HERE_LATENCY_MODEL = autoprune_home() / "benchmarks" / "latency-model-here-torch-b1-s128.json"
# --verify-margin: the median difference of two measurement passes over the same models on an
# Intel Xeon (1.9%), room for the export's own measurement noise.
DEFAULT_VERIFY_MARGIN = 0.02
# The settings of the first runs (2026-11). A setting at its first value adds nothing to the
# names of a run's jobs and exports, and results written before an option existed ran with its
# first value. The defaults of the options moved on since (to the settings of the Intel
# 24-candidate runs) without renaming the jobs and exports of the runs before.
FIRST_SETTINGS: dict[str, Any] = {
    "evaluations": 16, "margin": 0.03, "export_steps": 1000, "latency_model": str(LATENCY_MODEL),
    "guided_start": 0, "guided_pick": "closest", "start_min_layers": 0, "rungs": None,
    "verify": 0, "verify_margin": DEFAULT_VERIFY_MARGIN, "confirm": 0, "fill_to": None,
    "finetune_seeds": False,
}
# What must match for --merge to put two sessions' runs in one result (a subset of the
# fingerprint's compared keys, so fingerprint.differences compares exactly these).
MERGE_DEVICE_KEYS = ("cpu_model", "cpu_id", "isa", "libraries")


def margin_option(text: str) -> float | str:
    return text if text == "auto" else float(text)


def latency_model_option(text: str) -> Path:
    return HERE_LATENCY_MODEL if text == "here" else Path(text).resolve()


def rungs_option(text: str) -> list[int]:
    return [int(item) for item in text.split(",")]


def default_rungs(args: argparse.Namespace) -> list[int]:
    """A quarter of ``--steps``, then ``--steps`` (eta 4): the rungs of every run before ``--rungs``."""
    return [args.steps // 4, args.steps]


def rungs(args: argparse.Namespace) -> list[int]:
    """ASHA's rungs in steps: ``--rungs``, or the default ones."""
    # Other scripts build job specs with a Namespace of their own, which may have no rungs.
    given = getattr(args, "rungs", None)
    return given if given is not None else default_rungs(args)


def rungs_tag(args: argparse.Namespace) -> str:
    """The job-name suffix of non-default rungs: ``-r50`` for 50,100 (the name of the first
    such run's jobs, 2026-11-27), else every rung (``-r50-100-200``)."""
    if args.rungs is None or args.rungs == default_rungs(args):
        return ""
    shown = args.rungs[:-1] if len(args.rungs) > 1 and args.rungs[-1] == 100 else args.rungs
    return "-r" + "-".join(str(rung) for rung in shown)


def job_spec(name: str, space: str, controller: dict[str, Any], latency: dict[str, Any],
             args: argparse.Namespace, finetune_seed: int | None = None,
             teacher_steps: int | None = None) -> JobSpec:
    """``teacher_steps``: the teacher's fine-tune length (None: the library's default recipe,
    2,000 steps on SST-2), for experiments with a stronger teacher."""
    estimate_rungs = rungs(args)
    return JobSpec.from_dict({
        "name": name,
        "model": "minilm-l6",
        "task": {"name": "sst2", "data_dir": str(GLUE / "SST-2")},
        "latency": {"model": str(args.latency_model), "profile": "auto", "batch": 1, "seq_len": 128,
                    **latency},
        "space": space,
        "controller": controller,
        "objective": {"kind": "constrained"},
        "estimate": {"steps": estimate_rungs[-1], "rungs": estimate_rungs,
                     "eval_samples": args.eval_samples, "finetune_seed": finetune_seed,
                     "teacher_steps": teacher_steps},
        "executor": {"kind": "local", "cpus_per_worker": args.threads},
    }, base_dir=REPO)


class NotRunYet(Exception):
    """``--phase report``: a step of this run has not been done."""


def run_or_reuse(store: Store, spec: JobSpec, report_only: bool = False) -> int:
    """The id of a completed job with this name, running it first if need be."""
    for job in store.list_jobs():
        if job.name == spec.name and job.state == "completed":
            return job.id
    if report_only:
        raise NotRunYet(spec.name)
    job_id = store.create_job(spec.to_json(), spec.name)
    store.claim_job(OWNER, heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S, job_id=job_id)
    started = time.perf_counter()
    run = run_job(store, job_id, OWNER, quiet=True, progress=True)
    if run.state != "completed":
        raise SystemExit(f"job {spec.name} ended {run.state}: {run.reason}")
    print(f"{spec.name}: job {job_id} done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return job_id


def export_or_reuse(store: Store, job_id: int, number: int, out: Path, steps: int | None,
                    report_only: bool = False) -> dict[str, Any]:
    report_file = out / "report.json"
    if report_file.is_file():
        return json.loads(report_file.read_text())
    if report_only:
        raise NotRunYet(str(out))
    export_trial(store, job_id, number, out, steps=steps, force=True, progress=True)
    return json.loads(report_file.read_text())


def confirm_or_reuse(store: Store, job_id: int, count: int, out: Path, steps: int | None,
                     report_only: bool = False) -> ConfirmReport:
    """``autoprune export --trial best --confirm count`` into ``out``, or its earlier report."""
    saved = out / CONFIRM_REPORT
    if saved.is_file():
        return ConfirmReport.from_dict(json.loads(saved.read_text()))
    if report_only:
        raise NotRunYet(str(out))
    report = confirm(store, job_id, count, out, steps=steps, force=True, progress=True)
    for line in report.summary_lines():
        print(f"confirm job {job_id}: {line}", file=sys.stderr)
    return report


def confirmed_report(confirmed: ConfirmReport, budgeted: bool = True) -> dict[str, Any]:
    """The kept export's ``report.json``: the best within the budget (``budgeted``; when none
    fits, the best export, which the run then reports over its budget), else the best export.
    The uniform baseline is not budgeted: without --confirm its export is kept whatever it
    re-measures, and its budget is the searched model's own predicted latency."""
    kept = confirmed.best if budgeted else None
    if kept is None:
        kept = max(confirmed.candidates, key=lambda c: (c.metric, -c.measured_latency_ms))
    return json.loads((Path(kept.directory) / "report.json").read_text())


def exported_metric(confirmed: ConfirmReport | None, trial: int) -> float | None:
    """The dev metric of ``trial``'s export among the confirmed candidates, if it was one."""
    if confirmed is None:
        return None
    return next((c.metric for c in confirmed.candidates if c.trial == trial), None)


def unconfirmed_gain(searched: float | None, uniform: float | None) -> float | None:
    return None if searched is None or uniform is None else round(searched - uniform, 4)


def matched_share_of_dense(predicted_ms: float, budget_ms: float, budget_ratio: float) -> float:
    """The share of dense the kept model is predicted at: its search's budget is ``budget_ratio``
    of the dense latency of the profile that predicted it."""
    return predicted_ms / (budget_ms / budget_ratio)


def rounded_median(values: list[float]) -> float | None:
    return round(statistics.median(values), 4) if values else None


def confirmed_summary(confirmed: ConfirmReport | None) -> dict[str, Any] | None:
    return None if confirmed is None else {
        "best_within_budget": None if confirmed.best is None else confirmed.best.trial,
        "candidates": [{"trial": c.trial, "architecture": c.architecture,
                        "search_metric": c.search_metric, "metric": c.metric,
                        "measured_latency_ms": c.measured_latency_ms,
                        "within_budget": c.within_budget} for c in confirmed.candidates]}


def verify_or_reuse(store: Store, job_id: int, top: int, margin: float, saved: Path,
                    report_only: bool = False) -> VerifyReport:
    """``autoprune verify`` of the search's ``top`` best candidates, kept in ``saved`` so that
    a resumed run exports the trial it picked then (a new measurement could pick another)."""
    if saved.is_file():
        return VerifyReport.from_dict(json.loads(saved.read_text()))
    if report_only:
        raise NotRunYet(str(saved))
    from autoprune.latency import RichProgress

    with RichProgress(transient=True) as bar:
        report = verify(store, job_id, top, margin=margin, progress=bar)
    for line in report.summary_lines():
        print(f"verify job {job_id}: {line}", file=sys.stderr)
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(report_json(report))
    return report


def on_profile_scale(report: dict[str, Any]) -> float:
    """The re-measured latency on the latency model's scale (what budgets and predictions use),
    as ``report.json`` records it for the trial's row."""
    return float(report["stored_latency_ms"])


def measured_share_of_dense(report: dict[str, Any]) -> float:
    """The re-measured latency as a share of dense measured in the same rounds: comparable
    across profiles, unlike milliseconds on a profile's scale."""
    return round(1.0 / float(report["speedup"]), 4)


def search_tag(space: str, ratio: float, seed: int, args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The name of a run's search job after ``e2e-search-`` (its exports' folder starts with
    it) and the evolution's options. Each setting that differs from its first value
    (``FIRST_SETTINGS``) adds to the name: another setting, other jobs and exports."""
    tag = f"{space}-{ratio:g}-s{seed}"
    if args.evaluations != FIRST_SETTINGS["evaluations"]:
        tag += f"-e{args.evaluations}"
    if args.margin != FIRST_SETTINGS["margin"]:
        tag += f"-m{args.margin}"
    tag += rungs_tag(args)  # other rungs: other trials, their own jobs and exports
    # --finetune-seeds: the run's seed also reseeds the fine-tunes of the search, its exports
    # and its uniform baseline (the teacher stays seed 0's), so the seeds sample training
    # noise; their own jobs and exports.
    if args.finetune_seeds:
        tag += "-fs"
    if args.latency_model == HERE_LATENCY_MODEL:  # other budgets: their own jobs and exports
        tag += "-here"
    options: dict[str, Any] = {"warm_start": args.warm_start}
    if args.guided_start:
        options.update(guided_start=args.guided_start, guided_pick=args.guided_pick)
        tag += f"-g{args.guided_start}"
        if args.guided_pick != "closest":
            tag += f"-{args.guided_pick[0]}"
    if args.start_min_layers:
        options.update(start_min_layers=args.start_min_layers)
        tag += f"-s{args.start_min_layers}"
    if args.fill_to is not None:  # children grown to the budget: their own jobs and exports
        options.update(fill_to=args.fill_to)
        tag += f"-f{args.fill_to:g}"
    return tag, options


def one_run(store: Store, ratio: float, space: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    tag, options = search_tag(space, ratio, seed, args)
    finetune_seed = seed if args.finetune_seeds else None
    searched = job_spec(f"e2e-search-{tag}", space,
                        {"name": "evolution", "evaluations": args.evaluations, "population": 8,
                         "seed": seed, "options": options},
                        {"budget_ratio": ratio, "margin": args.margin}, args, finetune_seed)
    report_only = args.phase == "report"
    job_id = run_or_reuse(store, searched, report_only)
    if args.phase == "search":
        return {}
    # Read now: a later job of this run (its baseline) may profile the host afresh.
    searched_with = latency_model_summary(args.latency_model)
    trials = store.trials(job_id)
    budget = job_budget_ms(store.get_job(job_id), trials)
    rows = front_rows(trials, budget, measured=False)
    best = best_feasible(rows)
    if best is None:
        raise SystemExit(f"{tag}: no feasible trial")
    predicted_best = best
    # --verify picks another trial to export, and so another uniform baseline: their own
    # exports and jobs, beside those of the same search without it.
    if args.verify:
        tag += f"-v{args.verify}-{args.verify_margin:g}"
    if args.confirm:  # another pick, so another uniform baseline: their own jobs and exports
        tag += f"-c{args.confirm}"
    # Exports with another number of steps live beside the default ones (the jobs are shared).
    exports = EXPORTS / tag / ("" if args.export_steps == FIRST_SETTINGS["export_steps"]
                               else f"steps-{args.export_steps}")
    verified = None
    if args.verify:
        verified = verify_or_reuse(store, job_id, args.verify, args.verify_margin,
                                   exports / "verify.json", report_only)
        if verified.best is not None:  # else: none fits here; export the predicted best anyway
            best = next(row for row in rows if row.number == verified.best.trial)
    # The trial exported without --confirm (the verified or predicted best): with it, the
    # gain of this first pick is recorded too, read from the same exports.
    first_pick = best
    confirmed = uniform_confirmed = None
    if args.confirm:
        # The candidates are the search's best within the budget as verify left them (its
        # measurements are on the trials): the same ones, whose exports decide.
        confirmed = confirm_or_reuse(store, job_id, args.confirm,
                                     exports / f"confirm-{args.confirm}", args.export_steps,
                                     report_only)
        report = confirmed_report(confirmed)
        best = next(row for row in rows if row.number == report["trial"])
    else:
        report = export_or_reuse(store, job_id, best.number, exports / f"best-{best.number}",
                                 args.export_steps, report_only)
    front = [row for row in rows if row.on_front and row.feasible and row.state == "complete"]
    others = [row for row in sorted(front, key=lambda r: -r.metric) if row.number != best.number]
    if args.front is not None and args.front > 0:
        others = others[: args.front - 1]
    front_reports = [report] + [
        export_or_reuse(store, job_id, row.number, exports / f"front-{row.number}", None, report_only)
        for row in others]
    measured_ms = on_profile_scale(report)

    # The baseline's budget is the kept model's predicted share of dense, not its milliseconds:
    # when the host runs at another speed by the baseline's start, its job profiles afresh, and
    # a millisecond on the new profile's scale is another share of dense than on the search's.
    matched_ratio = matched_share_of_dense(float(report["predicted_latency_ms"]), budget, ratio)
    uniform = job_spec(f"e2e-uniform-at-predicted-{tag}", space,
                       {"name": "uniform", "evaluations": args.uniform_evaluations, "seed": seed},
                       {"budget_ratio": matched_ratio}, args, finetune_seed)
    uniform_id = run_or_reuse(store, uniform, report_only)
    uniform_trials = store.trials(uniform_id)
    matched_ms = job_budget_ms(store.get_job(uniform_id), uniform_trials)
    uniform_rows = front_rows(uniform_trials, matched_ms, measured=False)
    uniform_best = best_feasible(uniform_rows)
    uniform_report = None
    if uniform_best is not None and args.confirm:
        # Chosen the same way as the searched model, or the comparison would favour it.
        uniform_confirmed = confirm_or_reuse(
            store, uniform_id, args.confirm, exports / f"uniform-at-predicted-confirm-{args.confirm}",
            args.export_steps, report_only)
        uniform_report = confirmed_report(uniform_confirmed, budgeted=False)
    elif uniform_best is not None:
        uniform_report = export_or_reuse(store, uniform_id, uniform_best.number,
                                         exports / f"uniform-at-predicted-{uniform_best.number}", args.export_steps,
                                         report_only)
    return {
        "budget_ratio": ratio, "space": space, "seed": seed, "job": job_id,
        # the profile that budgeted and predicted this run's search
        "latency_model": searched_with,
        "trial": best.number, "architecture": report["architecture_summary"],
        "budget_ms": budget, "predicted_latency_ms": report["predicted_latency_ms"],
        "measured_latency_ms": measured_ms, "measured_raw_ms": report["measured_latency_ms"],
        "dense_latency_ms": report["dense_latency_ms"], "speedup": report["speedup"],
        # dense measured / profiled - 1 in each measurement export took (its DriftGuard)
        "dense_drifts": report.get("dense_drifts"),
        "measured_ratio": measured_share_of_dense(report),
        "within_budget": measured_ms <= budget,
        "metric": report["metric"], "search_metric": best.metric,
        "teacher_metric": report["teacher_metric"],
        "metric_minus_teacher": round(report["metric"] - report["teacher_metric"], 4),
        "uniform_architecture": uniform_report and uniform_report["architecture_summary"],
        # on the baseline job's profile, which may be a later one than the search's
        "uniform_budget_ms": matched_ms,
        "uniform_budget_ratio": round(matched_ratio, 4),
        "uniform_measured_ratio": uniform_report and measured_share_of_dense(uniform_report),
        "uniform_predicted_latency_ms": uniform_report and uniform_report["predicted_latency_ms"],
        "uniform_measured_latency_ms": uniform_report and on_profile_scale(uniform_report),
        "uniform_dense_drifts": uniform_report and uniform_report.get("dense_drifts"),
        "uniform_metric_at_matched_latency": uniform_report and uniform_report["metric"],
        "searched_minus_uniform": uniform_report and round(
            report["metric"] - uniform_report["metric"], 4),
        # The gain a searched model as accurate as the teacher would show: the ceiling of
        # searched_minus_uniform unless a student beats its teacher.
        "teacher_minus_uniform": uniform_report and round(
            report["teacher_metric"] - uniform_report["metric"], 4),
        "front": [{"trial": r["trial"], "measured_latency_ms": on_profile_scale(r), "metric": r["metric"],
                   "predicted_latency_ms": r["predicted_latency_ms"],
                   "dense_drift": r.get("dense_drift"),
                   "within_budget": on_profile_scale(r) <= budget} for r in front_reports],
        "export_steps": args.export_steps,
        # --verify: the candidates measured here before the export, and the trial the
        # predictions alone would have exported
        "predicted_best_trial": predicted_best.number,
        # --confirm: each side's C best candidates exported, the best export kept
        "confirmed": confirmed_summary(confirmed),
        "uniform_confirmed": confirmed_summary(uniform_confirmed),
        "searched_minus_uniform_unconfirmed": unconfirmed_gain(
            exported_metric(confirmed, first_pick.number),
            exported_metric(uniform_confirmed, uniform_best.number) if uniform_best else None),
        "verified": None if verified is None else {
            "margin": verified.margin, "dense_drifts": verified.dense_drifts, "best_trial": None if verified.best is None
            else verified.best.trial,
            "candidates": [{"trial": c.trial, "metric": c.metric,
                            "predicted_latency_ms": c.predicted_latency_ms,
                            "measured_latency_ms": c.measured_latency_ms,
                            "within_budget": c.within_budget} for c in verified.candidates]},
    }


def dense_on_search_scale(run: dict[str, Any]) -> float:
    """Dense latency on the search's profile scale, which the run's milliseconds are on."""
    return run["measured_latency_ms"] / run["measured_ratio"]


def uniform_share_of_dense(run: dict[str, Any]) -> float:
    """The uniform baseline's re-measured latency as a share of dense, for the plot.

    The share recorded with it where there is one: a baseline that profiled afresh measured its
    milliseconds on another profile's scale than the search's, so dividing them by the search's
    dense puts the point elsewhere. Runs written before the share was recorded have only the
    milliseconds, on the search's scale."""
    if run.get("uniform_measured_ratio") is not None:
        return run["uniform_measured_ratio"]
    return run["uniform_measured_latency_ms"] / dense_on_search_scale(run)


def plot_runs(runs: list[dict[str, Any]], path: Path) -> None:
    """One panel per budget: dev accuracy against re-measured latency (x dense) of the searched
    models, the other exported front members and the uniform baselines, with the budget and the
    accuracy targets drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ratios = sorted({run["budget_ratio"] for run in runs}, reverse=True)
    fig, axes = plt.subplots(1, len(ratios), figsize=(6 * len(ratios), 5.2), squeeze=False)
    for ax, ratio in zip(axes[0], ratios, strict=True):
        group = [run for run in runs if run["budget_ratio"] == ratio]
        teacher = group[0]["teacher_metric"]
        allowed = tolerance(ratio)
        ax.axhline(teacher, color="black", lw=1, label=f"teacher {teacher:.4f}")
        ax.axhline(teacher - allowed, color="black", lw=1, ls=":",
                   label=f"target: teacher − {allowed * 100:g} point{'s' if allowed > 0.01 else ''}")
        ax.axvline(ratio, color="tab:red", lw=1, ls="--", label=f"budget {ratio:g}× dense")
        for index, run in enumerate(group):
            scale = dense_on_search_scale(run)
            others = [m for m in run["front"] if m["trial"] != run["trial"]]
            ax.scatter([m["measured_latency_ms"] / scale for m in others], [m["metric"] for m in others],
                       marker=".", color="tab:gray", label="other front members (search fidelity)"
                       if index == 0 else None)
            ax.scatter(run["measured_ratio"], run["metric"], marker="o", s=50, color="tab:blue",
                       label="searched, exported" if index == 0 else None)
            if run["uniform_metric_at_matched_latency"] is not None:
                ax.scatter(uniform_share_of_dense(run), run["uniform_metric_at_matched_latency"],
                           marker="s", s=40, facecolors="none", edgecolors="tab:orange",
                           label="uniform baseline, exported" if index == 0 else None)
        ax.set_title(f"{ratio:g}× budget ({group[0]['space']}), {len(group)} seed{'s' if len(group) != 1 else ''}")
        ax.set_xlabel("re-measured latency / dense (batch 1, seq 128)")
        ax.set_ylabel("SST-2 dev accuracy")
        ax.grid(alpha=0.3)
        # Below the axes: inside, it hid points wherever they fell.
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")  # the legend sits below the axes
    plt.close(fig)


def latency_model_summary(path: Path) -> dict[str, Any] | None:
    """What the runs were budgeted and predicted with: where it was measured, dense, its margin."""
    if not path.is_file():
        return None
    from autoprune.latency import LatencyModel

    model = LatencyModel.load(path)
    margin = model.suggested_margin()
    return {"path": str(path), "cpu_model": model.fingerprint.get("cpu_model"),
            "cpu_id": model.fingerprint.get("cpu_id"), "dense_ms": round(model.dense_ms, 3),
            "suggested_margin": None if margin is None else round(margin, 4)}


def same_profile(one: dict[str, Any], other: dict[str, Any]) -> bool:
    """One latency model summarised twice: a kept profile's path changes once it is copied into
    the repository, what it measured does not."""
    return all(one.get(key) == other.get(key) for key in ("cpu_id", "dense_ms", "suggested_margin"))


def earlier_latency_models(earlier: dict[str, Any] | None, current: dict[str, Any] | None,
                           kept_earlier: bool,
                           searched_before: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """The latency models that budgeted the runs a merge kept from earlier results and this
    invocation's searches before its last (``searched_before``), oldest first, leaving out
    ``current`` (its last search's): each session profiles its own host, and a host found
    running faster is profiled again, so the runs of one file can have been budgeted with several."""
    merged = [*earlier.get("earlier_latency_models", []), earlier.get("latency_model")] \
        if earlier is not None and kept_earlier else []
    kept: list[dict[str, Any]] = []
    for model in [*merged, *searched_before]:
        if isinstance(model, dict) and not any(same_profile(model, other) for other in [*kept, current] if other):
            kept.append(model)
    return kept


def seconds_taken(args: argparse.Namespace, elapsed: float, kept_earlier: bool,
                  earlier: dict[str, Any] | None) -> float | None:
    """What the runs in the results took: a report runs nothing and keeps the figure of the
    results it rewrites (``earlier``); a merge that kept earlier runs adds their time to this
    invocation's."""
    earlier_seconds = (earlier or {}).get("seconds")
    if args.phase == "report":
        return earlier_seconds
    return round(elapsed + ((earlier_seconds or 0.0) if kept_earlier else 0.0), 1)


def kept_notes(earlier: dict[str, Any] | None, kept_earlier: bool, phase: str) -> str | None:
    """The ``notes`` of the results being rewritten, kept when the runs they describe are: a
    merge that kept earlier runs, or a report on the same store. They are written by hand (the
    host's story, what a run's figures mean), which no later invocation can write again."""
    if earlier is None or not (kept_earlier or phase == "report"):
        return None
    return earlier.get("notes")


def build_parser() -> argparse.ArgumentParser:
    """The options; their defaults are the settings of an Intel Xeon's 24-candidate runs
    (``end_to_end_intel_e24*.json``: every target met at 0.3x, all but the gain at 0.5x)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="0.5:bert-structured,0.3:bert-int8",
                        help="comma-separated RATIO:SPACE")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--evaluations", type=int, default=24,
                        help="candidates each search evaluates (other values: their own jobs)")
    parser.add_argument("--steps", type=int, default=100,
                        help="the first runs' estimate steps, whose rungs (a quarter of them, "
                             "then all) add nothing to job names; the estimate runs to the "
                             "last of --rungs")
    parser.add_argument("--rungs", type=rungs_option, default=[400], metavar="A[,B...]",
                        help="ASHA's rungs in steps (geometric; the ratio is ASHA's eta and the "
                             "last rung the estimate's steps; default 400: one rung, every "
                             "candidate estimated with 400 steps): 50,100 cuts at the median "
                             "after 50 steps; 50,100,200 trains the best quarter to 200; "
                             "25,100 are the first runs' (a quarter of --steps, then --steps)")
    parser.add_argument("--eval-samples", type=int, default=None)
    parser.add_argument("--export-steps", type=int, default=2000)
    parser.add_argument("--warm-start", type=int, default=4,
                        help="initial-population members taken from the top of the uniform sweep")
    parser.add_argument("--guided-start", type=int, default=2,
                        help="then this many importance-guided allocations (evolution's "
                             "guided_start; 0: none, as every run before 2026-11-27)")
    parser.add_argument("--guided-pick", choices=["importance", "closest"], default="importance",
                        help="how the guided start picks its allocations (evolution's "
                             "guided_pick; closest: as the runs before the option)")
    parser.add_argument("--start-min-layers", type=int, default=4,
                        help="the search's initial population keeps at least this many layers "
                             "(evolution's start_min_layers; 0: no floor, as the runs before "
                             "2026-11-27; that day's last run floored its guided start only)")
    parser.add_argument("--fill-to", type=float, default=None, metavar="F",
                        help="the search's children grown until predicted at this fraction of "
                             "the budget (evolution's fill_to; default: not grown, as every run "
                             "before 2026-12-06)")
    parser.add_argument("--margin", type=margin_option, default="auto",
                        help="latency.margin of the searches (fraction of the budget held back), "
                             "or auto (the latency model's held-out error)")
    parser.add_argument("--latency-model", type=latency_model_option, default=HERE_LATENCY_MODEL,
                        help="the latency model of every job: a file, or here (profile this "
                             "machine first; the default)")
    parser.add_argument("--uniform-evaluations", type=int, default=4)
    parser.add_argument("--verify", type=int, default=5, metavar="K",
                        help="measure the search's K best candidates within the budget here "
                             "(`autoprune verify`) and export the best that fits (default 5; "
                             "0: the best by prediction, unmeasured)")
    parser.add_argument("--verify-margin", type=float, default=DEFAULT_VERIFY_MARGIN, metavar="F",
                        help="--verify: a candidate fits under the budget less F (default 0.02: "
                             "the median difference of two measurement passes over the same "
                             "models on an Intel Xeon, 1.9%%)")
    parser.add_argument("--finetune-seeds", action=argparse.BooleanOptionalAction, default=True,
                        help="each run's seed also seeds its fine-tunes (estimate.finetune_seed), "
                             "for the search and its uniform baseline alike (the default); "
                             "--no-finetune-seeds: the controller's seed only, every fine-tune "
                             "at seed 0")
    parser.add_argument("--confirm", type=int, default=2, metavar="C",
                        help="export the C best candidates of the search and of the uniform "
                             "baseline with --export-steps and keep each side's best export "
                             "(autoprune export --confirm; default 2; 0: the best by the search)")
    parser.add_argument("--front", type=int, default=1,
                        help="at most this many feasible front members exported per run "
                             "(default 1: the kept model; 0 or less: all)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the fine-tunes")
    parser.add_argument("--quiet-wait", type=float, default=300.0, metavar="S",
                        help="first wait up to S seconds for other processes to leave the "
                             "timing's CPUs free (a profile taken as an install settles times "
                             "every model slow; default 300; 0: no wait)")
    parser.add_argument("--merge", action="store_true",
                        help="keep the runs already in --results for budgets and seeds this "
                             "invocation does not run (each marked from_earlier_results), and the "
                             "file's hand-written notes with them")
    parser.add_argument("--phase", choices=["search", "export", "all", "report"], default="all",
                        help="report: write the results of the runs done so far, run nothing")
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    if args.confirm < 0:
        parser.error(f"--confirm {args.confirm}: must be >= 0")
    if args.rungs is not None:
        try:
            EstimateSpec(steps=args.rungs[-1], rungs=tuple(args.rungs))
        except ValidationError as exc:
            parser.error(f"--rungs {','.join(map(str, args.rungs))}: {exc.errors()[0]['msg'].removeprefix('Value error, ')}")

    db = autoprune_home() / "benchmarks" / "end_to_end.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    store = Store(f"sqlite:///{db}")
    budgets = [(float(item.split(":")[0]), item.split(":")[1]) for item in args.budgets.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.phase != "report":  # a run measures: profile, verification, exports
        load = wait_until_quiet(args.threads, args.quiet_wait)
        print(f"at the start, other processes kept {load.get('others_busy_cpus', 'an unknown number of')} "
              f"CPUs busy (load average {load['load_1min']:.2f})", file=sys.stderr)
    started = time.perf_counter()
    runs, missing = [], []
    for ratio, space in budgets:
        for seed in seeds:
            try:
                runs.append(one_run(store, ratio, space, seed, args))
            except NotRunYet as exc:
                missing.append({"budget_ratio": ratio, "space": space, "seed": seed, "missing": str(exc)})
    if args.phase == "search":
        print(json.dumps({"searched": len(runs), "seconds": round(time.perf_counter() - started)}))
        return
    # The profiles this invocation's searches were budgeted with, in the order they ran (not
    # the file as it ends: a baseline may have profiled the host again, without validation).
    searched_with = [run["latency_model"] for run in runs if run.get("latency_model")]
    device = {key: value for key, value in device_fingerprint("torch", args.threads).items()
              if key in MERGE_DEVICE_KEYS}
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                if k not in ("phase", "threads", "results", "quiet_wait")}
    earlier = json.loads(args.results.read_text()) if args.results.is_file() else None
    if args.merge and earlier is not None:
        # Seeds searched in an earlier session on the same CPU: the store that held them is
        # gone, their results are not. Runs from another CPU or library version are not the
        # same benchmark (latency and even accuracy move), so they are refused.
        # Results written before they recorded a device are taken as this one's.
        changed = differences(earlier.get("device", device), device)
        if changed:
            raise SystemExit(f"--merge: {args.results} was measured on another device: {'; '.join(changed)}")
        # Results written before the option existed ran every fine-tune at seed 0.
        if earlier.get("settings", {}).get("finetune_seeds", False) != args.finetune_seeds:
            raise SystemExit(f"--merge: {args.results} was run "
                             f"{'with' if not args.finetune_seeds else 'without'} --finetune-seeds")
        # Results written before an option existed ran with its first value.
        for key, first in FIRST_SETTINGS.items():
            if key in ("export_steps", "finetune_seeds"):  # per run / checked above
                continue
            earlier_value, value = earlier.get("settings", {}).get(key, first), settings[key]
            if key == "rungs":  # none given: the first runs' rungs
                earlier_value, value = earlier_value or default_rungs(args), value or default_rungs(args)
            if earlier_value != value:
                raise SystemExit(f"--merge: {args.results} was run with --{key.replace('_', '-')} "
                                 f"{earlier_value}, not {value}")
        done = {(run["budget_ratio"], run["seed"]) for run in runs}
        runs += [{**run, "from_earlier_results": True} for run in earlier["runs"]
                 if (run["budget_ratio"], run["seed"]) not in done]
        runs.sort(key=lambda run: (-run["budget_ratio"], run["seed"]))
        settings["budgets"] = ",".join(dict.fromkeys(f"{run['budget_ratio']:g}:{run['space']}"
                                                     for run in runs))
    kept_earlier = any(run.get("from_earlier_results") for run in runs)
    latency_model = searched_with[-1] if searched_with else latency_model_summary(args.latency_model)
    fronts = [member for run in runs for member in run["front"]]
    gains = [run["searched_minus_uniform"] for run in runs if run["searched_minus_uniform"] is not None]
    ceilings = [run["teacher_minus_uniform"] for run in runs if run["teacher_minus_uniform"] is not None]
    unconfirmed = [run["searched_minus_uniform_unconfirmed"] for run in runs
                   if run.get("searched_minus_uniform_unconfirmed") is not None]
    result = {
        "model": "minilm-l6", "task": "sst2", "batch": 1, "seq_len": 128, "device": device,
        "runs": runs,
        "missing_runs": missing,
        "front_within_budget_share": (round(sum(m["within_budget"] for m in fronts) / len(fronts), 4)
                                      if fronts else None),
        "searched_minus_uniform_median": rounded_median(gains),
        "teacher_minus_uniform_median": rounded_median(ceilings),
        # --confirm: the median gain had each side exported only its first pick (when both
        # picks were among the confirmed exports)
        "searched_minus_uniform_unconfirmed_median": rounded_median(unconfirmed),
        "settings": settings,
        "latency_model": latency_model,
        "seconds": seconds_taken(args, time.perf_counter() - started, kept_earlier, earlier),
    }
    merged_models = earlier_latency_models(earlier, latency_model, kept_earlier, searched_with[:-1])
    if merged_models:
        result["earlier_latency_models"] = merged_models
    # Every budget in the results, merged ones included, has its target judged.
    ratios = sorted({ratio for ratio, _ in budgets} | {r["budget_ratio"] for r in runs}, reverse=True)
    by_ratio = {ratio: [r for r in runs if r["budget_ratio"] == ratio] for ratio in ratios}
    result["targets"] = {
        **{f"within_{tolerance(ratio) * 100:g}_points_of_teacher_at_{ratio:g}": all(
            meets_accuracy_target(r) for r in rs)
           if rs else None for ratio, rs in by_ratio.items()},
        "front_within_budget_share_min_0.95": (None if result["front_within_budget_share"] is None
                                               else result["front_within_budget_share"] >= 0.95),
        # None until the gains cover 3 seeds: "in the median of 3 seeds"
        "beats_uniform_by_1_point_median": (
            meets_gain_target(statistics.median(gains), gain_seeds(runs)) if gain_seeds(runs) >= GAIN_SEEDS
            else None),
    }
    notes = kept_notes(earlier, kept_earlier, args.phase)
    if notes:
        result["notes"] = notes
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=2) + "\n")
    if runs:
        plot_runs(runs, args.results.with_suffix(".png"))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
