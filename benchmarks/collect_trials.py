"""Collect real cheap-fine-tune results of MiniLM on SST-2: the controllers benchmark's data.

The surrogate of ``benchmarks/controllers.py`` is a regression fitted on real trials. Those
trials must cover where the controllers go: from nearly dense to heavily compressed, and
above all the region around the 0.5x latency budget. Uniform samples of the space crowd at
one latency (each layer's expected keep ratio is the same), so candidates are drawn from a
mixture (each layer taken from a space sample with probability ``level``, else dense; plus
uniform configurations) and then picked evenly over predicted latency ratio bins.

Each candidate is scored by exactly the estimator a search with
``benchmarks/specs/sst2-minilm-trials.yaml`` builds (100 distillation steps from the default
SST-2 teacher, whole dev set). Results are appended to
``benchmarks/data/sst2_minilm_trials.json`` as they arrive, so an interrupted run resumes.

    python benchmarks/collect_trials.py --n 48 --threads 2
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from autoprune.estimate import build_estimator
from autoprune.latency import LatencyModel
from autoprune.space import Architecture, SearchSpace
from autoprune.spec import JobSpec

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "benchmarks" / "specs" / "sst2-minilm-trials.yaml"
OUT = REPO / "benchmarks" / "data" / "sst2_minilm_trials.json"
LATENCY_COPY = REPO / "benchmarks" / "data" / "latency_model.json"


def candidate_pool(space: SearchSpace, rng: np.random.Generator, size: int) -> list[Architecture]:
    dense = space.dense()
    pool: list[Architecture] = []
    for _ in range(size):
        if rng.random() < 0.15:  # the hand-crafted kind: the same configuration in every layer
            layer = space.sample(rng)[0]
            arch = Architecture(tuple(layer for _ in dense))
        else:
            level = rng.random()
            sample = space.sample(rng)
            arch = Architecture(tuple(s if rng.random() < level else d for s, d in zip(sample, dense)))
        if space.contains(arch):
            pool.append(arch)
    return pool


def pick_by_latency(pool: list[Architecture], ratios: np.ndarray, n: int, low: float,
                    high: float, rng: np.random.Generator) -> list[Architecture]:
    """``n`` distinct architectures spread evenly over latency-ratio bins in [low, high]."""
    edges = np.linspace(low, high, n + 1)
    chosen: list[Architecture] = []
    for lo, hi in itertools.pairwise(edges):
        inside = [i for i in np.flatnonzero((ratios >= lo) & (ratios < hi)) if pool[i] not in chosen]
        if inside:
            chosen.append(pool[int(rng.choice(inside))])
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--low", type=float, default=0.12, help="lowest latency ratio to cover")
    parser.add_argument("--high", type=float, default=1.0, help="highest latency ratio to cover")
    args = parser.parse_args()

    spec = JobSpec.load(SPEC)
    latency_model = LatencyModel.load(spec.latency.model)
    space = SearchSpace.load(spec.space, latency_model.shape)
    rng = np.random.default_rng(args.seed)
    pool = candidate_pool(space, rng, 20000)
    ratios = np.array([latency_model.predict(a) for a in pool]) / latency_model.dense_ms
    archs = pick_by_latency(pool, ratios, args.n, args.low, args.high, rng)

    OUT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(spec.latency.model, LATENCY_COPY)
    done: dict[str, Any] = json.loads(OUT.read_text()) if OUT.is_file() else {}
    trials: list[dict[str, Any]] = done.get("trials", [])
    seen = {t["hash"] for t in trials}
    estimator = build_estimator(spec, threads=args.threads, progress=True)
    start = time.perf_counter()
    for index, arch in enumerate(archs):
        if arch.hash in seen:
            continue
        result = estimator.evaluate(arch, spec.estimate.steps)
        if result.checkpoint is not None:
            result.checkpoint.unlink(missing_ok=True)
        predicted = float(latency_model.predict(arch))
        trials.append({
            "architecture": arch.to_list(), "summary": arch.summary(), "hash": arch.hash,
            "metric": result.value, "metric_name": "accuracy",
            "predicted_latency_ms": round(predicted, 3),
            "latency_ratio": round(predicted / latency_model.dense_ms, 4),
            "steps": result.steps, "samples": result.samples, "seconds": round(result.seconds, 2),
        })
        OUT.write_text(json.dumps({
            "space": space.name, "model": spec.model, "task": "sst2",
            "recipe": {"steps": spec.estimate.steps, "lr": spec.estimate.lr,
                       "batch_size": spec.estimate.batch_size, "eval": "whole dev set (872)",
                       "teacher": "default TeacherRecipe (2,000 steps)"},
            "latency_model": LATENCY_COPY.name, "trials": trials,
        }, indent=1) + "\n")
        print(f"[{index + 1}/{len(archs)}] {arch.summary()} ratio {trials[-1]['latency_ratio']:.2f}: "
              f"{result.value:.4f} ({result.seconds:.0f}s)", file=sys.stderr)
    print(json.dumps({"trials": len(trials), "seconds": round(time.perf_counter() - start, 1),
                      "out": str(OUT.relative_to(REPO))}))


if __name__ == "__main__":
    main()
