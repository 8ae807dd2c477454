"""``benchmarks/pick_at_export.py``: each budget's candidates are real members of its space."""

from __future__ import annotations

import json
from types import ModuleType

import pytest

from autoprune.space import Architecture, SearchSpace
from benchmark_scripts import BENCHMARKS, load_benchmark


@pytest.fixture(scope="module")
def pick_at_export() -> ModuleType:
    return load_benchmark("pick_at_export")


def test_every_role_is_an_architecture_of_its_budgets_space(pick_at_export: ModuleType) -> None:
    for ratio, candidates in pick_at_export.BUDGETS.items():
        space = SearchSpace.load(candidates.space)
        for role, summary in candidates.roles.items():
            arch = Architecture.from_summary(summary)
            assert space.contains(arch), (ratio, role)
            assert arch.summary() == summary  # the summary round-trips, as results record it
        assert {"guided", "uniform-matched"} <= set(candidates.roles)  # what the summary compares


def test_the_half_budget_roles_are_the_fill_runs_trials(pick_at_export: ModuleType) -> None:
    # The 0.5x roles name trials of end_to_end_zen3_fill.json: its kept model, the two
    # candidates its confirmation exported, its uniform baseline, and the guided member verified.
    run = json.loads((BENCHMARKS / "results" / "end_to_end_zen3_fill.json").read_text())["runs"][0]
    roles = pick_at_export.BUDGETS[0.5].roles
    assert roles["grown-kept"] == run["architecture"]
    assert roles["uniform-matched"] == run["uniform_architecture"]
    exported = {candidate["architecture"] for candidate in run["confirmed"]["candidates"]}
    assert {roles["grown-kept"], roles["grown-first"]} == exported
    assert 5 in {candidate["trial"] for candidate in run["verified"]["candidates"]}


def test_the_summary_compares_guided_with_uniform_per_seed(pick_at_export: ModuleType) -> None:
    final = pick_at_export.EXPORT_STEPS
    runs = [{"role": "guided", "seed": 1, "steps": final, "accuracy": 0.8956},
            {"role": "uniform-matched", "seed": 1, "steps": final, "accuracy": 0.8899},
            {"role": "guided", "seed": 1, "steps": pick_at_export.RUNG, "accuracy": 0.8830}]
    summary = pick_at_export.summarise(runs, pick_at_export.BUDGETS[0.5].roles)
    assert summary["at_export"]["guided"]["by_seed"] == {1: 0.8956}
    assert summary["guided_minus_uniform_matched"] == {1: 0.0057}
    assert summary["guided_minus_uniform_matched_median"] == 0.0057
