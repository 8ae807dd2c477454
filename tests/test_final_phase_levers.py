"""``benchmarks/final_phase_levers.py``: each lever's exports set against the same baseline."""

from __future__ import annotations

from types import ModuleType

import pytest

from autoprune.estimate import FinalPhase
from benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def levers() -> ModuleType:
    return load_benchmark("final_phase_levers")


def test_only_the_default_lever_is_the_exports_final_phase(levers: ModuleType) -> None:
    assert levers.LEVERS["default"] == FinalPhase()
    others = [phase for name, phase in levers.LEVERS.items() if name != "default"]
    assert all(phase != FinalPhase() for phase in others)
    # Each lever changes only its own fields: the rate and the hidden-state weight stay.
    assert {(phase.lr, phase.hidden_weight) for phase in others} == {
        (FinalPhase.lr, FinalPhase.hidden_weight)}


def test_each_lever_is_compared_within_itself(levers: ModuleType) -> None:
    runs = [{"role": role, "lever": lever, "seed": 1, "accuracy": accuracy}
            for role, lever, accuracy in (("guided", "labels", 0.8968),
                                          ("uniform-matched", "labels", 0.8876),
                                          ("guided", "last-to-last", 0.8945))]
    summary = levers.summarise(runs)
    assert summary["labels"]["guided_minus_uniform_matched"] == {1: 0.0092}
    assert summary["labels"]["at_export"]["guided"] == {"by_seed": {1: 0.8968}, "mean": 0.8968}
    assert summary["labels"]["guided_minus_best_baseline"] == {}  # uniform-five not trained
    with_five = runs + [{"role": "uniform-five", "lever": "labels", "seed": 1, "accuracy": 0.8899}]
    assert levers.summarise(with_five)["labels"]["guided_minus_best_baseline"] == {1: 0.0069}
    # No uniform model trained with this lever: nothing to set the guided one against.
    assert summary["last-to-last"]["guided_minus_uniform_matched"] == {}
    assert "both" not in summary
    # The default phase is pick_at_export's: its exports, not this script's runs.
    default = summary["default"]
    assert default["guided_minus_uniform_matched"][1] == round(
        default["at_export"]["guided"]["by_seed"][1]
        - default["at_export"]["uniform-matched"]["by_seed"][1], 4)
