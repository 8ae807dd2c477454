"""How good and how cheap are the accuracy estimates?

1. Teachers: the dense MiniLM fine-tuned on each task (``--tasks``), with its dev metric and
   the seconds it took (cached: a second run reads them back).
2. Fidelity on SST-2: ``--n-arch`` diverse ``bert-full`` architectures, each scored by
   * the cheap estimate (``--steps`` distillation steps),
   * a fine-tune ``--long-factor`` times longer (resumed from the cheap checkpoint, which is
     the same run as training from scratch: constant learning rate, shared batch order),
   * the no-training proxies (compressed teacher as is; minus its distillation loss);
   and Kendall's tau between each estimate and the long fine-tune.
3. Cost: seconds, steps and samples per candidate, and the cheap estimate of a candidate at
   about half the dense latency.

Writes ``benchmarks/results/estimate_fidelity.json``. Per-candidate results are kept in
``<cache>/benchmarks/estimate_fidelity/*.json`` so an interrupted run resumes where it stopped.

    python benchmarks/estimate_fidelity.py                       # everything (about 1.5 h)
    python benchmarks/estimate_fidelity.py --tasks sst2 --n-arch 12 --steps 100
    python benchmarks/estimate_fidelity.py --tasks cola --calibrate cola --skip-fidelity \
        --merge --out benchmarks/results/cola_calibrated.json       # a calibrated teacher
    python benchmarks/estimate_fidelity.py --tasks cola --synthetic cola --skip-fidelity \
        --threads 1 --teacher-seed 1 --out /tmp/cola-synthetic-1.json  # synthetic stage first
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from autoprune.data import load_task
from autoprune.estimate import (
    CheapFinetune,
    DiskCache,
    FinetuneRecipe,
    ProxyEstimator,
    TeacherRecipe,
    prepare_importance,
    prepare_teacher,
)
from autoprune.estimate.cache import content_key
from autoprune.space import Architecture, LayerConfig, SearchSpace
from autoprune.spec import TaskSpec

REPO = Path(__file__).resolve().parent.parent
GLUE = Path(os.environ.get("AUTOPRUNE_SHARED", REPO.parent / "shared")) / "data" / "glue"
TASK_DIRS = {"sst2": "SST-2", "mrpc": "MRPC", "cola": "CoLA"}
# --calibrate: the share of train a teacher holds out to choose its decision threshold.
CALIBRATE_FRACTION = 0.1
# --synthetic: steps of synthetic acceptability before the teacher's fine-tune, and the GLUE
# directories whose training sentences join the task's own acceptable ones.
SYNTHETIC_STEPS = 1000
SYNTHETIC_TEXT = ("MRPC",)
MODEL = "minilm-l6"


def diverse_architectures(space: SearchSpace, n: int, seed: int) -> list[Architecture]:
    """``n`` members of the space spread from nearly dense to heavily compressed.

    Candidate ``i`` takes each layer from a random sample of the space with probability
    ``level_i`` (rising from 0.15 to 1.0) and keeps it dense otherwise, so the set spans the
    accuracy range instead of clustering where uniform sampling lands (near chance).
    """
    rng = np.random.default_rng(seed)
    dense = space.dense()
    result: list[Architecture] = []
    for level in np.linspace(0.15, 1.0, n):
        for _ in range(100):
            sample = space.sample(rng)
            layers = tuple(s if rng.random() < level else d for s, d in zip(sample, dense))
            arch = Architecture(layers)
            if space.contains(arch) and arch not in result:
                result.append(arch)
                break
    return result


def half_latency_architecture(num_layers: int) -> Architecture:
    """Half the heads and half the FFN in every layer: about 0.56x the dense latency on
    this CPU class (MEASUREMENTS.md: 1.77x faster)."""
    return Architecture.uniform(num_layers, LayerConfig(heads=6, ffn=0.5))


def kendall(a: list[float], b: list[float]) -> float:
    return float(stats.kendalltau(a, b).statistic)


def run_teachers(tasks: list[str], cache: DiskCache, threads: int, progress: bool,
                 steps: int | None = None, calibrate: frozenset[str] = frozenset(),
                 seed: int = 0, synthetic: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The teacher of each task (``calibrate``: the tasks whose teacher holds out
    :data:`CALIBRATE_FRACTION` of train to choose its decision threshold; ``synthetic``: the
    tasks whose teacher starts with :data:`SYNTHETIC_STEPS` of synthetic acceptability)."""
    out = {}
    for name in tasks:
        data = load_task(TaskSpec(name=name, data_dir=GLUE / TASK_DIRS[name]))
        recipe = TeacherRecipe(
            steps=steps, calibrate=CALIBRATE_FRACTION if name in calibrate else None,
            synthetic_steps=SYNTHETIC_STEPS if name in synthetic else None,
            synthetic_text=tuple(str(GLUE / d) for d in SYNTHETIC_TEXT) if name in synthetic
            else ())
        teacher = prepare_teacher(MODEL, data, recipe, seed=seed, cache=cache,
                                  threads=threads, progress=progress)
        out[name] = {"metric": data.task.main_metric, "value": round(teacher.metric, 4),
                     "seconds": round(teacher.seconds, 1), "steps": teacher.steps,
                     "all_metrics": {k: round(v, 4) for k, v in teacher.metrics.items()},
                     "cached": teacher.cached, "threads": threads, "seed": seed}
        if teacher.calibration is not None:
            out[name].update(recipe=f"default TeacherRecipe, calibrate {CALIBRATE_FRACTION}",
                             calibration=teacher.calibration)
        if teacher.synthetic is not None:
            out[name].update(recipe=f"default TeacherRecipe after {SYNTHETIC_STEPS} steps of "
                                    "synthetic acceptability (the task's acceptable sentences "
                                    f"and {', '.join(SYNTHETIC_TEXT)} train sentences)",
                             synthetic=teacher.synthetic)
        print(f"teacher {name}: {out[name]}", file=sys.stderr)
    return out


