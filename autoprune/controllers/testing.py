"""The shared controller test suite and the cheap synthetic problem it runs on.

Like ``optuna.testing``, this lives in the package so that every controller — including one a
user registers — can be held to the same contract. ``tests/test_controllers_suite.py`` runs
every ``check_*`` function over every registered controller; a new controller passes by
construction or fails with a message naming the broken promise.

The synthetic problem is deterministic and fast: latency is proportional to FLOPs (plus a
fixed overhead), the metric is a smooth, saturating function of each layer's kept capacity
with per-layer importances drawn once from the problem seed, plus noise seeded by the
architecture's hash (the same architecture always scores the same). :func:`drive` is the
runner's loop in miniature: ask a batch, tell over-budget candidates back at once as
``infeasible`` (they cost no evaluation), evaluate the rest, tell the batch in ask order.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autoprune.controllers.base import Controller, ResumeDivergedWarning, ScoresFn, TrialResult
from autoprune.controllers.guided import LayerScores
from autoprune.controllers.registry import CONTROLLERS
from autoprune.objectives import Objective
from autoprune.space import Architecture, LayerConfig, ModelShape, SearchSpace

# Options that make each controller learn within a test-sized budget (a few dozen trials).
FAST_OPTIONS: dict[str, dict[str, Any]] = {
    "evolution": {"population": 4},
    "swiftpruner": {"population": 4},
    "amc": {"warmup": 3, "batch_size": 8, "hidden": 16, "updates_per_episode": 2, "actor_lr": 3e-3},
    "optuna-tpe": {"n_startup_trials": 4, "n_ei_candidates": 8},
    "optuna-nsga2": {"population": 4},
    "pymoo-nsga2": {"population": 4},
}

SMALL_SHAPE = ModelShape(
    num_layers=4, hidden=64, num_heads=4, intermediate=256, vocab_size=100, max_position=64
)


def small_space(shape: ModelShape = SMALL_SHAPE, **per_layer: list[Any]) -> SearchSpace:
    """A 4-layer space (keep, heads, ffn; bits when asked): big enough to search, quick to price."""
    choices: dict[str, list[Any]] = {
        "keep": [True, False],
        "heads": [0, 1, 2, 3, 4],
        "ffn": [0.25, 0.5, 0.75, 1.0],
    }
    choices.update(per_layer)
    return SearchSpace.from_dict({"name": "test-small", "per_layer": choices}, shape)


@dataclass
class SyntheticProblem:
    """A deterministic stand-in for (cheap fine-tune, latency model) on a space."""

    space: SearchSpace
    seed: int = 0
    dense_ms: float = 10.0
    noise: float = 0.003
    overhead: float = 0.15  # share of dense latency that no pruning removes
    _importance: np.ndarray = field(init=False, repr=False)
    _dense_flops: float = field(init=False, repr=False)
    _costs: dict[tuple[int, LayerConfig], float] = field(
        init=False, repr=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        layers = self.space.num_layers
        # Per-layer (attention, FFN) importance: lower layers matter more, with jitter.
        depth = np.linspace(1.3, 0.7, layers)
        self._importance = np.stack(
            [depth * rng.uniform(0.5, 1.5, layers), depth * rng.uniform(0.5, 1.5, layers)], axis=1
        )
        self._importance /= self._importance.sum()
        self._dense_flops = float(self.space.stats(self.space.dense()).flops)

    def latency(self, arch: Architecture) -> float:
        """FLOPs-proportional latency (ms) with a fixed overhead; int8 layers at 0.6×."""
        cost = sum(self._layer_cost(index, layer) for index, layer in enumerate(arch) if layer.keep)
        return self.dense_ms * (self.overhead + (1 - self.overhead) * cost / self._dense_flops)

    def _layer_cost(self, index: int, layer: LayerConfig) -> float:
        key = (index, layer)
        if key not in self._costs:
            single = [
                layer if i == index else LayerConfig.dropped() for i in range(self.space.num_layers)
            ]
            self._costs[key] = self.space.stats(Architecture(tuple(single))).flops * (
                0.6 if layer.bits <= 8 else 1.0
            )
        return self._costs[key]

    @property
    def controller_inputs(self) -> dict[str, Any]:
        """What the runner gives a controller besides its options: latency and importance."""
        return {"latency_fn": self.latency, "scores_fn": self.scores}

    def scores(self) -> LayerScores:
        """Unit importance as a teacher would report it: each layer's attention and FFN
        weight in :meth:`metric`, spread over its heads and neurons with fixed jitter."""
        rng = np.random.default_rng([self.seed, 1])
        shape = self.space.shape
        heads = self._importance[:, :1] * rng.uniform(0.5, 1.5, (shape.num_layers, shape.num_heads))
        neurons = tuple(self._importance[i, 1] * rng.uniform(0.5, 1.5, shape.intermediate)
                        for i in range(shape.num_layers))
        return LayerScores(heads=heads, neurons=neurons)

    def metric(self, arch: Architecture) -> float:
        """Accuracy-like: 0.5 (chance) rising to ~0.92 with the capacity kept where it matters."""
        score = 0.0
        for index, layer in enumerate(arch):
            if not layer.keep:
                continue
            heads = layer.heads / self.space.shape.num_heads
            quality = (1.0 - 0.4 * layer.effective_sparsity**2) * (0.9 if layer.bits == 4 else 1.0)
            score += quality * (
                self._importance[index, 0] * math.sqrt(heads)
                + self._importance[index, 1] * math.sqrt(layer.ffn)
            )
        noise_rng = np.random.default_rng([self.seed, int(arch.hash, 16)])
        return float(
            0.5
            + 0.42 * (1.0 - math.exp(-3.0 * score)) / (1.0 - math.exp(-3.0))
            + noise_rng.normal(0.0, self.noise)
        )

    def objective(self, budget_ratio: float = 0.5, kind: str = "constrained") -> Objective:
        return Objective(kind=kind, budget_ms=budget_ratio * self.dense_ms, dense_ms=self.dense_ms)  # type: ignore[arg-type]


def drive(
    controller: Controller,
    problem: SyntheticProblem | Any,
    evaluations: int,
    batch: int = 4,
    max_ask_factor: int = 50,
    start_id: int = 0,
    on_batch: Callable[[list[TrialResult]], None] | None = None,
) -> list[TrialResult]:
    """The runner's loop: returns every result told, in order (infeasible ones included)."""
    history: list[TrialResult] = []
    evaluated = asked = 0
    batch_index = len({r.batch for r in controller.history})
    while evaluated < evaluations and asked < max_ask_factor * evaluations:
        n = min(batch, evaluations - evaluated)
        results: list[TrialResult] = []
        for arch in controller.ask(n):
            asked += 1
            latency = problem.latency(arch)
            trial_id = start_id + len(history) + len(results)
            if controller.objective.hard and not controller.objective.feasible(latency):
                results.append(
                    TrialResult(trial_id, arch, None, latency, "infeasible", batch=batch_index)
                )
                continue
            results.append(
                TrialResult(
                    trial_id, arch, problem.metric(arch), latency, "complete", batch=batch_index
                )
            )
            evaluated += 1
        controller.tell(results)
        if on_batch is not None:
            on_batch(results)
        history.extend(results)
        batch_index += 1
    return history


