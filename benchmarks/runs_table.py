"""The README's "Every run at a glance" table, regenerated from the end-to-end results files.

Usage: ``.venv/bin/python benchmarks/runs_table.py [--json]``

Each row's figures come from its ``benchmarks/results/end_to_end*.json``; only what a file does
not record (its date, a short name for its CPU, what was new in it, and the margin of runs
written before results recorded it) is kept here, in ``RUNS``, newest first. A results file
missing from ``RUNS`` is an error, so a new run cannot be left out of the table silently.

This prints markdown (or, with ``--json``, the same figures as JSON); it writes no results file
of its own, since everything it shows is already in the files it reads.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e_targets import gain_seeds, meets_accuracy_target, meets_gain_target

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class RunLabel:
    date: str
    cpu: str
    new: str
    # Results written before they recorded the latency model's suggested margin.
    margin: str | None = None


RUNS: dict[str, RunLabel] = {
    "end_to_end_zen4_int8.json": RunLabel(
        "12-08", "Zen 4",
        "the script's defaults at 0.3× (`bert-int8`) on a Zen 4; seeds 0–1 (seed 2 stopped for"
        " the session's time)"),
    "end_to_end_intel_emr_int8.json": RunLabel(
        "12-07", "Intel Xeon 6/207/2",
        "the script's defaults at 0.3× (`bert-int8`) on the CPU model of `end_to_end_intel_emr_half.json`;"
        " seeds 0–2"),
    "end_to_end_zen4_half.json": RunLabel(
        "12-07", "Zen 4",
        "the script's defaults at 0.5× on a Zen 4; seed 0, then seeds 1–2 in a later session on"
        " another host of that model"),
    "end_to_end_intel_emr_half.json": RunLabel(
        "12-07", "Intel Xeon 6/207/2",
        "the script's defaults at 0.5× on a CPU model no earlier run had (AVX-512 VNNI, no AMX"
        " exposed); seeds 0–2"),
    "end_to_end_zen3_e24.json": RunLabel(
        "12-06/07", "Zen 3",
        "as the Intel 24-candidate runs (the script's defaults): 0.5× seeds 0–2 and 0.3× seed 0, each in its own"
        " session"),
    "end_to_end_intel_icelake_half.json": RunLabel(
        "12-07", "Intel Xeon Ice Lake 6/106/6",
        "the script's defaults (the Intel 24-candidate runs' settings) at 0.5×; seeds 0–1"),
    "end_to_end_zen3_fill.json": RunLabel(
        "12-06", "Zen 3",
        "as the run below, children grown to 97% of the budget (`--fill-to 0.97`); seed 0 only"),
    "end_to_end_intel_e24_half.json": RunLabel(
        "12-06", "Intel Xeon AMX 6/167/1",
        "as the Intel 24-candidate run, at 0.5× (`bert-structured`), seeds 0–2"),
    "end_to_end_intel_e24.json": RunLabel(
        "12-06", "Intel Xeon AMX 6/167/1",
        "as the run below, 24 candidates per search (`--evaluations 24`)"),
    "end_to_end_intel_confirm.json": RunLabel(
        "12-06", "Intel Xeon AMX 6/167/1",
        "as the verified Zen 4 run, each side's 2 best exported and the better export kept (`--confirm 2`)"),
    "end_to_end_zen4_verified.json": RunLabel(
        "11-28", "Zen 4",
        "as the verified Zen 3 run; 0.3× only, seeds 0–2"),
    "end_to_end_zen5_verified.json": RunLabel(
        "11-27", "Zen 5",
        "as the verified Zen 3 run; 0.5× only, seeds 0–2"),
    "end_to_end_zen3_verified.json": RunLabel(
        "11-27", "Zen 3",
        "as the verified Intel run, exports timed in a fresh process; 0.3× only, seeds 0–2"),
    "end_to_end_intel_verified.json": RunLabel(
        "11-27", "Intel Xeon AMX 6/167/1",
        "as the 400-step run, the 5 best candidates measured before export (`--verify 5`); seed 0 only"),
    "end_to_end_intel_rung400.json": RunLabel(
        "11-27", "Intel Xeon AMX 6/167/1",
        "400-step estimate (`--rungs 400`); 0.5× seed 0 on the rung-50 host"),
    "end_to_end_intel_rung50.json": RunLabel(
        "11-27", "Intel Xeon AMX 6/167/1", "as the floored run, ASHA rungs [50, 100] (η 2)"),
    "end_to_end_intel_floor.json": RunLabel(
        "11-27", "Intel Xeon AMX 6/167/1",
        "guided start by importance, whole start ≥ 4 layers, 2,000-step exports"),
    "end_to_end_zen4_importance.json": RunLabel(
        "11-27", "Zen 4", "guided start by importance, guided members ≥ 4 layers"),
    "end_to_end_zen3_guided.json": RunLabel("11-27", "Zen 3", "guided start (closest allocations)"),
    "end_to_end_zen4_guided.json": RunLabel("11-27", "Zen 4", "guided start (closest allocations)"),
    "end_to_end_intel_2000_steps.json": RunLabel("11-26", "Intel Xeon AMX 6/167/1", "2,000-step exports"),
    "end_to_end_zen3_2000_steps.json": RunLabel(
        "11-26", "Zen 3", "2,000-step exports, seeds 0–1, every fine-tune at seed 0"),
    "end_to_end_zen4_here.json": RunLabel("11-26", "Zen 4", "profiled first (`--latency-model here`)"),
    "end_to_end_zen4_fs_auto.json": RunLabel("11-26", "Zen 4", "another Zen 4's profile", "auto 4.9%"),
    "end_to_end_intel_fs_auto.json": RunLabel("11-26", "Intel Xeon AMX 6/167/8", "one seed", "auto 7.2%"),
    "end_to_end_intel_fs.json": RunLabel(
        "11-26", "Intel Xeon AMX 6/167/8", "fine-tune seeds sampled with the controller's"),
    "end_to_end_zen3.json": RunLabel("11-26", "Zen 3", "every fine-tune at seed 0"),
    "end_to_end_zen3_e64.json": RunLabel("11-26", "Zen 3", "64 candidates, one seed"),
    "end_to_end.json": RunLabel("11-26", "Zen 5", "every fine-tune at seed 0"),
    "end_to_end_2000_steps.json": RunLabel("11-25", "Zen 5", "2,000-step exports, one seed"),
}


def points(value: float) -> str:
    """A 0-1 difference in points with its sign (1 point = 0.01), as the README writes them."""
    rounded = round(value * 100, 2)
    if rounded == 0:
        return "0.00"
    return f"{rounded:+.2f}".replace("-", "−")


def budget_cell(runs: list[dict[str, Any]], ratio: float) -> str:
    at_budget = sorted((run for run in runs if run["budget_ratio"] == ratio), key=lambda run: run["seed"])
    if not at_budget:
        return "—"
    figures = []
    for run in at_budget:
        figure = points(run["metric_minus_teacher"]).lstrip("+")
        figures.append(figure if run["within_budget"] else f"{figure} (over)")
    met = sum(meets_accuracy_target(run) for run in at_budget)
    return f"{', '.join(figures)} ({met} of {len(at_budget)})"


def gains_cell(runs: list[dict[str, Any]]) -> str:
    groups = []
    for ratio in (0.5, 0.3):
        gains = [run["searched_minus_uniform"] for run in sorted(runs, key=lambda run: run["seed"])
                 if run["budget_ratio"] == ratio and run["searched_minus_uniform"] is not None]
        if gains:
            groups.append(", ".join(points(gain) for gain in gains))
    every = [run["searched_minus_uniform"] for run in runs if run["searched_minus_uniform"] is not None]
    if not every:
        return "—"
    median = statistics.median(every)
    shown = points(median)
    if meets_gain_target(median, gain_seeds(runs)):
        shown = f"**{shown}**"
    return f"{shown} ({' / '.join(groups)})"


def latency_models(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The profiles the file's runs were budgeted with, oldest first: one per session whose
    runs a merge kept, each session having profiled its own host."""
    current = result.get("latency_model")
    return [*result.get("earlier_latency_models", []), *([current] if isinstance(current, dict) else [])]


