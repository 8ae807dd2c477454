"""The issue's end-to-end targets, in one place for the script that judges its runs
(``end_to_end.py``) and the one that tabulates every results file (``runs_table.py``).

Kept free of torch and autoprune so that the table (and its test) stays cheap to build.
"""

from __future__ import annotations

from typing import Any

# Points below the teacher (0-1 scale: 1 point = 0.01) allowed at each budget ratio.
TOLERANCE = {0.5: 0.01, 0.3: 0.02}
# The searched model's median gain over the uniform baseline at matched latency, "in the
# median of 3 seeds": a median over fewer seeds judges nothing.
GAIN_TARGET = 0.01
GAIN_SEEDS = 3


def tolerance(ratio: float) -> float:
    return TOLERANCE.get(ratio, 0.01)


def meets_accuracy_target(run: dict[str, Any]) -> bool:
    """Re-measured within its budget and within the budget's tolerance of the teacher."""
    return bool(run["within_budget"]) and run["metric_minus_teacher"] >= -tolerance(run["budget_ratio"])


def gain_seeds(runs: list[dict[str, Any]]) -> int:
    """How many seeds the runs with a gain cover."""
    return len({run["seed"] for run in runs if run.get("searched_minus_uniform") is not None})


def meets_gain_target(median_gain: float, seeds: int) -> bool:
    return seeds >= GAIN_SEEDS and median_gain >= GAIN_TARGET