def make(
    name: str,
    space: SearchSpace,
    objective: Objective,
    seed: int = 0,
    latency_fn: Callable[[Architecture], float] | None = None,
    scores_fn: ScoresFn | None = None,
    **options: Any,
) -> Controller:
    """A registered controller with the suite's fast options (overridden by ``options``)."""
    return CONTROLLERS[name](
        space, objective, seed, latency_fn=latency_fn, scores_fn=scores_fn,
        **{**FAST_OPTIONS.get(name, {}), **options}
    )


# ---- the checks ------------------------------------------------------------------------------
def check_proposals_valid_and_distinct(name: str, space: SearchSpace | None = None) -> None:
    space = space or small_space()
    problem = SyntheticProblem(space)
    controller = make(name, space, problem.objective(), **problem.controller_inputs)
    history = drive(controller, problem, evaluations=24, batch=5)
    archs = [r.architecture for r in history]
    for arch in archs:
        assert space.contains(arch), f"{name}: proposed {arch.summary()} outside the space"
    assert len(set(archs)) == len(archs), f"{name}: repeated a proposal in a space of {space.size}"


def check_same_seed_same_proposals(name: str) -> None:
    space = small_space()
    problem = SyntheticProblem(space)
    runs = [
        drive(
            make(name, space, problem.objective(), seed=seed, **problem.controller_inputs),
            problem,
            evaluations=16,
            batch=4,
        )
        for seed in (3, 3, 4)
    ]
    first, again, other = ([r.architecture for r in run] for run in runs)
    assert first == again, f"{name}: the same seed gave different proposals"
    if CONTROLLERS[name].seed_dependent:
        assert first != other, f"{name}: seeds 3 and 4 gave the same proposals"


