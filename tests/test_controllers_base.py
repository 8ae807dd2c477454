"""Controller plumbing and per-strategy behaviour beyond the shared contract."""

from __future__ import annotations

import numpy as np
import pytest

from autoprune.controllers import (
    CONTROLLERS,
    ControllerError,
    TrialResult,
    get_controller,
    group_batches,
)
from autoprune.controllers.testing import SyntheticProblem, drive, make, small_space
import warnings

from autoprune.controllers.base import ResumeDivergedWarning
from autoprune.controllers.uniform import coarse_to_fine, uniform_grid
from autoprune.errors import SpecError
from autoprune.objectives import Objective
from autoprune.space import Architecture, LayerConfig


@pytest.fixture()
def problem() -> SyntheticProblem:
    return SyntheticProblem(small_space())


def test_registry_names_and_aliases() -> None:
    assert set(CONTROLLERS) == {
        "random",
        "uniform",
        "guided",
        "evolution",
        "swiftpruner",
        "amc",
        "optuna-tpe",
        "optuna-nsga2",
        "pymoo-nsga2",
    }
    assert get_controller("tpe") is get_controller("optuna-tpe")
    assert get_controller("nsga2").name == "pymoo-nsga2"
    with pytest.raises(SpecError, match="controller.name: unknown controller 'grid'"):
        get_controller("grid")


def test_unknown_and_invalid_options_name_the_key(problem: SyntheticProblem) -> None:
    space, objective = problem.space, problem.objective()
    with pytest.raises(SpecError, match=r"^controller\.options\.foo: unknown option$"):
        get_controller("evolution")(space, objective, foo=1)
    with pytest.raises(SpecError, match=r"controller\.options\.population"):
        get_controller("evolution")(space, objective, population=1)
    with pytest.raises(SpecError, match="elites must be smaller"):
        get_controller("evolution")(space, objective, population=3, elites=3)
    with pytest.raises(SpecError, match=r"controller\.options\.warmup"):
        get_controller("amc")(space, objective, warmup="many")
    assert get_controller("pymoo-nsga2").accepts("population")
    assert not get_controller("random").accepts("population")


def test_driving_errors(problem: SyntheticProblem) -> None:
    controller = make("random", problem.space, problem.objective())
    with pytest.raises(ControllerError):
        controller.ask(0)
    arch = controller.ask(1)[0]
    with pytest.raises(ControllerError, match="unknown state"):
        controller.tell([TrialResult(0, arch, 0.8, 1.0, "done")])  # type: ignore[arg-type]


def test_trial_result_usable_and_batches() -> None:
    arch = Architecture.dense(2, 4)
    assert TrialResult(0, arch, 0.8, 1.0, "complete").usable
    assert TrialResult(0, arch, 0.7, 1.0, "pruned").usable
    assert not TrialResult(0, arch, None, 1.0, "infeasible").usable
    assert not TrialResult(0, arch, float("nan"), 1.0, "complete").usable
    history = [
        TrialResult(i, arch, None, None, "failed", batch=b)
        for i, b in enumerate([0, 0, 1, 2, 2, 2])
    ]
    assert [len(b) for b in group_batches(history)] == [2, 1, 3]


def test_flops_proxy_scales_dense_to_dense_ms(problem: SyntheticProblem) -> None:
    controller = make("random", problem.space, problem.objective())
    assert controller.latency(problem.space.dense()) == pytest.approx(problem.dense_ms)
    smaller = problem.space.decode(np.zeros(len(problem.space.dims), dtype=int))
    assert controller.latency(smaller) < problem.dense_ms


@pytest.mark.parametrize("name", ["uniform", "amc"])
def test_latency_needing_controllers_refuse_without_any_latency(
    name: str, problem: SyntheticProblem
) -> None:
    with pytest.raises(SpecError, match="latency predictor or objective.dense_ms"):
        make(name, problem.space, Objective(budget_ms=5.0))


@pytest.mark.parametrize("name", list(CONTROLLERS))
@pytest.mark.parametrize("kind", ["mnas", "pareto"])
def test_every_objective_kind_runs(name: str, kind: str, problem: SyntheticProblem) -> None:
    controller = make(name, problem.space, problem.objective(kind=kind), latency_fn=problem.latency)
    history = drive(controller, problem, evaluations=10, batch=4)
    assert sum(r.state == "complete" for r in history) == 10
    assert all(problem.space.contains(r.architecture) for r in history)


