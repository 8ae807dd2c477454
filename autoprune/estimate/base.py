"""The estimator interface and its result type.

An :class:`Estimator` turns an architecture into an accuracy estimate at a given fidelity
(fine-tune steps). Multi-fidelity schedulers (ASHA rungs) pass the checkpoint a lower rung
returned as ``resume_from`` to continue training instead of starting again.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from autoprune.space import Architecture

if TYPE_CHECKING:
    from autoprune.estimate.finetune import CheapFinetune

Checkpoint = Path
"""A candidate's saved training state (a file written by the estimator that trained it)."""


@dataclass(frozen=True)
class EstimateResult:
    """One estimate and what it cost.

    ``steps`` and ``samples`` are the candidate's totals (its fidelity: a candidate resumed
    from rung 25 to rung 100 reports 100 steps); ``seconds`` is the wall time of this call.
    ``details`` breaks the cost down (``build_s``, ``train_s``, ``eval_s``, ``steps_run``) and
    holds every metric of the task.
    """

    metric_name: str
    value: float
    steps: int
    seconds: float
    samples: int
    checkpoint: Path | None = None
    details: dict[str, float] = field(default_factory=dict)


class Estimator(ABC):
    """Architecture -> estimated accuracy."""

    metric_name: str

    @abstractmethod
    def evaluate(self, arch: Architecture, steps: int,
                 resume_from: Checkpoint | None = None) -> EstimateResult:
        """Estimate ``arch`` after ``steps`` fine-tune steps (0: as compressed)."""

    @property
    def finetuner(self) -> CheapFinetune | None:
        """The fine-tuner behind the estimate (its teacher, importance and recipe), if any.

        Export trains the chosen candidate with it and the guided controllers read its
        importance, whichever estimator scored the search.
        """
        return None


class NullEstimator(Estimator):
    """Returns at once with a deterministic score of the architecture's capacity.

    For measuring the service's own overhead and for tests of the search loop: the value
    (the mean over layers of kept heads and FFN fraction, discounted for sparsity and low
    bit-width) rises with capacity like accuracy does, so searches still have a signal.
    """

    def __init__(self, num_heads: int = 12, metric_name: str = "capacity",
                 delay_s: float = 0.0) -> None:
        self.num_heads = num_heads
        self.metric_name = metric_name
        self.delay_s = delay_s

    def evaluate(self, arch: Architecture, steps: int,
                 resume_from: Checkpoint | None = None) -> EstimateResult:
        start = time.perf_counter()
        if self.delay_s:
            time.sleep(self.delay_s)
        total = 0.0
        for layer in arch:
            if layer.keep:
                capacity = 0.5 * min(layer.heads / self.num_heads, 1.0) + 0.5 * layer.ffn
                discount = 1.0 - 0.3 * layer.effective_sparsity
                if layer.bits < 8:
                    discount *= 0.9
                total += capacity * discount
        value = total / max(len(arch), 1)
        return EstimateResult(self.metric_name, value, steps, time.perf_counter() - start, 0)