def check_tell_changes_proposals(name: str) -> None:
    """Told an inverted landscape (1 - metric), an adaptive controller proposes differently."""
    space = small_space()
    problem = SyntheticProblem(space)
    objective = problem.objective()
    straight = make(name, space, objective, seed=1, **problem.controller_inputs)
    inverted = make(name, space, objective, seed=1, **problem.controller_inputs)
    for round_ in range(6):
        asked = straight.ask(4)
        if round_ == 0:
            assert inverted.ask(4) == asked, f"{name}: diverged before the results differed"
        else:
            inverted.ask(4)  # its own proposals; it is told the straight ones' results, inverted
        results = [
            TrialResult(i, a, problem.metric(a), problem.latency(a), "complete")
            for i, a in enumerate(asked)
        ]
        straight.tell(results)
        inverted.tell(
            [
                TrialResult(
                    r.trial_id, r.architecture, 1.0 - (r.metric or 0.0), r.latency_ms, "complete"
                )
                for r in results
            ]
        )
    later = [straight.ask(4) for _ in range(3)], [inverted.ask(4) for _ in range(3)]
    assert later[0] != later[1], f"{name}: proposals ignore what was told"


def check_rebuild_gives_same_next_proposals(name: str, batch: int = 3) -> None:
    space = small_space()
    problem = SyntheticProblem(space)
    objective = problem.objective()
    original = make(name, space, objective, seed=7, **problem.controller_inputs)
    history = drive(original, problem, evaluations=14, batch=batch)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResumeDivergedWarning)
        rebuilt = type(original).rebuild(
            space, objective, 7, history, **problem.controller_inputs, **FAST_OPTIONS.get(name, {})
        )
    assert rebuilt.history == original.history
    for _ in range(3):
        expected = original.ask(batch)
        assert rebuilt.ask(batch) == expected, (
            f"{name}: the rebuilt controller proposes differently"
        )
        results = [
            TrialResult(100 + i, a, problem.metric(a), problem.latency(a), "complete")
            for i, a in enumerate(expected)
        ]
        original.tell(results)
        rebuilt.tell(results)