@pytest.mark.parametrize("name", list(CONTROLLERS))
def test_every_controller_runs_on_the_flops_proxy(name: str, problem: SyntheticProblem) -> None:
    """Without a predictor, proposals are filtered by the FLOPs proxy and stay within budget."""
    objective = problem.objective(budget_ratio=0.5)
    controller = make(name, problem.space, objective)
    proposals = controller.ask(6)
    proxy = [controller.latency(a) for a in proposals]
    assert all(objective.feasible(value) for value in proxy), f"{name}: {proxy}"


def test_amc_clips_every_episode_to_the_budget(problem: SyntheticProblem) -> None:
    objective = problem.objective(budget_ratio=0.35)
    controller = make(
        "amc", problem.space, objective, latency_fn=problem.latency, warmup=0, noise=0.3
    )
    history = drive(controller, problem, evaluations=16, batch=4)
    assert all(r.state == "complete" for r in history), "AMC proposed an over-budget architecture"
    # Clipping is tight: the proposals use most of the budget.
    assert max(r.latency_ms for r in history) > 0.8 * objective.budget_ms  # type: ignore[operator]


def test_amc_drops_a_layer_only_by_cutting_both_its_blocks(problem: SyntheticProblem) -> None:
    controller = make("amc", problem.space, problem.objective(), latency_fn=problem.latency)
    ffn = [block for block in controller._blocks if block.field == "ffn"]
    assert all(block.choices[0] == 0.0 for block in ffn)  # the space may drop layers
    ratios = []
    for block in controller._blocks:
        if block.layer == 1:
            ratios.append(0.0)  # layer 1: no heads and FFN 0 -> dropped
        elif block.layer == 2 and block.field == "ffn":
            ratios.append(0.0)  # layer 2 keeps heads: FFN 0 means its smallest FFN
        else:
            ratios.append(1.0)
    arch = controller._architecture(ratios)
    assert not arch[1].keep
    assert arch[2].keep and arch[2].heads == max(problem.space.choices("heads"))
    assert arch[2].ffn == min(problem.space.choices("ffn"))
    assert problem.space.contains(arch)
    assert controller._ratios_of(arch)[2:4] == [0.0, 0.0]  # dropped: nothing kept
    # Every block at 0 would keep no layer: min_layers brings the last one back, thin.
    smallest = controller._architecture([])
    assert problem.space.contains(smallest) and smallest.kept_layers == [3]
    assert smallest[3].heads == 0


def test_amc_reaches_shallow_models_under_a_tight_budget(problem: SyntheticProblem) -> None:
    # The smallest all-layers-kept model costs 0.26x dense here: below that only dropping
    # layers meets the budget, and every proposal must still be feasible.
    objective = problem.objective(budget_ratio=0.25)
    controller = make("amc", problem.space, objective, latency_fn=problem.latency)
    history = drive(controller, problem, evaluations=12, batch=4)
    assert all(r.state == "complete" for r in history)
    assert all(len(r.architecture.kept_layers) < problem.space.num_layers for r in history)


def test_amc_keeps_every_layer_when_the_space_cannot_drop() -> None:
    problem = SyntheticProblem(small_space(keep=[True]))
    controller = make("amc", problem.space, problem.objective(), latency_fn=problem.latency)
    assert all(block.choices[0] > 0.0 for block in controller._blocks if block.field == "ffn")
    assert all(layer.keep for arch in controller.ask(8) for layer in arch)


def test_amc_learns_from_its_replay(problem: SyntheticProblem) -> None:
    controller = make("amc", problem.space, problem.objective(), latency_fn=problem.latency)
    before = [p.detach().clone() for p in controller._actor.parameters()]
    drive(controller, problem, evaluations=16, batch=4)
    assert len(controller._replay) == 16 * len(controller._blocks)
    assert any(
        not np.allclose(b.numpy(), a.detach().numpy())
        for b, a in zip(before, controller._actor.parameters(), strict=True)
    )


def test_uniform_sweeps_uniform_architectures_from_the_budget_down(
    problem: SyntheticProblem,
) -> None:
    objective = problem.objective()
    controller = make("uniform", problem.space, objective, latency_fn=problem.latency)
    proposals = controller.ask(6)
    latencies = [problem.latency(a) for a in proposals]
    assert latencies == sorted(latencies, reverse=True)
    assert all(objective.feasible(value) for value in latencies)
    for arch in proposals:
        kept = [layer for layer in arch if layer.keep]
        assert len(set(kept)) == 1 and arch.kept_layers == list(range(len(kept)))


