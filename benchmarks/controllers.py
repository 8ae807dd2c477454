"""Search controllers compared on a surrogate problem at an equal evaluation budget.

The surrogate stands in for (cheap fine-tune, latency model) so that every controller can be
run for many seeds in minutes, repeatably:

* latency: the fitted latency model of this machine (``benchmarks/data/latency_model.json``, a
  copy of a file from ``latency_models/``), ``LatencyModel.predict``;
* accuracy: a Gaussian-process regression fitted on real cheap-fine-tune results of MiniLM on
  SST-2 (``benchmarks/data/sst2_minilm_trials.json``: ≥ 40 trials, each an architecture's JSON
  and its metric), on features from ``space.stats`` plus averages over the kept layers. Its observation
  noise (the fitted white-noise level) is added back, seeded by the architecture's hash, so a
  surrogate evaluation is as noisy as a real one and the same architecture always scores the
  same. The shuffled 5-fold (repeated 4 times) cross-validated R² of the regression is reported with the results.

Every controller gets the same budget of evaluations (default 200, asked in batches of 8) for 5
seeds, with the latency model as its predictor, under a hard budget of 0.5× the dense latency.
The loop is the runner's (``autoprune.controllers.testing.drive``): over-budget candidates are
told back at once as infeasible and cost no evaluation.

Hypervolume: pymoo's, on points ``(-metric, latency/dense)`` of the evaluated candidates
within the budget, reference point ``(-0.5, 0.5)`` (chance accuracy on binary SST-2, the
budget); see ``autoprune.objectives``. Controllers see noisy metrics; hypervolume and best
metric are scored on the surrogate's noise-free mean of the architectures they evaluated (what
they found is worth, not how lucky its draws were). ``hypervolume_observed`` gives the same on
the noisy observations.

Writes ``benchmarks/results/controllers.json`` (and ``controllers.png``, median hypervolume
against evaluations with the inter-quartile band) with keys:

* ``hypervolume``: controller → median final hypervolume;
* ``evals_to_random_final_hv``: controller → median (over seeds) fraction of the budget after
  which its hypervolume reaches random search's median final hypervolume (null: not reached in
  the median seed);
* ``swiftpruner_beats_evolution_seeds``: seeds (same seed for both) where SwiftPruner's final
  hypervolume is higher than evolution's;
* ``best_metric``: controller → median best metric under the budget;
* ``targets``: the three targets of the issue, each true/false;
* ``budget``, ``seeds``, ``batch``, ``problem``, ``space``, ``surrogate`` (fit quality), ``curves``.

``--synthetic`` runs the same machinery on ``testing.SyntheticProblem`` (FLOPs latency, a
synthetic metric), labelled ``"problem": "synthetic"`` and written to
``controllers_synthetic.json`` / ``controllers_synthetic.png`` instead: it exercises the
benchmark, it measures nothing about real pruning.

Usage: ``python benchmarks/controllers.py [--synthetic] [--budget 200] [--seeds 5] [--batch 8]
[--controllers random,evolution,...] [--objective pareto|constrained|mnas] [--results FILE]``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from autoprune.controllers import CONTROLLERS, TrialResult
from autoprune.controllers.testing import SyntheticProblem, drive
from autoprune.objectives import Objective
from autoprune.space import Architecture, SearchSpace

ROOT = Path(__file__).resolve().parent
DATA = ROOT / "data"
RESULTS = ROOT / "results"
LATENCY_FILE = DATA / "latency_model.json"
TRIALS_FILE = DATA / "sst2_minilm_trials.json"
MIN_TRIALS = 40
BUDGET_RATIO = 0.5
METRIC_REF = 0.5  # chance accuracy on binary SST-2: the hypervolume's metric reference
# Registered controllers run with non-default options, each under its own name.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "evolution+warm": ("evolution", {"warm_start": 6}),  # half its population from the sweep
    "evolution+fill": ("evolution", {"fill_to": 0.97}),  # children grown to the budget
    "evolution+warm+fill": ("evolution", {"warm_start": 6, "fill_to": 0.97}),
}


class Problem(Protocol):
    dense_ms: float

    def latency(self, arch: Architecture) -> float: ...

    def metric(self, arch: Architecture) -> float: ...


class BenchmarkDataError(SystemExit):
    """A data file the real benchmark needs is missing or malformed (exit status 2)."""

    def __init__(self, message: str) -> None:
        print(f"benchmarks/controllers.py: {message}", file=sys.stderr)
        super().__init__(2)


def _shown(path: Path) -> str:
    """A data path as the user would type it: relative to the repository when inside it."""
    try:
        return str(path.relative_to(ROOT.parent))
    except ValueError:
        return str(path)


# ---- the real surrogate ------------------------------------------------------------------------
def features(space: SearchSpace, arch: Architecture) -> np.ndarray:
    """Model-size statistics relative to dense and per-layer averages over the kept layers.

    Aggregates rather than one column per layer and field: with ~50 trials, 30 per-layer
    columns let the regression fit noise (shuffled 5-fold R² 0.21 against 0.49 for these).
    """
    stats, dense = space.stats(arch), space.stats(space.dense())
    kept = [layer for layer in arch if layer.keep]
    return np.asarray([
        stats.encoder_parameters / dense.encoder_parameters,
        stats.flops / dense.flops,
        stats.bytes / dense.bytes,
        len(kept) / space.num_layers,
        float(np.mean([layer.heads / space.shape.num_heads for layer in kept])),
        float(np.mean([layer.ffn for layer in kept])),
        sum(layer.heads == 0 for layer in kept) / space.num_layers,  # attention-free layers
        float(np.mean([layer.effective_sparsity for layer in kept])),
        float(np.mean([layer.bits / 32.0 for layer in kept])),
    ], dtype=float)


@dataclass
class SurrogateProblem:
    """Latency from the machine's latency model, accuracy from a regression on real trials."""

    space: SearchSpace
    latency_model: Any
    regression: Any
    noise: float
    seed: int = 0
    cv_r2: float = float("nan")
    n_trials: int = 0

    @property
    def dense_ms(self) -> float:
        return float(self.latency_model.dense_ms)

    def latency(self, arch: Architecture) -> float:
        return float(self.latency_model.predict(arch))

    def _mean(self, arch: Architecture) -> float:
        return float(self.regression.predict(features(self.space, arch)[None, :])[0])

    def true_metric(self, arch: Architecture) -> float:
        """The regression's mean: what the architecture is worth, without evaluation noise."""
        return float(np.clip(self._mean(arch), 0.0, 1.0))

    def metric(self, arch: Architecture) -> float:
        """What a controller observes: the mean plus seeded noise."""
        rng = np.random.default_rng([self.seed, int(arch.hash, 16)])
        return float(np.clip(self._mean(arch) + rng.normal(0.0, self.noise), 0.0, 1.0))


