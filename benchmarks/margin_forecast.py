"""Does ``latency.margin: auto`` forecast how far exports re-measure over their predictions?

``margin: auto`` takes the search's latency margin from the latency model's held-out
validation, measured right after profiling: with ``q`` the 95th percentile of measured /
predicted - 1 over both validation passes, the margin is ``q / (1 + q)``
(:meth:`LatencyModel.suggested_margin`). What the margin has to cover is the exports'
re-measurement, hours later, in the machine's load of that hour. This script reads the
committed end-to-end results and the latency models they searched with, and compares, per
machine:

* the margin each rule would suggest from the validation points: ``both`` passes (the
  library's rule), their ``mean`` per architecture, their ``min`` (load only slows a
  measurement down, so the faster pass is the less disturbed one), and each pass alone;
* the margin the exports needed: the one under which 95% of them (searched models, front
  members and uniform baselines alike) re-measure within a budget they were predicted at;
* for each rule, and for the fixed margins 0.03 (the default) and 0.06, the share of exports
  that the margin would have kept within budget.

It measures nothing: it reads JSON (the margin is the library's own
:func:`autoprune.latency.predictor.margin_covering`). Each results file is paired with the
latency model of its run: the file its results record, or else the committed model of its
CPU (the run's ``device.cpu_id``, and the model committed before the results were).

    python benchmarks/margin_forecast.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from autoprune.latency.predictor import MARGIN_COVERAGE, margin_covering

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
MODELS = REPO / "latency_models"
COVERAGE = MARGIN_COVERAGE
FIXED = (0.03, 0.06)

# results file -> (machine, latency model it searched with, relative to latency_models/).
PAIRS: dict[str, tuple[str, str]] = {
    "end_to_end": ("AMD Zen 5 (26/2)", "this-cpu-torch-b1-s128.json"),
    "end_to_end_zen3": ("AMD Zen 3 (25/1)", "other-cpus/amd-epyc-zen3-torch-b1-s128.json"),
    "end_to_end_zen3_e64": ("AMD Zen 3 (25/1)", "other-cpus/amd-epyc-zen3-torch-b1-s128.json"),
    "end_to_end_zen3_2000_steps": ("AMD Zen 3 (25/1)",
                                   "other-cpus/amd-epyc-zen3-torch-b1-s128.json"),
    "end_to_end_zen4_here": ("AMD Zen 4 (25/17)",
                             "other-cpus/amd-epyc-zen4-end-to-end-torch-b1-s128.json"),
    "end_to_end_intel_fs": ("Intel Xeon AMX (6/167/8)",
                            "other-cpus/intel-xeon-amx-torch-b1-s128.json"),
    "end_to_end_intel_fs_auto": ("Intel Xeon AMX (6/167/8)",
                                 "other-cpus/intel-xeon-amx-torch-b1-s128.json"),
}


def committed(path: Path) -> dict[str, Any]:
    """The committed version of ``path`` (a run may have overwritten the working copy)."""
    relative = path.relative_to(REPO).as_posix()
    shown = subprocess.run(["git", "show", f"HEAD:{relative}"], cwd=REPO, check=True,
                           capture_output=True, text=True)
    return json.loads(shown.stdout)


def validation_rules(model: dict[str, Any]) -> dict[str, float]:
    points = model["validation"]["points"]
    first = np.array([p["first_ms"] / p["predicted_ms"] - 1.0 for p in points])
    second = np.array([p["second_ms"] / p["predicted_ms"] - 1.0 for p in points])
    rules = {"both": np.concatenate([first, second]), "mean": (first + second) / 2,
             "min": np.minimum(first, second), "first_pass": first, "second_pass": second}
    return {name: round(margin_covering(errors, COVERAGE), 4) for name, errors in rules.items()}


def export_errors(results: dict[str, Any]) -> list[float]:
    """measured / predicted - 1 of every export of a run: front members (the searched model
    among them) and the uniform baseline."""
    errors = []
    for run in results["runs"]:
        members = run.get("front") or [{"measured_latency_ms": run["measured_latency_ms"],
                                        "predicted_latency_ms": run["predicted_latency_ms"]}]
        errors += [m["measured_latency_ms"] / m["predicted_latency_ms"] - 1.0 for m in members]
        if run.get("uniform_predicted_latency_ms"):
            errors.append(run["uniform_measured_latency_ms"] / run["uniform_predicted_latency_ms"]
                          - 1.0)
    return errors


def within(errors: np.ndarray, margin: float) -> float:
    """The share of exports that re-measure within a budget they were predicted ``margin``
    under: measured <= predicted / (1 - margin)."""
    return round(float(np.mean(errors <= 1.0 / (1.0 - margin) - 1.0)), 4)


def main() -> None:
    by_machine: dict[str, dict[str, Any]] = {}
    for name, (machine, model_path) in PAIRS.items():
        results = json.loads((RESULTS / f"{name}.json").read_text())
        entry = by_machine.setdefault(machine, {"latency_model": model_path, "results": [],
                                                "errors": []})
        if entry["latency_model"] != model_path:
            raise SystemExit(f"{machine}: two latency models ({model_path})")
        entry["results"].append(name)
        entry["errors"] += export_errors(results)
    machines = []
    for machine, entry in by_machine.items():
        model = committed(MODELS / entry["latency_model"])
        errors = np.array(entry["errors"])
        rules = validation_rules(model)
        machines.append({
            "machine": machine, "latency_model": entry["latency_model"],
            "results": entry["results"], "n_exports": len(errors),
            "export_error_median": round(float(np.median(errors)), 4),
            "export_error_max": round(float(errors.max()), 4),
            "needed_margin": round(margin_covering(errors, COVERAGE), 4),
            "suggested_margin": rules,
            "within_budget_share": {
                **{rule: within(errors, m) for rule, m in rules.items()},
                **{f"fixed_{m}": within(errors, m) for m in FIXED}},
            "validation_dense_drift": model["validation"].get("dense_drift"),
        })
    out = {"coverage": COVERAGE, "machines": machines,
           "rule_error": {rule: round(float(np.median([abs(m["suggested_margin"][rule]
                                                           - m["needed_margin"])
                                                       for m in machines])), 4)
                          for rule in machines[0]["suggested_margin"]}}
    (RESULTS / "margin_forecast.json").write_text(json.dumps(out, indent=1) + "\n")
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
