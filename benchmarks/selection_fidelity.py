"""Would a longer cheap estimate have picked the better model to export?

In the end-to-end benchmark's 0.5x seed-1 search, ``h4/f0.2 h12/f0.2 h12/f0.6 h12/f0.2
h12/f0.2 -`` led the uniform ``h10/f0.3`` in 5 layers after 100 steps (0.875 against 0.8658)
and trailed it after the 1,000-step export (0.8865 against 0.8933). This trains each of the
given architectures with the search's estimate settings straight through 100 steps (no rung
resume) and on to 400, and records the dev accuracy at each, to see whether a third ASHA rung
at 400 steps would have ranked them as the export does.

``--final N [N ...]`` asks the export's question instead: each architecture trains through
the search's rungs (25, 100 steps), then from the 100-step checkpoint through the export's
final phase (:class:`~autoprune.estimate.FinalPhase`: lr from 1e-4 decaying to 0, hidden
states distilled) for N more steps, each N on its own. N = 900 is ``autoprune export``'s
1,000 steps; a short N is a candidate top rung that trains as the export does. The default
architectures are then the end-to-end searches' picks whose export lost to the uniform
model (:data:`EXPORTED` has what those exports measured).

Writes ``benchmarks/results/selection_fidelity.json``: ``runs`` (architecture, steps, accuracy,
seconds), and ``final_phase`` for ``--final`` (``final_steps`` too); each mode keeps the
other's results, and each keeps the runs of architectures it was not given (each run records
its ``cpu``; the README gives the machines of runs made before that). Needs the
cached SST-2 teacher (trained on first use: 7-15 min).

    python benchmarks/selection_fidelity.py
    python benchmarks/selection_fidelity.py "h6/f0.5 h6/f0.5 h6/f0.5 h6/f0.5 h6/f0.5 -"
    python benchmarks/selection_fidelity.py --final 200 900 --threads 1
    python benchmarks/selection_fidelity.py "h6/f0.7 h6/f0.7 h6/f0.7 h6/f0.7 - -" --steps 100 200 400 800
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from end_to_end import LATENCY_MODEL, job_spec
from shallow_start import train_through

from autoprune.estimate import FinalPhase, build_estimator
from autoprune.latency.fingerprint import device_fingerprint

RESULTS = Path(__file__).resolve().parent / "results" / "selection_fidelity.json"
STEPS = (100, 400)
ARCHITECTURES = ("h4/f0.2 h12/f0.2 h12/f0.6 h12/f0.2 h12/f0.2 -",
                 "h10/f0.3 h10/f0.3 h10/f0.3 h10/f0.3 h10/f0.3 -")
RUNGS = (25, 100)
# Dev accuracy of ``autoprune export`` (1,000 steps) in the end-to-end runs, each pair a
# searched pick and the uniform model it lost to (searched with dropout restarted per rung).
EXPORTED: dict[str, dict[str, Any]] = {
    "h4/f0.2 h12/f0.2 h12/f0.6 h12/f0.2 h12/f0.2 -": {"accuracy": 0.8865, "run": "Zen 5 0.5x seed 1"},
    "h10/f0.3 h10/f0.3 h10/f0.3 h10/f0.3 h10/f0.3 -": {"accuracy": 0.8933, "run": "Zen 5 0.5x seed 1"},
    "h6/f0.5/b8 h6/f0.8 - - - h6/f0.3/b8": {"accuracy": 0.8647, "run": "Zen 3 0.3x seed 0"},
    "h8/f0.2/b8 h8/f0.2/b8 h8/f0.2/b8 h8/f0.2/b8 - -": {"accuracy": 0.8807, "run": "Zen 3 0.3x seeds 1, 2"},
    "h6/f0.3 h6/f0.9 h6/f0.3 h6/f0.3 - h6/f0.3": {"accuracy": 0.8819, "run": "Zen 3 0.5x e64"},
    "h8/f0.3 h8/f0.3 h8/f0.3 h8/f0.3 h8/f0.3 -": {"accuracy": 0.8842, "run": "Zen 3 0.5x e64"},
}


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("architectures", nargs="*", default=[])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, nargs="+", default=list(STEPS), metavar="S",
                        help="the stages trained straight through (default: %(default)s)")
    parser.add_argument("--final", type=int, nargs="+", default=None, metavar="N",
                        help="final-phase steps after the 100-step rung (the export's question)")
    args = parser.parse_args()
    architectures = args.architectures or list(EXPORTED if args.final else ARCHITECTURES)
    # The latency model only budgets the spec (nothing is searched): the committed one.
    settings = argparse.Namespace(steps=STEPS[0], eval_samples=None, threads=args.threads,
                                  latency_model=LATENCY_MODEL)
    spec = job_spec("selection-fidelity", "bert-structured", {"name": "random", "evaluations": 1},
                    {"budget_ratio": 0.5}, settings)
    finetune = build_estimator(spec, threads=args.threads, progress=False)
    finetune = getattr(finetune, "finetune", finetune)
    estimate = {"lr": finetune.recipe.lr, "hidden_weight": finetune.recipe.hidden_weight}
    stages = RUNGS if args.final else tuple(args.steps)
    cpu = device_fingerprint("torch", args.threads)["cpu_id"]
    new = [run for summary in architectures
           for run in train_through(finetune, summary, stages, tuple(args.final or ()), cpu=cpu)]
    # Read after training: runs kept from the file include those another process (given the
    # rest of the list) wrote in the meantime.
    result = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    # Either mode keeps its own runs of architectures not given here.
    earlier = (result.get("final_phase", {}) if args.final else result).get("runs", [])
    runs = [run for run in earlier if run["architecture"] not in architectures] + new
    if args.final:
        result["final_phase"] = {"runs": runs, "threads": args.threads, "estimate": estimate,
                                 "final_phase": dataclasses.asdict(FinalPhase()),
                                 "exported": {run["architecture"]: EXPORTED[run["architecture"]]
                                              for run in runs if run["architecture"] in EXPORTED}}
    else:
        result.update({"runs": runs, "threads": args.threads, "estimate": estimate})
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