def load_surrogate(space_name: str | None) -> tuple[SurrogateProblem, SearchSpace]:
    for path in (LATENCY_FILE, TRIALS_FILE):
        if not path.is_file():
            raise BenchmarkDataError(
                f"missing {_shown(path)}: the real benchmark needs it "
                f"(latency model: copy this machine's file from latency_models/; trials: >= "
                f"{MIN_TRIALS} real cheap fine-tunes of MiniLM on SST-2). Use --synthetic to "
                "exercise the machinery without them."
            )
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
    from sklearn.model_selection import RepeatedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from autoprune.latency import LatencyModel

    latency_model = LatencyModel.load(LATENCY_FILE)
    data = json.loads(TRIALS_FILE.read_text())
    trials = data["trials"] if isinstance(data, dict) else data
    name = (
        space_name or (data.get("space") if isinstance(data, dict) else None) or "bert-structured"
    )
    space = SearchSpace.load(name, shape=latency_model.shape)
    try:
        archs = [
            Architecture.from_list(t["architecture"])
            if isinstance(t["architecture"], list)
            else Architecture.from_json(t["architecture"])
            for t in trials
        ]
        metrics = np.array([float(t["metric"]) for t in trials])
    except (KeyError, TypeError, ValueError) as exc:
        raise BenchmarkDataError(
            f"{TRIALS_FILE.name}: each trial needs architecture and metric ({exc})"
        ) from exc
    if len(archs) < MIN_TRIALS:
        raise BenchmarkDataError(
            f"{TRIALS_FILE.name}: {len(archs)} trials, at least {MIN_TRIALS} needed"
        )
    X = np.stack([features(space, a) for a in archs])
    # An isotropic RBF over the standardised features with a long initial length scale (few
    # points in many dimensions: a short one overfits) plus a white-noise term for the
    # fine-tune noise; the kernel's hyperparameters are fitted by marginal likelihood.
    kernel = ConstantKernel(1.0) * RBF(10.0, length_scale_bounds=(1.0, 1e3)) + WhiteKernel(1e-2)

    def model() -> Any:
        return make_pipeline(
            StandardScaler(), GaussianProcessRegressor(kernel, normalize_y=True, random_state=0)
        )

    with warnings.catch_warnings():  # hyperparameters at a bound are fine for a surrogate
        warnings.simplefilter("ignore", ConvergenceWarning)
        # Shuffled folds: the trials file is ordered by latency, so plain 5-fold would score
        # extrapolation to an unseen latency range, not the fit.
        folds = RepeatedKFold(n_splits=5, n_repeats=4, random_state=0)
        cv = cross_val_score(model(), X, metrics, cv=folds, scoring="r2")
        regression = model().fit(X, metrics)
    gp = regression[-1]
    noise_var = float(gp.kernel_.k2.noise_level) * float(gp._y_train_std) ** 2
    problem = SurrogateProblem(
        space,
        latency_model,
        regression,
        noise=math.sqrt(noise_var),
        cv_r2=float(np.mean(cv)),
        n_trials=len(archs),
    )
    return problem, space