def test_uniform_walks_coarse_to_fine_for_a_pareto_objective(problem: SyntheticProblem) -> None:
    assert coarse_to_fine(list(range(10))) == [0, 9, 4, 2, 6, 1, 3, 5, 7, 8]
    assert coarse_to_fine([1]) == [1]
    objective = problem.objective(kind="pareto")
    proposals = make("uniform", problem.space, objective, latency_fn=problem.latency).ask(3)
    latencies = [problem.latency(a) for a in proposals]
    assert latencies[0] == max(latencies) and latencies[1] == min(latencies)  # both ends first


def test_evolution_keeps_its_elites_and_respects_the_budget(problem: SyntheticProblem) -> None:
    objective = problem.objective()
    controller = make("evolution", problem.space, objective, latency_fn=problem.latency)
    history = drive(controller, problem, evaluations=24, batch=4)
    assert all(r.state == "complete" for r in history)  # children are regenerated until feasible
    best = max(history, key=lambda r: r.metric or 0.0)
    assert best.architecture in [arch for _, _, arch in controller.population()]



def _offspring(history: list[TrialResult], population: int) -> list[TrialResult]:
    return [r for r in history if r.state == "complete"][population:]


def test_fill_grows_children_to_the_budget_and_no_further(problem: SyntheticProblem) -> None:
    objective = problem.objective(budget_ratio=0.4)
    # A population of 8 asked in batches of 4: the first 8 proposals are the initial population.
    plain = make("evolution", problem.space, objective, seed=1, latency_fn=problem.latency,
                 population=8)
    filled = make("evolution", problem.space, objective, seed=1, latency_fn=problem.latency,
                  population=8, fill_to=0.97)
    shares = {}
    for name, controller in (("plain", plain), ("filled", filled)):
        history = drive(controller, problem, evaluations=30, batch=4)
        children = _offspring(history, 8)
        assert children and all(r.state == "complete" for r in history)  # never over budget
        shares[name] = [problem.latency(r.architecture) / objective.budget_ms for r in children]
    # Rejection alone leaves offspring under the budget; filled ones reach 97% of it, or stop
    # where every further step would cross it.
    assert np.median(shares["filled"]) >= 0.97 > np.median(shares["plain"])
    for child in _offspring(filled.history, 8):
        arch, latency = child.architecture, problem.latency(child.architecture)
        if latency < 0.97 * objective.budget_ms:
            assert not [step for step in filled._growth_steps(arch)
                        if latency < problem.latency(step) <= objective.budget_ms]


def test_fill_keeps_the_layers_the_variation_chose(problem: SyntheticProblem) -> None:
    objective = problem.objective(budget_ratio=0.6)
    controller = make("evolution", problem.space, objective, latency_fn=problem.latency,
                      fill_to=1.0)
    small = problem.space.decode(np.zeros(len(problem.space.dims), dtype=np.int64))
    dropped = Architecture((LayerConfig.dropped(), *small.layers[1:]))
    for start in (small, dropped):
        if not controller.predicted_feasible(start):
            continue
        grown = controller.fill(start)
        assert grown.kept_layers == start.kept_layers
        assert problem.latency(start) <= problem.latency(grown) <= objective.budget_ms
    assert controller.fill(small) != small
    # Off (the default), under a soft objective, or without any latency: children as they are.
    assert make("evolution", problem.space, objective, latency_fn=problem.latency).fill(small) == small
    soft = problem.objective(kind="mnas", budget_ratio=0.6)
    assert make("evolution", problem.space, soft, latency_fn=problem.latency,
                fill_to=1.0).fill(small) == small


@pytest.mark.parametrize("name", ["evolution", "swiftpruner"])
def test_filled_evolution_resumes_exactly(name: str, problem: SyntheticProblem) -> None:
    objective = problem.objective(budget_ratio=0.5)
    options = {"population": 4, "fill_to": 0.95}
    original = make(name, problem.space, objective, seed=5, latency_fn=problem.latency, **options)
    history = drive(original, problem, evaluations=14, batch=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResumeDivergedWarning)
        rebuilt = type(original).rebuild(problem.space, objective, 5, history,
                                         latency_fn=problem.latency, **options)
    assert rebuilt.ask(3) == original.ask(3)


