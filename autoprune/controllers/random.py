"""Random search: distinct uniform samples of the space, the baseline every strategy must beat."""

from __future__ import annotations

from pydantic import Field

from autoprune.controllers.base import Controller, ControllerOptions
from autoprune.space import Architecture


class RandomOptions(ControllerOptions):
    # Resample candidates predicted over the budget (they would be told back as infeasible).
    feasible_only: bool = Field(default=True)


class RandomController(Controller):
    """Uniform samples of the integer encoding, never repeating, optionally budget-filtered."""

    name = "random"
    Options = RandomOptions
    adaptive = False

    def _ask(self, n: int) -> list[Architecture]:
        batch: list[Architecture] = []
        for _ in range(n):
            batch.append(self.sample_new(batch, feasible=self.options.feasible_only))
        return batch
