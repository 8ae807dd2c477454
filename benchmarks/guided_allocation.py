"""Does an importance-guided allocation beat the uniform model at the same latency?

The end-to-end searches keep their warm-start uniform model in most runs (the gain target of
issue 8 is missed by a median of +0.00). This asks whether a better starting point exists:
for each budget it takes the first ``--candidates`` models of the ``uniform`` sweep (closest
under the budget first: the end-to-end baseline's candidates) and of the importance-guided
sweep of :func:`~autoprune.controllers.guided.guided_grid` (every head and FFN neuron of the
kept layers ranked together by the teacher's importance, the global top kept; allocations
that come out uniform are left to the uniform side), both predicted by the latency model with
the end-to-end searches' margin. Each candidate trains through the search's rungs (25, 100
steps); the best of each side at 100 steps then trains on through the export's final phase to
1,000 steps, as the end-to-end baseline's pick is exported. Every fine-tune runs at each of
``--finetune-seeds`` (a different dropout and batch stream; the teacher is seed 0's). SST-2
dev accuracy on the whole dev set.

Writes ``benchmarks/results/guided_allocation.json``: ``runs`` (budget, space, model kind,
architecture, predicted ms, finetune seed, steps, accuracy, seconds), ``pairs`` (per budget
and seed, the two sides' picks and guided minus uniform at 1,000 steps), ``guided_minus_uniform_mean`` per budget, and
the settings. A rerun with other seeds or budgets keeps the runs it does not repeat. Needs the
cached SST-2 teacher (trained on first use: 7-15 min).

    python benchmarks/guided_allocation.py
    python benchmarks/guided_allocation.py --budgets 0.3:bert-int8 --finetune-seeds 1 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from end_to_end import DEFAULT_MARGIN, job_spec, margin_option
from shallow_start import train_through

from autoprune.controllers.guided import LayerScores, guided_grid, is_uniform
from autoprune.controllers.uniform import uniform_grid
from autoprune.estimate import build_estimator
from autoprune.latency import LatencyModel
from autoprune.runner.prepare import prepare

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "guided_allocation.json"
RUNGS = (25, 100)
FINAL = 900  # the export's 1,000 steps


def candidates(ratio: float, space: str, args: argparse.Namespace) -> dict[str, Any]:
    """The first ``args.candidates`` proposals of each sweep at this budget (arch, predicted)."""
    spec = job_spec(f"guided-{space}-{ratio:g}", space, {"name": "uniform", "evaluations": 1},
                    {"budget_ratio": ratio, "margin": args.margin}, args)
    prepared = prepare(spec, quiet=True, latency_model=LatencyModel.load(args.latency_model))
    finetune = build_estimator(spec, threads=args.threads, progress=False)
    finetune = getattr(finetune, "finetune", finetune)
    scores = LayerScores.from_importance(finetune.importance)
    controller = prepared.controller
    uniform = uniform_grid(controller)[: args.candidates]
    guided = [arch for arch in guided_grid(controller, scores)
              if not is_uniform(arch)][: args.candidates]
    return {"budget_ms": round(prepared.objective.budget_ms, 3),
            "uniform": [(arch, controller.latency(arch)) for arch in uniform],
            "guided": [(arch, controller.latency(arch)) for arch in guided]}


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="0.5:bert-structured,0.3:bert-int8")
    parser.add_argument("--finetune-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--margin", type=margin_option, default=DEFAULT_MARGIN)
    parser.add_argument("--latency-model", type=Path,
                        default=REPO / "latency_models" / "this-cpu-torch-b1-s128.json")
    parser.add_argument("--candidates", type=int, default=4,
                        help="models per side screened at 100 steps (the baseline's 4)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    args.steps, args.eval_samples = RUNGS[-1], None
    budgets = [(float(r), s) for r, s in (item.split(":") for item in args.budgets.split(","))]
    new: list[dict[str, Any]] = []
    for ratio, space in budgets:
        chosen = candidates(ratio, space, args)
        print(json.dumps({"budget_ratio": ratio, "budget_ms": chosen["budget_ms"],
                          **{kind: [(a.summary(), round(ms, 2)) for a, ms in chosen[kind]]
                             for kind in ("uniform", "guided")}}), flush=True)
        for seed in args.finetune_seeds:
            spec = job_spec(f"guided-{space}-{ratio:g}-s{seed}", space,
                            {"name": "uniform", "evaluations": 1},
                            {"budget_ratio": ratio, "margin": args.margin}, args,
                            finetune_seed=seed)
            finetune = build_estimator(spec, threads=args.threads, progress=False)
            finetune = getattr(finetune, "finetune", finetune)
            for kind in ("uniform", "guided"):
                labels = {"budget_ratio": ratio, "space": space, "kind": kind,
                          "budget_ms": chosen["budget_ms"], "finetune_seed": seed}
                screened = [run for arch, ms in chosen[kind]
                            for run in train_through(finetune, arch.summary(), RUNGS,
                                                     predicted_ms=round(ms, 3), **labels)]
                best = max((run for run in screened if run["steps"] == RUNGS[-1]),
                           key=lambda run: run["accuracy"])
                new += screened + train_through(finetune, best["architecture"], RUNGS, (FINAL,),
                                                predicted_ms=best["predicted_ms"], **labels)[-1:]
    # Read just before writing: a parallel run on other budgets or seeds may have written.
    result = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    done = {(r["budget_ratio"], r["finetune_seed"]) for r in new}
    runs = [r for r in result.get("runs", [])
            if (r["budget_ratio"], r["finetune_seed"]) not in done] + new
    final = {(r["budget_ratio"], r["finetune_seed"], r["kind"]): r for r in runs
             if r["steps"] == RUNGS[-1] + FINAL}
    pairs = [{"budget_ratio": ratio, "finetune_seed": seed,
              "uniform": final[(ratio, seed, "uniform")]["architecture"],
              "guided": final[(ratio, seed, "guided")]["architecture"],
              "guided_minus_uniform": round(final[(ratio, seed, "guided")]["accuracy"]
                                            - final[(ratio, seed, "uniform")]["accuracy"], 4)}
             for ratio, seed, kind in sorted(final) if kind == "guided"
             and (ratio, seed, "uniform") in final]
    means = {f"{ratio:g}": round(statistics.mean(p["guided_minus_uniform"] for p in pairs
                                                 if p["budget_ratio"] == ratio), 4)
             for ratio in sorted({p["budget_ratio"] for p in pairs})}
    result = {"runs": runs, "pairs": pairs, "guided_minus_uniform_mean": means,
              "settings": {"margin": args.margin, "threads": args.threads,
                           "latency_model": str(args.latency_model.relative_to(REPO)
                                                if args.latency_model.is_relative_to(REPO)
                                                else args.latency_model),
                           "rungs": list(RUNGS), "final_steps": FINAL,
                           "candidates": args.candidates}}
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"pairs": pairs, "guided_minus_uniform_mean": means}, indent=2))
    return result


if __name__ == "__main__":
    main()