def check_rebuild_divergence_falls_back(name: str) -> None:
    """A history the controller would not have proposed: a warning, then an informed controller."""
    space = small_space()
    problem = SyntheticProblem(space)
    objective = problem.objective()
    rng = np.random.default_rng(99)
    foreign = [space.sample(rng) for _ in range(6)]
    history = [
        TrialResult(
            i,
            a,
            problem.metric(a),
            problem.latency(a),
            "complete" if objective.feasible(problem.latency(a)) else "infeasible",
            batch=i // 3,
        )
        for i, a in enumerate(dict.fromkeys(foreign))
    ]
    history = [
        r
        if r.state == "complete"
        else TrialResult(
            r.trial_id, r.architecture, None, r.latency_ms, "infeasible", batch=r.batch
        )
        for r in history
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rebuilt = CONTROLLERS[name].rebuild(
            space, objective, 0, history, **problem.controller_inputs, **FAST_OPTIONS.get(name, {})
        )
    assert any(issubclass(w.category, ResumeDivergedWarning) for w in caught), (
        f"{name}: a foreign history replayed without a warning"
    )
    assert rebuilt.history == history
    proposals = rebuilt.ask(4)
    assert not set(proposals) & {r.architecture for r in history}, (
        f"{name}: re-proposed told architectures"
    )


def check_infeasible_handled(name: str) -> None:
    """Tight and impossible budgets, failures and infeasible results never break a controller."""
    space = small_space()
    problem = SyntheticProblem(space)
    tight = problem.objective(budget_ratio=0.3)
    controller = make(name, space, tight, **problem.controller_inputs)
    history = drive(controller, problem, evaluations=12, batch=4)
    evaluated = [r for r in history if r.state == "complete"]
    assert len(evaluated) == 12, (
        f"{name}: could not find 12 feasible candidates under a tight budget"
    )
    # A budget below the smallest model: proposals keep coming (the runner decides to stop).
    impossible = Objective(kind="constrained", budget_ms=0.01, dense_ms=problem.dense_ms)
    controller = make(name, space, impossible, **problem.controller_inputs)
    for round_ in range(3):
        asked = controller.ask(4)
        assert len(asked) == 4 and all(space.contains(a) for a in asked)
        controller.tell(
            [
                TrialResult(10 * round_ + i, a, None, problem.latency(a), "infeasible")
                for i, a in enumerate(asked)
            ]
        )
    # Failed and pruned results are told without complaint.
    controller = make(name, space, problem.objective(), **problem.controller_inputs)
    asked = controller.ask(4)
    states = ["failed", "pruned", "complete", "failed"]
    controller.tell(
        [
            TrialResult(i, a, None if s == "failed" else problem.metric(a), problem.latency(a), s)  # type: ignore[arg-type]
            for i, (a, s) in enumerate(zip(asked, states, strict=True))
        ]
    )
    assert all(space.contains(a) for a in controller.ask(4))


def check_exhausted_space(name: str) -> None:
    """In a space of 16 architectures, asking 20 returns 20; the first 12 are distinct."""
    space = SearchSpace.from_dict(
        {"name": "tiny", "per_layer": {"heads": [2, 4], "ffn": [0.5, 1.0]}},
        ModelShape(
            num_layers=2, hidden=16, num_heads=4, intermediate=32, vocab_size=10, max_position=16
        ),
    )
    problem = SyntheticProblem(space)
    controller = make(name, space, problem.objective(budget_ratio=1.0), **problem.controller_inputs)
    proposals: list[Architecture] = []
    for round_ in range(5):
        asked = controller.ask(4)
        assert len(asked) == 4 and all(space.contains(a) for a in asked)
        proposals.extend(asked)
        controller.tell(
            [
                TrialResult(4 * round_ + i, a, problem.metric(a), problem.latency(a), "complete")
                for i, a in enumerate(asked)
            ]
        )
    assert len(set(proposals[:12])) == 12, f"{name}: repeated long before exhausting the space"


CHECKS: dict[str, Callable[[str], None]] = {
    "proposals_valid_and_distinct": check_proposals_valid_and_distinct,
    "same_seed_same_proposals": check_same_seed_same_proposals,
    "tell_changes_proposals": check_tell_changes_proposals,
    "rebuild_gives_same_next_proposals": check_rebuild_gives_same_next_proposals,
    "rebuild_divergence_falls_back": check_rebuild_divergence_falls_back,
    "infeasible_handled": check_infeasible_handled,
    "exhausted_space": check_exhausted_space,
}


def applicable(name: str, check: str) -> bool:
    """Whether ``check`` applies: non-adaptive controllers need not react to ``tell``."""
    if check == "tell_changes_proposals":
        return CONTROLLERS[name].adaptive
    return True


def run_all(names: Sequence[str] | None = None) -> None:
    """Every check on every (or the named) registered controller; raises on the first failure."""
    for name in names or list(CONTROLLERS):
        for check, function in CHECKS.items():
            if applicable(name, check):
                function(name)