def margin_cell(result: dict[str, Any], label: RunLabel) -> str:
    if label.margin is not None:
        return label.margin
    margin = result.get("settings", {}).get("margin", 0.03)
    if margin == "auto":
        # a profile taken without validation (a baseline's, on a host found faster) has none
        return "auto " + ", ".join("unmeasured" if model.get("suggested_margin") is None
                                   else f"{model['suggested_margin'] * 100:.1f}%" for model in latency_models(result))
    return f"{margin:g}"


def cpu_cell(result: dict[str, Any], label: RunLabel) -> str:
    denses = [model["dense_ms"] for model in latency_models(result) if model.get("dense_ms")]
    if denses:
        return f"{label.cpu} ({', '.join(f'{dense:.1f}' for dense in denses)})"
    return label.cpu


def row(name: str, result: dict[str, Any], label: RunLabel) -> dict[str, str]:
    runs = result["runs"]
    fronts = [member for run in runs for member in run["front"]]
    return {
        "results file": f"`{name}`",
        "date": label.date,
        "CPU (dense ms)": cpu_cell(result, label),
        "margin": margin_cell(result, label),
        "what was new": label.new,
        "0.5× vs teacher": budget_cell(runs, 0.5),
        "0.3× vs teacher": budget_cell(runs, 0.3),
        "front within budget": f"{sum(member['within_budget'] for member in fronts)} of {len(fronts)}",
        "searched − uniform: median (0.5× / 0.3×)": gains_cell(runs),
    }


def table() -> list[dict[str, str]]:
    files = {path.name for path in RESULTS.glob("end_to_end*.json")}
    unlabelled = sorted(files - RUNS.keys())
    if unlabelled:
        raise SystemExit(f"runs_table: no RunLabel for {', '.join(unlabelled)} (add it to RUNS)")
    return [row(name, json.loads((RESULTS / name).read_text()), label)
            for name, label in RUNS.items() if name in files]


def markdown(rows: list[dict[str, str]]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(entry[column] for column in header) + " |" for entry in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="the figures as JSON instead of markdown")
    args = parser.parse_args()
    rows = table()
    sys.stdout.write((json.dumps(rows, indent=2, ensure_ascii=False) if args.json else markdown(rows)) + "\n")


if __name__ == "__main__":
    main()
