"""The importance-guided allocation (global ranking of heads and neurons) and its warm start."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch

from autoprune.compress import Importance
from autoprune.controllers.base import ResumeDivergedWarning
from autoprune.controllers.guided import (
    GuidedScoresMissingWarning,
    LayerScores,
    global_counts,
    guided_architecture,
    guided_grid,
    importance_order,
    is_uniform,
    retained_importance,
    weighted_retained_importance,
)
from autoprune.controllers.testing import SyntheticProblem, drive, make, small_space
from autoprune.controllers.uniform import uniform_grid
from autoprune.errors import SpecError
from autoprune.objectives import Objective
from autoprune.space import Architecture, LayerConfig


@pytest.fixture()
def problem() -> SyntheticProblem:
    return SyntheticProblem(small_space())


def skewed_scores(problem: SyntheticProblem) -> LayerScores:
    """Layer 0's units matter most, layer 3's least; noise makes every score distinct."""
    shape = problem.space.shape
    rng = np.random.default_rng(0)
    weight = np.array([4.0, 2.0, 1.0, 0.5])
    heads = weight[:, None] * rng.uniform(0.5, 1.5, (shape.num_layers, shape.num_heads))
    neurons = tuple(w * rng.uniform(0.5, 1.5, shape.intermediate) for w in weight)
    return LayerScores(heads=heads, neurons=neurons)


def test_global_counts_match_a_brute_force_top_k() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        scores = [rng.random(int(rng.integers(1, 6))) for _ in range(int(rng.integers(1, 5)))]
        size = sum(s.size for s in scores)
        for total in range(size + 2):
            flat = sorted(((v, layer) for layer, s in enumerate(scores) for v in s), reverse=True)
            expected = [0] * len(scores)
            for _, layer in flat[:total]:
                expected[layer] += 1
            assert global_counts(scores, total) == expected


def test_equal_scores_split_evenly() -> None:
    assert global_counts([np.ones(4)] * 3, 6) == [2, 2, 2]
    assert global_counts([np.ones(4)] * 3, 7) == [3, 2, 2]


def test_allocation_follows_importance_and_stays_in_the_space(problem: SyntheticProblem) -> None:
    space = problem.space
    arch = guided_architecture(space, skewed_scores(problem), depth=4, heads=2, ffn=0.5)
    assert space.contains(arch) and not is_uniform(arch)
    kept = [layer for layer in arch if layer.keep]
    assert kept[0].heads >= kept[-1].heads and kept[0].ffn >= kept[-1].ffn
    assert kept[0].heads > kept[-1].heads or kept[0].ffn > kept[-1].ffn
    # Dropped layers are the top ones, as in the uniform sweep.
    shallow = guided_architecture(space, skewed_scores(problem), depth=2, heads=4, ffn=1.0)
    assert [layer.keep for layer in shallow] == [True, True, False, False]


def test_even_scores_allocate_uniformly(problem: SyntheticProblem) -> None:
    shape = problem.space.shape
    even = LayerScores(heads=np.ones((shape.num_layers, shape.num_heads)),
                       neurons=tuple(np.ones(shape.intermediate) for _ in range(shape.num_layers)))
    for heads, ffn in itertools.product([1, 2, 3, 4], [0.25, 0.5, 0.75, 1.0]):
        arch = guided_architecture(problem.space, even, depth=4, heads=heads, ffn=ffn)
        assert is_uniform(arch) and arch[0].heads == heads and arch[0].ffn == ffn


def test_guided_grid_is_feasible_and_ordered_from_the_budget_down(
    problem: SyntheticProblem,
) -> None:
    objective = problem.objective(budget_ratio=0.5)
    controller = make("uniform", problem.space, objective, latency_fn=problem.latency)
    grid = guided_grid(controller, skewed_scores(problem))
    latencies = [problem.latency(arch) for arch in grid]
    assert grid and len(set(grid)) == len(grid)
    assert all(ms <= objective.budget_ms for ms in latencies)
    assert latencies == sorted(latencies, reverse=True)
    assert any(not is_uniform(arch) for arch in grid)
    assert all(any(layer.heads for layer in arch if layer.keep) for arch in grid)


def test_retained_importance_sums_each_layers_top_units(problem: SyntheticProblem) -> None:
    space, shape = problem.space, problem.space.shape
    scores = skewed_scores(problem)
    dense = Architecture.dense(shape.num_layers, shape.num_heads)
    assert retained_importance(dense, scores, shape) == pytest.approx((1.0, 1.0))
    arch = guided_architecture(space, scores, depth=3, heads=2, ffn=0.5)
    heads, neurons = retained_importance(arch, scores, shape)
    kept_heads = kept_neurons = 0.0
    for index, layer in enumerate(arch):
        if layer.keep:
            kept_heads += sum(sorted(scores.heads[index], reverse=True)[: layer.heads])
            kept_neurons += sum(sorted(scores.neurons[index], reverse=True)[
                : shape.ffn_neurons(layer.ffn)])
    assert heads == pytest.approx(kept_heads / scores.heads.sum())
    assert neurons == pytest.approx(kept_neurons / sum(n.sum() for n in scores.neurons))
    # The same counts kept in the least important layers (scores reversed) retain less.
    reversed_scores = LayerScores(heads=scores.heads[::-1].copy(), neurons=scores.neurons[::-1])
    reversed_heads, reversed_neurons = retained_importance(arch, reversed_scores, shape)
    assert reversed_heads < heads and reversed_neurons < neurons


def test_scores_of_another_model_are_refused(problem: SyntheticProblem) -> None:
    controller = make("uniform", problem.space, problem.objective(), latency_fn=problem.latency)
    wrong = LayerScores(heads=np.ones((2, 4)), neurons=(np.ones(8), np.ones(8)))
    with pytest.raises(SpecError, match="2 layers"):
        guided_grid(controller, wrong)


def test_scores_from_an_importance() -> None:
    importance = Importance(heads=torch.tensor([[1.0, 2.0], [3.0, 4.0]]),
                            neurons=(torch.ones(3), torch.zeros(3)))
    scores = LayerScores.from_importance(importance)
    assert scores.heads.shape == (2, 2) and scores.heads[1, 1] == 4.0
    assert [n.tolist() for n in scores.neurons] == [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]


@pytest.mark.parametrize("name", ["evolution", "swiftpruner"])
def test_guided_start_follows_the_uniform_warm_start(name: str, problem: SyntheticProblem) -> None:
    objective = problem.objective(budget_ratio=0.5)
    scores = skewed_scores(problem)
    asked: list[int] = []

    def scores_fn() -> LayerScores:
        asked.append(1)
        return scores

    controller = make(name, problem.space, objective, latency_fn=problem.latency,
                      scores_fn=scores_fn, warm_start=2, guided_start=2, guided_pick="closest",
                      population=6)
    first = controller.ask(5)
    guided = [arch for arch in guided_grid(controller, scores)
              if not is_uniform(arch) and arch not in first[:2]]
    assert first[:2] == uniform_grid(controller)[:2]
    assert first[2:4] == guided[:2]
    assert first[4] not in guided[:3]  # then random, as without a guided start
    assert len(asked) == 1  # the scores are asked for once, on the first ask


def test_guided_start_picks_the_most_importance_kept(problem: SyntheticProblem) -> None:
    objective = problem.objective(budget_ratio=0.5)
    scores = skewed_scores(problem)
    shape = problem.space.shape
    controller = make("evolution", problem.space, objective, latency_fn=problem.latency,
                      scores_fn=lambda: scores, guided_start=3, start_min_layers=3,
                      population=6)
    first = controller.ask(3)
    candidates = [arch for arch in guided_grid(controller, scores)
                  if not is_uniform(arch) and len(arch.kept_layers) >= 3]
    assert first == importance_order(candidates, scores, shape)[:3]
    kept = [weighted_retained_importance(arch, scores, shape) for arch in candidates]
    assert [weighted_retained_importance(arch, scores, shape) for arch in first] == \
        sorted(kept, reverse=True)[:3]
    # Shallower allocations exist under this budget; the floor keeps them out of the start.
    assert any(len(arch.kept_layers) < 3 for arch in guided_grid(controller, scores))


def test_a_layer_floor_above_the_model_is_refused(problem: SyntheticProblem) -> None:
    with pytest.raises(SpecError, match="start_min_layers: 5 is more than the model's 4"):
        make("evolution", problem.space, problem.objective(), latency_fn=problem.latency,
             guided_start=1, start_min_layers=5)


@pytest.mark.parametrize("name", ["evolution", "swiftpruner"])
def test_the_floor_covers_the_whole_initial_population(problem: SyntheticProblem, name: str) -> None:
    objective = problem.objective(budget_ratio=0.45)
    scores = skewed_scores(problem)
    controller = make(name, problem.space, objective, latency_fn=problem.latency,
                      scores_fn=lambda: scores, warm_start=2, guided_start=2,
                      start_min_layers=4, population=8, seed=3)
    first = controller.ask(8)
    uniform = uniform_grid(controller)
    # Without the floor the warm start would begin with shallow uniform models.
    assert any(len(arch.kept_layers) < 4 for arch in uniform[:2])
    deep = [arch for arch in uniform if len(arch.kept_layers) >= 4][:2]
    assert deep and first[: len(deep)] == deep
    assert all(len(arch.kept_layers) >= 4 for arch in first)  # the random members too
    assert all(controller.predicted_feasible(arch) for arch in first)
    assert len(set(first)) == len(first)
    # The same controller without the floor samples shallower random members.
    unfloored = make(name, problem.space, objective, latency_fn=problem.latency,
                     scores_fn=lambda: scores, warm_start=2, guided_start=2,
                     population=8, seed=3)
    assert any(len(arch.kept_layers) < 4 for arch in unfloored.ask(8))


def test_the_floor_old_name_is_read_with_a_warning(problem: SyntheticProblem) -> None:
    with pytest.warns(FutureWarning, match="guided_min_layers is now start_min_layers"):
        old = make("evolution", problem.space, problem.objective(), latency_fn=problem.latency,
                   guided_min_layers=3)
    assert old.options.start_min_layers == 3
    with pytest.raises(SpecError, match=r"^controller.options: give start_min_layers only"):
        make("evolution", problem.space, problem.objective(), latency_fn=problem.latency,
             guided_min_layers=3, start_min_layers=3)


def test_importance_weighs_neurons_by_the_weights_they_carry(problem: SyntheticProblem) -> None:
    # Units alike, one layer kept: all of its FFN and none of its heads keeps that layer's
    # FFN share of the weights, twice its attention's when the FFN is 4x wide.
    shape = problem.space.shape
    assert shape.intermediate == 4 * shape.hidden
    scores = LayerScores.even(problem.space)
    dropped = [LayerConfig.dropped()] * (shape.num_layers - 1)
    ffn_only = Architecture((LayerConfig(heads=0, ffn=1.0), *dropped))
    heads_only = Architecture((LayerConfig(heads=shape.num_heads, ffn=0.0), *dropped))
    per_layer = 1 / shape.num_layers
    assert weighted_retained_importance(ffn_only, scores, shape) == pytest.approx(per_layer * 2 / 3)
    assert weighted_retained_importance(heads_only, scores, shape) == pytest.approx(per_layer / 3)
    assert importance_order([heads_only, ffn_only], scores, shape) == [ffn_only, heads_only]


def test_guided_start_without_scores_falls_back_to_random(problem: SyntheticProblem) -> None:
    objective = problem.objective(budget_ratio=0.5)
    with_none = make("evolution", problem.space, objective, latency_fn=problem.latency,
                     scores_fn=lambda: None, guided_start=3)
    plain = make("evolution", problem.space, objective, latency_fn=problem.latency)
    assert with_none.ask(3) == plain.ask(3)


def test_guided_evolution_resumes_exactly(problem: SyntheticProblem) -> None:
    objective = problem.objective(budget_ratio=0.5)
    scores = skewed_scores(problem)
    options = {"population": 4, "warm_start": 1, "guided_start": 2}
    original = make("evolution", problem.space, objective, seed=3, latency_fn=problem.latency,
                    scores_fn=lambda: scores, **options)
    history = drive(original, problem, evaluations=10, batch=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResumeDivergedWarning)
        rebuilt = type(original).rebuild(problem.space, objective, 3, history,
                                         latency_fn=problem.latency, scores_fn=lambda: scores,
                                         **options)
    assert rebuilt.ask(3) == original.ask(3)


def test_guided_controller_sweeps_the_guided_grid(problem: SyntheticProblem) -> None:
    objective = problem.objective(budget_ratio=0.5)
    controller = make("guided", problem.space, objective, latency_fn=problem.latency,
                      scores_fn=problem.scores)
    grid = guided_grid(controller, problem.scores())
    assert controller.ask(3) + controller.ask(2) == grid[:5]
    assert any(not is_uniform(arch) for arch in grid[:5])


def test_guided_controller_without_scores_sweeps_the_uniform_models(
    problem: SyntheticProblem,
) -> None:
    objective = problem.objective(budget_ratio=0.5)
    guided = make("guided", problem.space, objective, latency_fn=problem.latency)
    uniform = make("uniform", problem.space, objective, latency_fn=problem.latency)
    with pytest.warns(GuidedScoresMissingWarning, match="no importance scores"):
        proposals = guided.ask(6)
    assert set(proposals) == set(uniform.ask(6))
    assert all(is_uniform(arch) for arch in proposals)


def test_guided_controller_needs_latency(problem: SyntheticProblem) -> None:
    objective = Objective(kind="constrained", budget_ms=5.0)
    with pytest.raises(SpecError, match="controller guided: needs a latency"):
        make("guided", problem.space, objective)