# ---- running ---------------------------------------------------------------------------------
def hv_curve(objective: Objective, history: Sequence[TrialResult], budget: int) -> list[float]:
    """Hypervolume after each evaluation (infeasible tells cost none), padded to ``budget``."""
    curve: list[float] = []
    seen: list[tuple[float | None, float | None]] = []
    for result in history:
        if result.state == "infeasible":
            continue
        seen.append((result.metric, result.latency_ms))
        curve.append(objective.hypervolume(seen, metric_ref=METRIC_REF))
    return curve + [curve[-1] if curve else 0.0] * (budget - len(curve))


def run(
    name: str,
    problem: Problem,
    space: SearchSpace,
    objective: Objective,
    seed: int,
    budget: int,
    batch: int,
) -> dict[str, Any]:
    base, options = VARIANTS.get(name, (name, {}))
    controller = CONTROLLERS[base](space, objective, seed, latency_fn=problem.latency, **options)
    started = time.perf_counter()
    history = drive(controller, problem, evaluations=budget, batch=batch)
    seconds = time.perf_counter() - started
    # Scored on what the found architectures are worth (the noise-free mean), not on what the
    # controller happened to observe: with noisy evaluations the observed maximum rewards luck.
    true_metric = getattr(problem, "true_metric", None)
    scored = [
        replace(r, metric=true_metric(r.architecture)) if true_metric and r.metric is not None else r
        for r in history
    ]
    feasible = [
        r.metric for r in scored if r.metric is not None and objective.feasible(r.latency_ms)
    ]
    return {
        "curve": hv_curve(objective, scored, budget),
        "observed_final_hv": hv_curve(objective, history, budget)[-1],
        "best": max(feasible) if feasible else None,
        "seconds": seconds,
        "asked": len(history),
    }


def first_reaching(curve: Sequence[float], level: float) -> float:
    for index, value in enumerate(curve):
        if value >= level:
            return (index + 1) / len(curve)
    return math.inf


def median_or_none(values: Sequence[float]) -> float | None:
    value = statistics.median(values)
    return None if math.isinf(value) else round(value, 4)


def summarise(runs: dict[str, list[dict[str, Any]]], budget: int) -> dict[str, Any]:
    finals = {name: [r["curve"][-1] for r in rs] for name, rs in runs.items()}
    hypervolume = {name: round(statistics.median(v), 6) for name, v in finals.items()}
    random_final = hypervolume.get("random")
    evals_to = {}
    if random_final is not None:
        evals_to = {
            name: median_or_none([first_reaching(r["curve"], random_final) for r in rs])
            for name, rs in runs.items()
        }
    beats = None
    if "swiftpruner" in runs and "evolution" in runs:
        beats = sum(s > e for s, e in zip(finals["swiftpruner"], finals["evolution"], strict=True))
    others = [n for n in hypervolume if n != "random"]
    reached = [v for n, v in evals_to.items() if n != "random" and v is not None]
    targets = {
        "every_controller_beats_random": None
        if random_final is None
        else {n: hypervolume[n] > random_final for n in others},
        "best_reaches_random_final_within_half_budget": bool(reached) and min(reached) <= 0.5,
        "swiftpruner_beats_evolution_4_of_5": None if beats is None else beats >= 4,
    }
    observed = {name: round(statistics.median(r["observed_final_hv"] for r in rs), 6)
                for name, rs in runs.items()}
    return {
        "hypervolume": hypervolume,
        "hypervolume_observed": observed,
        "evals_to_random_final_hv": evals_to,
        "swiftpruner_beats_evolution_seeds": beats,
        "best_metric": {
            name: round(statistics.median([r["best"] for r in rs if r["best"] is not None]), 4)
            if any(r["best"] is not None for r in rs)
            else None
            for name, rs in runs.items()
        },
        "hypervolume_per_seed": {
            name: [round(v, 6) for v in vals] for name, vals in finals.items()
        },
        "seconds_per_run": {
            name: round(statistics.median([r["seconds"] for r in rs]), 2)
            for name, rs in runs.items()
        },
        "targets": targets,
    }


