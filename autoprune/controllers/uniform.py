"""The hand-crafted baseline of the pruning papers: the same compression in every layer.

The grid holds every architecture whose kept layers all share one layer configuration (one
choice of heads, FFN fraction, sparsity, pattern and bits; never zero heads, which leaves no
attention in the model), for every depth from the space's
``min_layers`` to all layers (the dropped layers are the top ones, as in layer-dropping
baselines). The sweep walks that grid from the predicted latency closest under the budget
downwards, so the first proposals are the uniform models that use the budget best; candidates
over the budget are skipped. Under a ``pareto`` objective the same grid is walked coarse to
fine instead (the budget end, the cheapest end, then midpoints of the latency-sorted list), so
every prefix of the sweep spans the whole latency range. When the grid is exhausted the
controller continues with distinct random samples. It needs latency: the predictor, else the
FLOPs proxy (see :class:`Controller`).
"""

from __future__ import annotations

import itertools
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import Field

from autoprune.controllers.base import Controller, ControllerOptions
from autoprune.errors import SpecError
from autoprune.space import FIELDS, Architecture, LayerConfig, SearchSpace

T = TypeVar("T")


class SweepOptions(ControllerOptions):
    # Also sweep shallower models (the same layers with the top layers dropped).
    depths: bool = Field(default=True)


class SweepController(Controller):
    """A hand-crafted baseline: a fixed, latency-ordered sweep of architectures under the
    budget (:meth:`sweep`), proposed in order, then random samples once it is exhausted.

    It does not learn from results, and needs latency (the predictor, else the FLOPs proxy)."""

    Options = SweepOptions
    adaptive = False
    seed_dependent = False  # the sweep is a fixed order; only the random fallback uses the seed

    def _setup(self) -> None:
        if not self.can_predict_latency:
            raise SpecError(f"controller {self.name}: needs a latency predictor or "
                            "objective.dense_ms")
        self._grid: list[Architecture] | None = None  # built on first ask (it costs predictions)

    @abstractmethod
    def sweep(self) -> list[Architecture]:
        """The architectures to propose, in order (built once, on the first ask)."""

    def _ask(self, n: int) -> list[Architecture]:
        if self._grid is None:
            self._grid = self.sweep()
        batch: list[Architecture] = []
        while len(batch) < n and self._grid:
            arch = self._grid.pop(0)
            if self.is_new(arch, batch):
                batch.append(arch)
        while len(batch) < n:
            batch.append(self.sample_new(batch))
        return batch


class UniformController(SweepController):
    """A latency-ordered sweep of uniform architectures under the budget."""

    name = "uniform"

    def sweep(self) -> list[Architecture]:
        return uniform_grid(self, depths=self.options.depths)


def uniform_grid(controller: Controller, depths: bool = True) -> list[Architecture]:
    """The uniform architectures of ``controller``'s space predicted within its budget, in sweep
    order: closest under the budget first (coarse to fine under a ``pareto`` objective).

    Shared with the population controllers, whose ``warm_start`` begins from the top of it.
    """
    space = controller.space
    names = [name for name in FIELDS if name != "keep"]
    kept_choices = [space.choices(name) for name in names]
    depth_range = sweep_depths(space, depths)
    if True not in space.choices("keep"):
        return []
    grid: dict[Architecture, float] = {}
    for values in itertools.product(*kept_choices):
        fields: dict[str, Any] = dict(zip(names, values, strict=True))
        if fields["pattern"] == "unstructured" and fields["sparsity"] == 0.0:
            continue  # the same model as dense
        if fields["heads"] == 0:
            continue  # no attention anywhere: no token sees another, every input scores alike
        layer = LayerConfig(keep=True, **fields)
        for depth in depth_range:
            layers = [layer] * depth + [LayerConfig.dropped()] * (space.num_layers - depth)
            arch = Architecture(tuple(layers))
            if arch in grid or not space.contains(arch):
                continue
            latency = controller.latency(arch)
            if controller.objective.feasible(latency):
                grid[arch] = latency
    return sweep_order(controller, grid)


def sweep_depths(space: SearchSpace, depths: bool = True) -> Sequence[int]:
    """The depths a sweep covers: every one from the space's minimum when ``depths`` and the
    space can drop layers, else only the full depth."""
    if depths and False in space.choices("keep"):
        return range(space.definition.min_layers, space.num_layers + 1)
    return [space.num_layers]


def sweep_order(controller: Controller, latencies: dict[Architecture, float]) -> list[Architecture]:
    """Feasible architectures (with their predicted latency) in sweep order: closest under the
    budget first, coarse to fine under a ``pareto`` objective."""
    # Ties broken by the stable JSON so the order is total.
    ordered = sorted(latencies, key=lambda a: (-latencies[a], a.to_json()))
    return coarse_to_fine(ordered) if controller.objective.kind == "pareto" else ordered


def coarse_to_fine(items: Sequence[T]) -> list[T]:
    """``items`` reordered by bisection: both ends, then the midpoints of ever finer intervals."""
    if len(items) <= 2:
        return list(items)
    order = [0, len(items) - 1]
    intervals = [(0, len(items) - 1)]
    while intervals:
        refined = []
        for low, high in intervals:
            if high - low > 1:
                middle = (low + high) // 2
                order.append(middle)
                refined += [(low, middle), (middle, high)]
        intervals = refined
    return [items[i] for i in order]
