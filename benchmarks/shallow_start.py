"""How many cheap-estimate steps does a model that drops layers need before it scores at all?

The 100-step cheap estimate (lr 5e-5, logits distilled from the teacher, embeddings frozen)
scored many shallow candidates of the end-to-end searches at exactly SST-2's majority-class
share (0.509): every dev example given the same label. This trains a few such architectures
with the end-to-end benchmark's estimate settings through 25, 100, 200 and 400 steps (each
resuming the previous checkpoint, as ASHA rungs do) and records the dev accuracy at each (and
at step 0, before any training), at the search's learning rate and at ``--lr`` values given,
with the classifier re-fitted to the shallower body before training (``estimate.refit_head``)
and without.

Writes ``benchmarks/results/shallow_start.json``: ``runs`` (architecture, lr, refit_head,
steps, accuracy, seconds), replacing earlier runs of the same settings and keeping the rest.
Needs the cached SST-2 teacher (trained on first use: ~15 min).

    python benchmarks/shallow_start.py --lr 5e-5 2e-4
    python benchmarks/shallow_start.py --refit-head off --only 0,2   # some architectures
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from end_to_end import GLUE, LATENCY_MODEL, REPO

from autoprune.estimate import CheapFinetune, FinalPhase, build_estimator
from autoprune.space import Architecture
from autoprune.spec import JobSpec

RESULTS = REPO / "benchmarks" / "results" / "shallow_start.json"
STEPS = (0, 25, 100, 200, 400)
ARCHITECTURES = ("h8/f0.3 h8/f0.3 h8/f0.3 - - -", "h4/f1 h4/f1 - - - -",
                 "h8/f0.2/b8 h8/f0.2/b8 h8/f0.2/b8 h8/f0.2/b8 - -",
                 # The 4-layer starts that the Intel run of end_to_end_intel_floor.json stopped
                 # at its 25-step rung at 0.5x in every seed (two uniform, one guided).
                 "h10/f0.4 h10/f0.4 h10/f0.4 h10/f0.4 - -", "h12/f0.3 h12/f0.3 h12/f0.3 h12/f0.3 - -",
                 "h8/f0.9 h6/f0.9 h6/f0.5 h6/f0.1 - -")


def spec(lr: float, refit_head: bool) -> JobSpec:
    """The end-to-end benchmark's estimate settings (100 steps, rungs 25/100, whole dev set)."""
    return JobSpec.from_dict({
        "name": "shallow-start", "model": "minilm-l6",
        "task": {"name": "sst2", "data_dir": str(GLUE / "SST-2")},
        "latency": {"model": str(LATENCY_MODEL),
                    "budget_ratio": 0.5},
        "space": "bert-int8",
        "controller": {"name": "random", "evaluations": 1},
        "estimate": {"steps": 100, "rungs": [25, 100], "lr": lr, "refit_head": refit_head},
    }, base_dir=REPO)


def train_through(finetune: CheapFinetune, summary: str, steps: tuple[int, ...],
                  then_final: tuple[int, ...] = (), **labels: Any) -> list[dict[str, Any]]:
    """Train ``summary`` through each of ``steps`` in turn, each stage resuming the previous
    checkpoint as ASHA rungs do, then (``then_final``) each of these numbers of steps more in
    the export's :class:`FinalPhase`, each from the last stage's checkpoint; one printed run
    (``labels`` + steps, accuracy, seconds; ``final_steps`` for the final phase) each."""
    arch = Architecture.from_summary(summary)
    checkpoint = None
    runs = []

    def record(step: int, result: Any, **extra: Any) -> None:
        run = {"architecture": summary, **labels, "steps": step, **extra,
               "accuracy": round(float(result.value), 4), "seconds": round(result.seconds, 1)}
        runs.append(run)
        print(json.dumps(run), flush=True)

    for step in steps:
        _, result = finetune.train(arch, step, resume_from=checkpoint)
        checkpoint = result.checkpoint
        record(step, result)
    for extra in then_final:
        _, result = finetune.train(arch, steps[-1] + extra, resume_from=checkpoint,
                                   final=FinalPhase())
        record(steps[-1] + extra, result, final_steps=extra)
    return runs


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, nargs="+", default=[5e-5])
    parser.add_argument("--refit-head", choices=["on", "off", "both"], default="both")
    parser.add_argument("--only", default=None, help="indices into ARCHITECTURES, e.g. 3,4")
    parser.add_argument("--steps", type=int, nargs="+", default=list(STEPS),
                        help="the stages, each resuming the last (default: %(default)s)")
    args = parser.parse_args()
    chosen = (ARCHITECTURES if args.only is None
              else [ARCHITECTURES[int(i)] for i in args.only.split(",")])
    refits = {"on": [True], "off": [False], "both": [False, True]}[args.refit_head]
    runs = []
    for lr, refit in itertools.product(args.lr, refits):
        finetune = build_estimator(spec(lr, refit), progress=False)
        finetune = getattr(finetune, "finetune", finetune)
        for summary in chosen:
            runs += train_through(finetune, summary, tuple(args.steps), lr=lr, refit_head=refit)
    def key(run: dict[str, Any]) -> tuple[Any, ...]:
        return run["architecture"], run["lr"], run.get("refit_head", False), run["steps"]

    done = {key(run) for run in runs}
    kept = (json.loads(RESULTS.read_text())["runs"] if RESULTS.is_file() else [])
    output = {"runs": [run for run in kept if key(run) not in done] + runs,
              "majority_class_share": 0.5092}
    RESULTS.write_text(json.dumps(output, indent=2) + "\n")
    print(json.dumps(output, indent=2))
    return output


if __name__ == "__main__":
    main()