def plot(runs: dict[str, list[dict[str, Any]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for name, rs in runs.items():
        curves = np.array([r["curve"] for r in rs])
        x = np.arange(1, curves.shape[1] + 1)
        ax.plot(x, np.median(curves, axis=0), label=name)
        ax.fill_between(
            x, np.percentile(curves, 25, axis=0), np.percentile(curves, 75, axis=0), alpha=0.15
        )
    ax.set_xlabel("evaluations")
    ax.set_ylabel("hypervolume (median, IQR band)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--synthetic", action="store_true", help="synthetic problem (machinery check)"
    )
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument(
        "--space",
        default=None,
        help="search space (default: the trials file's, else bert-structured)",
    )
    parser.add_argument("--controllers", default=",".join([*CONTROLLERS, *VARIANTS]))
    parser.add_argument(
        "--objective",
        default="pareto",
        choices=["pareto", "constrained", "mnas"],
        help="the objective every controller is given (default pareto: the "
        "hypervolume measures the front)",
    )
    parser.add_argument("--results", type=Path, default=None,
                        help="where the JSON goes (the plot beside it, as .png); default "
                             "benchmarks/results/controllers.json, or controllers_synthetic.json")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.controllers.split(",") if n.strip()]

    import torch

    torch.set_num_threads(1)  # the controllers' small networks; keeps runs comparable
    if args.synthetic:
        space = SearchSpace.load(args.space or "bert-structured")
        problem: Problem = SyntheticProblem(space)
        surrogate: dict[str, Any] = {
            "latency": "FLOPs-proportional (testing.SyntheticProblem)",
            "metric": "synthetic smooth function of per-layer capacity",
        }
        stem = "controllers_synthetic"
    else:
        problem, space = load_surrogate(args.space)
        surrogate = {
            "latency": _shown(LATENCY_FILE),
            "trials": _shown(TRIALS_FILE),
            "n_trials": problem.n_trials,
            "cv_r2": round(problem.cv_r2, 4),
            "noise_std": round(problem.noise, 5),
        }
        stem = "controllers"
    objective = Objective(
        kind=args.objective, budget_ms=BUDGET_RATIO * problem.dense_ms, dense_ms=problem.dense_ms
    )
    runs: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        runs[name] = []
        for seed in range(args.seeds):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                runs[name].append(
                    run(name, problem, space, objective, seed, args.budget, args.batch)
                )
        print(
            f"{name:14s} median final HV "
            f"{statistics.median(r['curve'][-1] for r in runs[name]):.5f}",
            file=sys.stderr,
        )
    summary = summarise(runs, args.budget)
    result = {
        "problem": "synthetic" if args.synthetic else "surrogate",
        "space": space.name,
        "objective": args.objective,
        "budget": args.budget,
        "seeds": args.seeds,
        "batch": args.batch,
        "latency_budget": {
            "ratio_of_dense": BUDGET_RATIO,
            "ms": round(objective.budget_ms, 4),
            "dense_ms": round(problem.dense_ms, 4),
        },
        "hypervolume_reference": {"metric": METRIC_REF, "latency_over_dense": BUDGET_RATIO},
        "surrogate": surrogate,
        **summary,
        "curves": {
            name: [round(float(v), 6) for v in np.median([r["curve"] for r in rs], axis=0)]
            for name, rs in runs.items()
        },
    }
    path = args.results or RESULTS / f"{stem}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    plot(
        runs,
        path.with_suffix(".png"),
        f"{'SYNTHETIC problem' if args.synthetic else 'surrogate MiniLM/SST-2'}: "
        f"budget {args.budget}, {args.seeds} seeds, latency <= {BUDGET_RATIO}x dense",
    )
    printable = {k: v for k, v in result.items() if k != "curves"}
    print(json.dumps(printable, indent=1))
    return result


if __name__ == "__main__":
    main()