def run_fidelity(args: argparse.Namespace, cache: DiskCache) -> dict[str, Any]:
    data = load_task(TaskSpec(name="sst2", data_dir=GLUE / "SST-2"))
    teacher = prepare_teacher(MODEL, data, TeacherRecipe(steps=args.teacher_steps), cache=cache,
                              threads=args.threads, progress=not args.quiet)
    importance, importance_s = prepare_importance(teacher, data, cache=cache, threads=args.threads)
    recipe = FinetuneRecipe(eval_samples=args.eval_samples, hidden_weight=args.hidden_weight,
                            lr=args.lr)
    run_dir = cache.root / "benchmarks" / "estimate_fidelity" / content_key(
        {"teacher": teacher.key, "recipe": asdict(recipe), "steps": args.steps,
         "long": args.long_factor, "seed": args.seed})
    run_dir.mkdir(parents=True, exist_ok=True)
    cheap = CheapFinetune(teacher, data, importance, recipe, checkpoint_dir=run_dir / "ckpt",
                          threads=args.threads)
    proxy = ProxyEstimator(cheap)
    kd_proxy = ProxyEstimator(cheap, mode="distill")
    space = SearchSpace.load("bert-full")
    archs = diverse_architectures(space, args.n_arch, args.seed)
    rows = []
    for index, arch in enumerate(archs):
        record = run_dir / f"{arch.hash}.json"
        if record.is_file():
            rows.append(json.loads(record.read_text()))
            continue
        short = cheap.evaluate(arch, args.steps)
        long = cheap.evaluate(arch, args.steps * args.long_factor, resume_from=short.checkpoint)
        as_is = proxy.evaluate(arch)
        kd = kd_proxy.evaluate(arch)
        row = {"architecture": arch.summary(), "hash": arch.hash,
               "flops_ratio": space.stats(arch).flops / space.stats(space.dense()).flops,
               "cheap": short.value, "long": long.value, "proxy": as_is.value,
               "proxy_distill": kd.value, "cheap_seconds": short.seconds,
               "long_seconds": short.seconds + long.seconds, "proxy_seconds": as_is.seconds,
               "proxy_distill_seconds": kd.seconds, "cheap_steps": short.steps,
               "cheap_samples": short.samples, "cheap_details": short.details}
        record.write_text(json.dumps(row))
        for checkpoint in (short.checkpoint, long.checkpoint):  # ~100 MB each; not needed
            if checkpoint is not None:
                checkpoint.unlink(missing_ok=True)
        rows.append(row)
        print(f"[{index + 1}/{len(archs)}] {arch.summary()}: cheap {short.value:.3f} "
              f"long {long.value:.3f} proxy {as_is.value:.3f} kd {kd.value:.3f} "
              f"({short.seconds:.0f}s)", file=sys.stderr)
    longs = [r["long"] for r in rows]
    half = half_latency_architecture(space.num_layers)
    half_result = cheap.evaluate(half, args.steps)
    return {
        "n_architectures": len(rows),
        "kendall_tau_cheap": round(kendall([r["cheap"] for r in rows], longs), 4),
        "kendall_tau_proxy": round(kendall([r["proxy"] for r in rows], longs), 4),
        "kendall_tau_proxy_distill": round(kendall([r["proxy_distill"] for r in rows], longs), 4),
        "seconds_per_candidate": round(float(np.mean([r["cheap_seconds"] for r in rows])), 2),
        "seconds_per_long_candidate": round(float(np.mean([r["long_seconds"] for r in rows])), 2),
        "seconds_per_proxy": round(float(np.mean([r["proxy_seconds"] for r in rows])), 3),
        "half_latency_candidate": {"architecture": half.summary(),
                                   "seconds": round(half_result.seconds, 2),
                                   "steps": half_result.steps, "samples": half_result.samples,
                                   "value": round(half_result.value, 4)},
        "importance_seconds": round(importance_s, 1),
        "steps": args.steps, "long_steps": args.steps * args.long_factor,
        "recipe": asdict(recipe), "architectures": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="sst2,mrpc,cola", help="teachers to train/report")
    parser.add_argument("--n-arch", type=int, default=12)
    parser.add_argument("--steps", type=int, default=100, help="cheap fine-tune steps")
    parser.add_argument("--long-factor", type=int, default=8)
    parser.add_argument("--eval-samples", type=int, default=None, help="dev subset (default all)")
    parser.add_argument("--hidden-weight", type=float, default=FinetuneRecipe.hidden_weight,
                        help="hidden-state distillation weight (0: logits only, cached)")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--teacher-steps", type=int, default=None,
                        help="override the teacher recipe's steps (smoke runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--teacher-seed", type=int, default=0,
                        help="the seed of the teachers of --tasks (the fidelity runs use seed 0's)")
    parser.add_argument("--calibrate", default="", metavar="TASKS",
                        help="tasks whose teacher calibrates its decision threshold on "
                             f"{CALIBRATE_FRACTION:.0%}% of train held out (e.g. cola)")
    parser.add_argument("--synthetic", default="", metavar="TASKS",
                        help=f"tasks whose teacher first trains {SYNTHETIC_STEPS} steps on "
                             "synthetic acceptability (e.g. cola)")
    parser.add_argument("--skip-fidelity", action="store_true")
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--merge", action="store_true",
                        help="update the existing results file (teachers per task, fidelity keys) "
                             "instead of replacing it")
    parser.add_argument("--out", type=Path,
                        default=REPO / "benchmarks" / "results" / "estimate_fidelity.json")
    args = parser.parse_args()

    cache = DiskCache(args.cache)
    start = time.perf_counter()
    tasks = [t for t in args.tasks.split(",") if t]
    result: dict[str, Any] = {"model": MODEL, "threads": args.threads,
                              "teacher": run_teachers(
                                  tasks, cache, args.threads, not args.quiet, args.teacher_steps,
                                  frozenset(t for t in args.calibrate.split(",") if t),
                                  args.teacher_seed,
                                  frozenset(t for t in args.synthetic.split(",") if t))}
    if not args.skip_fidelity:
        result.update(run_fidelity(args, cache))
    result["total_seconds"] = round(time.perf_counter() - start, 1)
    if args.merge and args.out.is_file():
        previous = json.loads(args.out.read_text())
        teachers = {**previous.get("teacher", {}), **result["teacher"]}
        result = {**previous, **result, "teacher": teachers}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "architectures"}, indent=2))


if __name__ == "__main__":
    main()
