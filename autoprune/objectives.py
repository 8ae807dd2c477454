"""Rewards, constraints, the Pareto front and the hypervolume: one place, used by every controller.

Three objective kinds (the job spec's ``objective.kind``):

* ``constrained`` — a hard latency budget. As a scalar reward this is MnasNet's *hard*
  constraint form (Tan et al. 2019, eq. 2 with α=0, β=-1): ``metric`` when the latency is
  within the budget, ``metric·(latency/T)^-1`` beyond it, so an over-budget candidate is
  always ranked by how far over it is, never silently dropped.
* ``mnas`` — MnasNet's *soft* reward ``metric·(latency/T)^w`` (w = -0.07 by default) on both
  sides of the budget.
* ``pareto`` — the accuracy/latency trade-off itself. Multi-objective controllers minimise
  ``(-metric, latency)`` subject to ``latency <= budget``; single-objective controllers fall
  back to the soft reward.

Points for the Pareto front and the hypervolume are ``(-metric, latency / scale)`` with both
coordinates minimised; ``scale`` is the dense model's latency when it is known (so latency
reads as a fraction of dense), else the budget. The hypervolume's documented reference point
is ``(-metric_ref, budget / scale)``: only candidates within the budget and better than
``metric_ref`` (0 by default; a benchmark on a binary task passes the chance level 0.5)
contribute, so the hypervolume is the area of the feasible accuracy/latency front.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import find_non_dominated

from autoprune.errors import SpecError

ObjectiveKind = Literal["constrained", "mnas", "pareto"]
KINDS: tuple[str, ...] = ("constrained", "mnas", "pareto")
HARD_W = -1.0  # MnasNet's hard-constraint exponent beyond the budget


@dataclass(frozen=True)
class Objective:
    """What a search optimises: the kind, the latency budget (ms) and the soft-reward exponent.

    ``dense_ms`` is the dense model's latency on the target (from the latency model); it
    normalises latency in Pareto points and lets controllers without a latency predictor
    turn FLOPs into milliseconds.
    """

    kind: ObjectiveKind = "constrained"
    budget_ms: float = 1.0
    w: float = -0.07
    dense_ms: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SpecError(f"objective.kind: {self.kind!r} is not one of {list(KINDS)}")
        if not (math.isfinite(self.budget_ms) and self.budget_ms > 0):
            raise SpecError(f"objective.budget_ms: {self.budget_ms!r} must be a positive number")
        if not (math.isfinite(self.w) and self.w <= 0):
            raise SpecError(f"objective.w: {self.w!r} must be <= 0")
        if self.dense_ms is not None and not (math.isfinite(self.dense_ms) and self.dense_ms > 0):
            raise SpecError(f"objective.dense_ms: {self.dense_ms!r} must be a positive number")

    # ---- constraint and scalar reward ------------------------------------------------------
    @property
    def hard(self) -> bool:
        """Whether the budget is a constraint (``constrained``, ``pareto``) or a reward term."""
        return self.kind != "mnas"

    def feasible(self, latency_ms: float | None) -> bool:
        """The hard latency constraint (unknown latency is not feasible)."""
        return latency_ms is not None and math.isfinite(latency_ms) and latency_ms <= self.budget_ms

    def reward(self, metric: float, latency_ms: float) -> float:
        """The scalar reward single-objective controllers maximise (see the module docstring).

        The latency factor divides instead of multiplies a negative metric (Matthews
        correlation, a regression score) so that a slower model never scores higher.
        """
        ratio = max(float(latency_ms), 1e-12) / self.budget_ms
        exponent = self.w
        if self.kind == "constrained":
            exponent = 0.0 if ratio <= 1.0 else HARD_W
        factor = ratio**exponent
        return float(metric * factor if metric >= 0 else metric / factor)

    # ---- multi-objective view --------------------------------------------------------------
    @property
    def latency_scale(self) -> float:
        """The latency unit of Pareto points: the dense latency when known, else the budget."""
        return self.dense_ms if self.dense_ms is not None else self.budget_ms

    def point(self, metric: float, latency_ms: float) -> tuple[float, float]:
        """``(-metric, latency / scale)``: both minimised."""
        return (-float(metric), float(latency_ms) / self.latency_scale)

    def reference_point(self, metric_ref: float = 0.0) -> tuple[float, float]:
        """The hypervolume reference: no worse than ``metric_ref`` and within the budget."""
        return (-float(metric_ref), self.budget_ms / self.latency_scale)

    def hypervolume(
        self, observations: Iterable[tuple[float | None, float | None]], metric_ref: float = 0.0
    ) -> float:
        """Hypervolume of the feasible ``(metric, latency_ms)`` observations (None skipped)."""
        points = [
            self.point(m, lat)
            for m, lat in observations
            if m is not None and lat is not None and math.isfinite(m) and self.feasible(lat)
        ]
        return hypervolume(points, self.reference_point(metric_ref))


def pareto_front(points: Sequence[Sequence[float]] | np.ndarray) -> list[int]:
    """Indices of the non-dominated points (every coordinate minimised), in input order."""
    array = np.asarray(points, dtype=float)
    if array.size == 0:
        return []
    if array.ndim != 2:
        raise ValueError("pareto_front: expected a 2-D array of points")
    return sorted(int(i) for i in find_non_dominated(array))


def domination_counts(
    points: Sequence[Sequence[float]] | np.ndarray,
    against: Sequence[Sequence[float]] | np.ndarray | None = None,
) -> np.ndarray:
    """For each point, how many points of ``against`` (default: ``points``) dominate it.

    Every coordinate is minimised; 0 means non-dominated. Pareto-aware selection (evolution
    under a ``pareto`` objective) ranks by this count, SPEA-style.
    """
    array = np.asarray(points, dtype=float)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    others = (
        array if against is None else np.asarray(against, dtype=float).reshape(-1, array.shape[1])
    )
    no_worse = np.all(others[None, :, :] <= array[:, None, :], axis=2)
    better = np.any(others[None, :, :] < array[:, None, :], axis=2)
    return np.sum(no_worse & better, axis=1).astype(np.int64)


def hypervolume(points: Sequence[Sequence[float]] | np.ndarray, ref: Sequence[float]) -> float:
    """pymoo's hypervolume of minimised ``points`` with respect to ``ref``.

    Points that do not strictly dominate the reference add nothing (pymoo would still count
    them in its non-dominated filter, so they are removed first); no points give 0.
    """
    ref_array = np.asarray(ref, dtype=float)
    array = np.asarray(points, dtype=float).reshape(-1, len(ref_array))
    array = array[np.all(array < ref_array, axis=1)]
    if len(array) == 0:
        return 0.0
    return float(HV(ref_point=ref_array)(array))
