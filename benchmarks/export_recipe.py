"""How should an exported model train past the search's fidelity?

``autoprune export --steps S`` rebuilds a trial as the search scored it (100 distillation
steps at the search's constant learning rate) and trains it on to ``S`` steps. This compares,
on the same architectures, the same 2,000-step SST-2 teacher and the same batches:

* ``constant``: the extra steps at the search's constant rate (5e-5), logits only: what
  ``export`` did before :class:`autoprune.estimate.FinalPhase`;
* ``final``: the extra steps in the default ``FinalPhase`` (the rate restarted at 1e-4 and
  decayed linearly to 0, hidden-state distillation with weight 1).

Each run also records ``refit_head``: whether a candidate that drops layers had its
classifier re-fitted before its first step (``estimate.refit_head``, off by default;
``autoprune/estimate/head.py``). Runs stored before the re-fit existed are ``false``;
``--refit`` makes runs with it, so that its effect on the exported model is measured on the
same architecture and recipe (``gain_refit``).

Accuracy on the whole SST-2 dev set. Architectures: the 0.5x-budget searched model and its
uniform baseline of ``end_to_end.py``'s seed 0 (both drop layers), the uniform half-latency
model of ``estimate_fidelity.py`` (0.55x dense on this machine's latency model), the
6-layer uniform model under the 0.5x budget (0.49x), and the 5-layer uniform model the 0.5x
searches of ``end_to_end.py`` return on the Zen 5 (and the 6-layer one they return on the Zen
3, 1.6 points below the teacher after 1,000 steps: does a longer final phase close the gap?
``--steps 3000``). Each (architecture, recipe) is one process call
(``--only``), so two can run side by side with 1 thread each; results accumulate in
``benchmarks/results/export_recipe.json``.

    python benchmarks/export_recipe.py --only 0:final --threads 1
    python benchmarks/export_recipe.py --only 4:final --threads 1 --refit
    python benchmarks/export_recipe.py              # every architecture and recipe in turn
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import statistics
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from autoprune.data import load_task
from autoprune.estimate import (
    CheapFinetune,
    DiskCache,
    FinalPhase,
    FinetuneRecipe,
    TeacherRecipe,
    prepare_importance,
    prepare_teacher,
)
from autoprune.space import Architecture
from autoprune.spec import EstimateSpec, TaskSpec

REPO = Path(__file__).resolve().parent.parent
GLUE = Path(os.environ.get("AUTOPRUNE_SHARED", REPO.parent / "shared")) / "data" / "glue"
RESULTS = REPO / "benchmarks" / "results" / "export_recipe.json"
SEARCH_STEPS = 100
ARCHITECTURES = [
    "h12/f0.3 h8/f0.7 h0/f0.4 - h2/f0.8 -",         # end_to_end 0.5x seed 0: searched
    "h8/f0.4 h8/f0.4 h8/f0.4 h8/f0.4 - -",           # its uniform baseline at matched latency
    "h6/f0.5 h6/f0.5 h6/f0.5 h6/f0.5 h6/f0.5 h6/f0.5",  # uniform half-latency model (0.55x)
    "h4/f0.5 h4/f0.5 h4/f0.5 h4/f0.5 h4/f0.5 h4/f0.5",  # uniform, all layers, under 0.5x
    "h10/f0.3 h10/f0.3 h10/f0.3 h10/f0.3 h10/f0.3 -",  # end_to_end 0.5x pick on the Zen 5
    "h6/f0.3 h6/f0.3 h6/f0.3 h6/f0.3 h6/f0.3 h6/f0.3",  # end_to_end 0.5x pick on the Zen 3
]
RECIPES: dict[str, FinalPhase | None] = {"constant": None, "final": FinalPhase()}


def run(index: int, recipe: str, steps: int, threads: int, refit: bool = False) -> dict[str, Any]:
    task = TaskSpec(name="sst2", data_dir=GLUE / "SST-2")
    estimate = EstimateSpec()
    data = load_task(task, seed=estimate.seed)
    cache = DiskCache()
    teacher = prepare_teacher("minilm-l6", data, TeacherRecipe.from_spec(estimate, task),
                              seed=estimate.seed, cache=cache, threads=threads)
    importance, _ = prepare_importance(teacher, data, batch_size=estimate.batch_size,
                                       max_seq_len=estimate.max_seq_len, seed=estimate.seed,
                                       cache=cache, threads=threads)
    finetune = CheapFinetune(teacher, data, importance,
                             FinetuneRecipe.from_spec(estimate, task, refit_head=refit),  # whole dev set
                             checkpoint_dir=cache.root / "export-recipe" / f"{recipe}-{refit}",
                             threads=threads)
    arch = Architecture.from_summary(ARCHITECTURES[index])
    started = time.perf_counter()
    _, searched = finetune.train(arch, SEARCH_STEPS)
    _, exported = finetune.train(arch, steps, resume_from=searched.checkpoint,
                                 final=RECIPES[recipe])
    for result in (searched, exported):
        if result.checkpoint is not None:
            result.checkpoint.unlink(missing_ok=True)
    return {"architecture": ARCHITECTURES[index], "recipe": recipe, "steps": steps,
            "refit_head": finetune.refits_head(arch),
            "search_metric": round(searched.value, 4), "metric": round(exported.value, 4),
            "teacher_metric": round(teacher.metric, 4), "threads": threads,
            "seconds": round(time.perf_counter() - started, 1)}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    by_arch: dict[str, dict[tuple[str, bool], float]] = {}
    for item in runs:
        by_arch.setdefault(item["architecture"], {})[item["recipe"], item["refit_head"]] = item["metric"]
    # Both recipes of the same refit setting (the earlier runs: without the re-fit).
    gains = {arch: round(r["final", refit] - r["constant", refit], 4)
             for arch, r in by_arch.items() for refit in (False, True)
             if ("final", refit) in r and ("constant", refit) in r}
    refit_gains = {arch: round(r["final", True] - r["final", False], 4)
                   for arch, r in by_arch.items() if ("final", True) in r and ("final", False) in r}
    return {"final_phase": asdict(FinalPhase()), "search_steps": SEARCH_STEPS,
            "gain_final_over_constant": gains,
            "median_gain": round(statistics.median(gains.values()), 4) if gains else None,
            "gain_refit": refit_gains}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default=None, help="INDEX:RECIPE, e.g. 0:final")
    parser.add_argument("--refit", action="store_true",
                        help="re-fit the classifier of a candidate that drops layers first")
    args = parser.parse_args()
    jobs = [(i, r) for i in range(len(ARCHITECTURES)) for r in RECIPES]
    if args.only:
        index, recipe = args.only.split(":")
        jobs = [(int(index), recipe)]
    for index, recipe in jobs:
        item = run(index, recipe, args.steps, args.threads, refit=args.refit)
        print(json.dumps(item), flush=True)
        with open(RESULTS.with_suffix(".lock"), "w") as lock:  # two processes side by side
            fcntl.flock(lock, fcntl.LOCK_EX)
            stored = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"runs": []}
            runs = [r for r in stored["runs"]
                    if (r["architecture"], r["recipe"], r["steps"], r["refit_head"])
                    != (item["architecture"], item["recipe"], item["steps"], item["refit_head"])] + [item]
            RESULTS.write_text(json.dumps({"runs": runs, **summarise(runs)}, indent=1) + "\n")
        RESULTS.with_suffix(".lock").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
