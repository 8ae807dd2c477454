"""Would a longer cheap estimate have picked the better model to export?

In the end-to-end benchmark's 0.5x seed-1 search, ``h4/f0.2 h12/f0.2 h12/f0.6 h12/f0.2
h12/f0.2 -`` led the uniform ``h10/f0.3`` in 5 layers after 100 steps (0.875 against 0.8658)
and trailed it after the 1,000-step export (0.8865 against 0.8933). This trains each of the
given architectures with the search's estimate settings straight through 100 steps (no rung
resume) and on to 400, and records the dev accuracy at each, to see whether a third ASHA rung
at 400 steps would have ranked them as the export does.

Writes ``benchmarks/results/selection_fidelity.json``: ``runs`` (architecture, steps, accuracy,
seconds). Needs the cached SST-2 teacher (trained on first use: ~7 min).

    python benchmarks/selection_fidelity.py
    python benchmarks/selection_fidelity.py "h6/f0.5 h6/f0.5 h6/f0.5 h6/f0.5 h6/f0.5 -"
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from end_to_end import job_spec
from shallow_start import train_through

from autoprune.estimate import build_estimator

RESULTS = Path(__file__).resolve().parent / "results" / "selection_fidelity.json"
STEPS = (100, 400)
ARCHITECTURES = ("h4/f0.2 h12/f0.2 h12/f0.6 h12/f0.2 h12/f0.2 -",
                 "h10/f0.3 h10/f0.3 h10/f0.3 h10/f0.3 h10/f0.3 -")


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("architectures", nargs="*", default=list(ARCHITECTURES))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    settings = argparse.Namespace(steps=STEPS[0], eval_samples=None, threads=args.threads)
    spec = job_spec("selection-fidelity", "bert-structured", {"name": "random", "evaluations": 1},
                    {"budget_ratio": 0.5}, settings)
    finetune = build_estimator(spec, threads=args.threads, progress=False)
    finetune = getattr(finetune, "finetune", finetune)
    runs = [run for summary in args.architectures for run in train_through(finetune, summary, STEPS)]
    result = {"runs": runs, "threads": args.threads,
              "estimate": {"lr": finetune.recipe.lr, "hidden_weight": finetune.recipe.hidden_weight}}
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
