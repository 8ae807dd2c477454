"""How many cheap-estimate steps does a model that drops layers need before it scores at all?

The 100-step cheap estimate (lr 5e-5, logits distilled from the teacher, embeddings frozen)
scored many shallow candidates of the end-to-end searches at exactly SST-2's majority-class
share (0.509): every dev example given the same label. This trains a few such architectures
with the end-to-end benchmark's estimate settings through 25, 100, 200 and 400 steps (each
resuming the previous checkpoint, as ASHA rungs do) and records the dev accuracy at each, at
the search's learning rate and at ``--lr`` values given.

Writes ``benchmarks/results/shallow_start.json``: ``runs`` (architecture, lr, steps, accuracy,
seconds). Needs the cached SST-2 teacher (trained on first use: ~15 min).

    python benchmarks/shallow_start.py --lr 5e-5 2e-4
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from autoprune.estimate import build_estimator
from autoprune.space import Architecture
from autoprune.spec import JobSpec

REPO = Path(__file__).resolve().parent.parent
GLUE = Path(os.environ.get("AUTOPRUNE_SHARED", REPO.parent / "shared")) / "data" / "glue"
RESULTS = REPO / "benchmarks" / "results" / "shallow_start.json"
STEPS = (25, 100, 200, 400)
ARCHITECTURES = ("h8/f0.3 h8/f0.3 h8/f0.3 - - -", "h4/f1 h4/f1 - - - -",
                 "h8/f0.2/b8 h8/f0.2/b8 h8/f0.2/b8 h8/f0.2/b8 - -")


def spec(lr: float) -> JobSpec:
    """The end-to-end benchmark's estimate settings (100 steps, rungs 25/100, whole dev set)."""
    return JobSpec.from_dict({
        "name": "shallow-start", "model": "minilm-l6",
        "task": {"name": "sst2", "data_dir": str(GLUE / "SST-2")},
        "latency": {"model": str(REPO / "latency_models" / "this-cpu-torch-b1-s128.json"),
                    "budget_ratio": 0.5},
        "space": "bert-int8",
        "controller": {"name": "random", "evaluations": 1},
        "estimate": {"steps": 100, "rungs": [25, 100], "lr": lr},
    }, base_dir=REPO)


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, nargs="+", default=[5e-5])
    args = parser.parse_args()
    runs = []
    for lr in args.lr:
        finetune = build_estimator(spec(lr), progress=False)
        finetune = getattr(finetune, "finetune", finetune)
        for summary in ARCHITECTURES:
            arch = Architecture.from_summary(summary)
            checkpoint = None
            for steps in STEPS:
                _, result = finetune.train(arch, steps, resume_from=checkpoint)
                checkpoint = result.checkpoint
                run = {"architecture": summary, "lr": lr, "steps": steps,
                       "accuracy": round(float(result.value), 4), "seconds": round(result.seconds, 1)}
                runs.append(run)
                print(json.dumps(run), flush=True)
    output = {"runs": runs, "majority_class_share": 0.5092}
    RESULTS.write_text(json.dumps(output, indent=2) + "\n")
    print(json.dumps(output, indent=2))
    return output


if __name__ == "__main__":
    main()
