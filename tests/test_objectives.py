"""Rewards, the constraint, the Pareto front and the hypervolume (autoprune.objectives)."""

from __future__ import annotations

import math

import pytest

from autoprune.errors import SpecError
from autoprune.objectives import Objective, domination_counts, hypervolume, pareto_front


def test_constrained_reward_is_mnasnet_hard_form() -> None:
    objective = Objective(kind="constrained", budget_ms=10.0)
    assert objective.reward(0.8, 5.0) == 0.8  # within the budget: the metric itself
    assert objective.reward(0.8, 10.0) == 0.8
    assert objective.reward(0.8, 20.0) == pytest.approx(0.4)  # beyond: metric * (T / latency)
    assert objective.reward(0.8, 11.0) > objective.reward(0.8, 12.0)


def test_mnas_reward_is_soft_on_both_sides() -> None:
    objective = Objective(kind="mnas", budget_ms=10.0, w=-0.07)
    assert objective.reward(0.9, 5.0) == pytest.approx(0.9 * 0.5**-0.07)
    assert objective.reward(0.9, 20.0) == pytest.approx(0.9 * 2.0**-0.07)
    assert objective.reward(0.9, 5.0) > objective.reward(0.9, 10.0) > objective.reward(0.9, 20.0)


def test_negative_metrics_are_still_penalised_by_latency() -> None:
    objective = Objective(kind="mnas", budget_ms=10.0)
    assert objective.reward(-0.2, 20.0) < objective.reward(-0.2, 10.0) < objective.reward(-0.2, 5.0)


def test_feasible() -> None:
    objective = Objective(budget_ms=10.0)
    assert objective.feasible(10.0) and not objective.feasible(10.01)
    assert not objective.feasible(None) and not objective.feasible(math.inf)
    assert objective.hard and Objective(kind="pareto").hard and not Objective(kind="mnas").hard


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"kind": "best"}, "objective.kind"),
        ({"budget_ms": 0.0}, "objective.budget_ms"),
        ({"w": 0.5}, "objective.w"),
        ({"dense_ms": -1.0}, "objective.dense_ms"),
    ],
)
def test_invalid_objectives_name_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(SpecError, match=key):
        Objective(**kwargs)


def test_pareto_front_indices() -> None:
    points = [(-0.9, 0.5), (-0.8, 0.3), (-0.85, 0.6), (-0.7, 0.3), (-0.95, 0.9)]
    assert pareto_front(points) == [0, 1, 4]
    assert pareto_front([]) == []


def test_domination_counts() -> None:
    points = [(0.0, 0.0), (1.0, 1.0), (0.0, 1.0), (2.0, 2.0)]
    assert domination_counts(points).tolist() == [0, 2, 1, 3]
    assert domination_counts([(0.5, 0.5)], against=points).tolist() == [1]


def test_hypervolume_of_known_rectangles() -> None:
    ref = (-0.5, 0.5)
    assert hypervolume([(-0.9, 0.2)], ref) == pytest.approx(0.4 * 0.3)
    # Two points: the union of their boxes (0.4*0.3 + 0.2*0.1 for the second's extra strip).
    assert hypervolume([(-0.9, 0.2), (-0.7, 0.1)], ref) == pytest.approx(0.12 + 0.2 * 0.1)
    assert hypervolume([(-0.4, 0.1), (-0.9, 0.6)], ref) == 0.0  # neither beats the reference
    assert hypervolume([], ref) == 0.0


def test_objective_hypervolume_uses_feasible_points_relative_to_dense() -> None:
    objective = Objective(kind="pareto", budget_ms=5.0, dense_ms=10.0)
    assert objective.reference_point(0.5) == (-0.5, 0.5)
    value = objective.hypervolume([(0.9, 2.0), (0.95, 6.0), (None, 1.0)], metric_ref=0.5)
    assert value == pytest.approx(0.4 * 0.3)  # (0.95, 6 ms) is over the budget: ignored
    assert Objective(budget_ms=5.0).latency_scale == 5.0  # no dense latency: the budget