def test_swiftpruner_credits_its_mutations_through_the_fill(problem: SyntheticProblem) -> None:
    controller = make("swiftpruner", problem.space, problem.objective(budget_ratio=0.4),
                      latency_fn=problem.latency, population=6, fill_to=0.97)
    drive(controller, problem, evaluations=30, batch=4)
    assert controller._seen_improvements > 0  # records followed their children to the results
    assert np.abs(controller._theta).sum() > 0


@pytest.mark.parametrize("value", [0, 1.5, "most"])
def test_fill_to_out_of_range_names_the_key(problem: SyntheticProblem, value: object) -> None:
    with pytest.raises(SpecError, match=r"controller\.options\.fill_to"):
        get_controller("evolution")(problem.space, problem.objective(), fill_to=value)

@pytest.mark.parametrize("name", ["evolution", "swiftpruner"])
def test_warm_start_begins_from_the_top_of_the_uniform_sweep(
    name: str, problem: SyntheticProblem
) -> None:
    objective = problem.objective(budget_ratio=0.5)
    controller = make(name, problem.space, objective, latency_fn=problem.latency, warm_start=3)
    sweep = uniform_grid(controller)
    first = controller.ask(2) + controller.ask(2)
    assert first[:3] == sweep[:3]
    assert all(problem.latency(a) <= objective.budget_ms for a in first)
    # The rest of the initial population is random (not the sweep's next member), and
    # without a warm start the first proposal is random too.
    assert first[3] != sweep[3]
    cold = make(name, problem.space, objective, latency_fn=problem.latency)
    assert cold.ask(1)[0] not in sweep[:3]


def test_the_uniform_sweep_never_removes_all_attention(problem: SyntheticProblem) -> None:
    controller = make("uniform", problem.space, problem.objective(budget_ratio=1.0),
                      latency_fn=problem.latency)
    sweep = uniform_grid(controller)
    assert sweep and all(layer.heads > 0 for arch in sweep for layer in arch if layer.keep)
    assert {layer.ffn for arch in sweep for layer in arch if layer.keep} == {0.25, 0.5, 0.75, 1.0}


def test_warm_started_evolution_resumes_exactly(problem: SyntheticProblem) -> None:
    objective = problem.objective(budget_ratio=0.5)
    original = make("evolution", problem.space, objective, seed=3, latency_fn=problem.latency,
                    warm_start=2)
    history = drive(original, problem, evaluations=10, batch=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResumeDivergedWarning)
        rebuilt = type(original).rebuild(problem.space, objective, 3, history,
                                         latency_fn=problem.latency, population=4, warm_start=2)
    assert rebuilt.ask(3) == original.ask(3)


def test_swiftpruner_policy_is_trained(problem: SyntheticProblem) -> None:
    controller = make(
        "swiftpruner",
        problem.space,
        problem.objective(budget_ratio=0.4),
        latency_fn=problem.latency,
    )
    uniform = controller._probabilities(0.0, np.ones(2 * len(problem.space.dims), dtype=bool))
    drive(controller, problem, evaluations=30, batch=4)
    learned = controller._probabilities(0.0, np.ones(2 * len(problem.space.dims), dtype=bool))
    assert np.abs(controller._theta).sum() > 0
    assert not np.allclose(uniform, learned)


def test_optuna_study_mirrors_the_proposals(problem: SyntheticProblem) -> None:
    objective = problem.objective()
    controller = make("optuna-nsga2", problem.space, objective, latency_fn=problem.latency)
    history = drive(controller, problem, evaluations=12, batch=4)
    trials = controller._study.trials
    finished = [t for t in trials if t.state.is_finished()]
    assert len(finished) == len(trials) >= len(history)
    for trial in finished:
        if trial.values is not None:
            assert list(trial.constraints.values())  # every completed trial carries its constraint


def test_pymoo_fills_batches_larger_than_its_population(problem: SyntheticProblem) -> None:
    controller = make("pymoo-nsga2", problem.space, problem.objective(), latency_fn=problem.latency)
    history = drive(controller, problem, evaluations=20, batch=7)  # population 4: spares fill in
    archs = [r.architecture for r in history]
    assert len(set(archs)) == len(archs)
    assert controller._algorithm.pop is not None and len(controller._algorithm.pop) == 4
