"""Asynchronous successive halving over fine-tune-step rungs.

The local executor applies the same promotion rule as Ray Tune's ``AsyncHyperBandScheduler``
(a trial that reaches a rung continues only if its score is not below the ``1 - 1/eta``
quantile of the scores recorded at that rung so far), so a job gives the same trials on
``local`` and on ``ray`` with one worker.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class SuccessiveHalving:
    """Records scores per rung and decides promotion, one trial result at a time."""

    def __init__(self, rungs: Sequence[int], reduction_factor: int) -> None:
        if not rungs:
            raise ValueError("at least one rung is needed")
        self.rungs = tuple(int(r) for r in rungs)
        self.reduction_factor = int(reduction_factor)
        self._recorded: dict[int, list[float]] = {rung: [] for rung in self.rungs[:-1]}

    def cutoff(self, rung: int) -> float | None:
        recorded = self._recorded.get(rung)
        if not recorded:
            return None
        return float(np.nanpercentile(recorded, (1 - 1 / self.reduction_factor) * 100))

    def promote(self, rung: int, score: float) -> bool:
        """Record ``score`` at ``rung``; True if the trial goes on to the next rung."""
        if rung == self.rungs[-1]:
            return False
        cutoff = self.cutoff(rung)
        self._recorded[rung].append(score)
        return cutoff is None or not score < cutoff
