"""Importance-guided allocation: how many heads and neurons each layer keeps, by global rank.

The uniform baseline keeps the same share of every layer. The pruning literature's other
hand-crafted answer ranks every head (and every FFN neuron) of the kept layers together by the
teacher's importance and keeps the global top ``K``, so a layer whose units matter less gives
up more of them: global head pruning (Michel et al. 2019, on per-layer normalised head scores,
which :func:`autoprune.compress.compute_importance` returns) and the global Fisher-based mask
allocation of Kwon et al. (2022, "A Fast Post-Training Pruning Framework for Transformers").

:func:`guided_grid` enumerates those allocations the way :func:`uniform_grid` enumerates
uniform models: for every depth (top layers dropped) and every ``K`` a uniform model would
keep (``depth x`` a heads choice, ``depth x`` an FFN fraction of the neurons), with the
space's other per-layer fields shared by every layer, each layer's count rounded to the
nearest choice of the space; those predicted within the budget, closest under it first. The
``guided`` controller sweeps it as a second hand-crafted baseline beside ``uniform``.

The evolution's ``guided_start`` seeds its initial population from it, picked by
:func:`importance_order` (default) or in sweep order. Closest under the budget lets the
latency table decide how heads and neurons are traded; under one CPU's table that was the
allocation that won, under another's a head-heavy one that kept a tenth of three layers' FFN
and lost after export. :func:`importance_order` ranks by the teacher importance an allocation
keeps instead, as Kwon et al. choose masks by the Fisher importance they keep under the
constraint (their head and neuron scores are on one scale; these are not, see
:func:`weighted_retained_importance`).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from autoprune.controllers.base import Controller
from autoprune.controllers.uniform import SweepController, sweep_depths, sweep_order
from autoprune.errors import SpecError
from autoprune.space import FIELDS, Architecture, LayerConfig, ModelShape, SearchSpace


@dataclass(frozen=True)
class LayerScores:
    """Per-layer unit importance of the base model (higher = more important).

    ``heads`` is ``[num_layers, num_heads]``; ``neurons`` one ``[intermediate]`` array per
    layer. Built from :class:`autoprune.compress.Importance` with :meth:`from_importance`, so
    controllers need neither torch nor the teacher, only these arrays.
    """

    heads: np.ndarray
    neurons: tuple[np.ndarray, ...]

    def __post_init__(self) -> None:
        if self.heads.ndim != 2 or len(self.neurons) != self.heads.shape[0]:
            raise ValueError("LayerScores: heads must be [layers, heads] with one neuron array "
                             "per layer")

    @classmethod
    def even(cls, space: SearchSpace) -> LayerScores:
        """Every unit alike: the allocations they give are the uniform ones."""
        shape = space.shape
        return cls(heads=np.ones((shape.num_layers, shape.num_heads)),
                   neurons=tuple(np.ones(shape.intermediate) for _ in range(shape.num_layers)))

    @classmethod
    def from_importance(cls, importance: Any) -> LayerScores:
        """From anything with tensor-like ``heads`` and ``neurons`` (an ``Importance``)."""
        def array(values: Any) -> np.ndarray:
            values = values.detach().cpu() if hasattr(values, "detach") else values  # torch
            return np.asarray(values, dtype=np.float64)

        return cls(heads=array(importance.heads),
                   neurons=tuple(array(n) for n in importance.neurons))


def is_uniform(arch: Architecture) -> bool:
    """Every kept layer compressed alike (what the uniform sweep already proposes)."""
    return len({layer for layer in arch if layer.keep}) <= 1


def global_counts(scores: Sequence[np.ndarray], total: int) -> list[int]:
    """How many of each layer's units the global top ``total`` of ``scores`` holds.

    Equal scores go to the unit ranked higher within its own layer, then to the lower layer,
    so equal scores everywhere give an even split and the answer is deterministic.
    """
    arrays = [np.asarray(s, dtype=np.float64).ravel() for s in scores]
    flat = np.concatenate(arrays)
    owner = np.concatenate([np.full(a.size, i) for i, a in enumerate(arrays)])
    # Each unit's rank inside its layer (0 = the layer's most important).
    within = np.concatenate([np.argsort(np.argsort(-a, kind="stable"), kind="stable")
                             for a in arrays])
    total = max(0, min(int(total), flat.size))
    top = np.lexsort((owner, within, -flat))[:total]
    return np.bincount(owner[top], minlength=len(arrays)).astype(int).tolist()


def retained_importance(arch: Architecture, scores: LayerScores,
                        shape: ModelShape) -> tuple[float, float]:
    """The shares of the base model's total head importance and total neuron importance that
    ``arch`` keeps, each kept layer holding its own top units (as the compression engine cuts).

    Both are 0-1; a dropped layer keeps none of its units.
    """
    def share(per_layer: Sequence[np.ndarray], counts: Sequence[int]) -> float:
        total = sum(float(np.clip(s, 0.0, None).sum()) for s in per_layer)
        kept = sum(float(np.sort(np.clip(s, 0.0, None))[::-1][:count].sum())
                   for s, count in zip(per_layer, counts, strict=True))
        return kept / total if total > 0 else 0.0

    heads = [layer.heads if layer.keep else 0 for layer in arch]
    neurons = [shape.ffn_neurons(layer.ffn) if layer.keep else 0 for layer in arch]
    return (share(list(scores.heads), heads), share(scores.neurons, neurons))


def weighted_retained_importance(arch: Architecture, scores: LayerScores,
                                 shape: ModelShape) -> float:
    """:func:`retained_importance`'s two shares, each weighted by the share of an encoder
    layer's weights its units carry: attention ``4 * hidden**2``, the FFN
    ``2 * hidden * intermediate`` (a third and two thirds in BERT, where the FFN is 4x wide).

    The head scores are normalised per layer (Michel et al.) and the neuron scores are not,
    so they cannot be summed as they are; shares of each can. Why not equal weights: in the
    end-to-end runs an allocation keeping 90-100% of the first two layers' FFN and 4 heads
    per layer beat the uniform models by 1.3-1.4 points after export, and one keeping 6-12
    heads per layer and 10% of three layers' FFN lost to them; equal weights rank the two
    alike (0.61 and 0.59 of the teacher's importance kept), these 0.67 and 0.55.
    """
    heads, neurons = retained_importance(arch, scores, shape)
    attention = 4 * shape.hidden**2
    ffn = 2 * shape.hidden * shape.intermediate
    return (attention * heads + ffn * neurons) / (attention + ffn)


def importance_order(architectures: Sequence[Architecture], scores: LayerScores,
                     shape: ModelShape) -> list[Architecture]:
    """``architectures``, the most importance kept first (:func:`weighted_retained_importance`);
    equal ones keep their given order."""
    return sorted(architectures,
                  key=lambda arch: -weighted_retained_importance(arch, scores, shape))


def _nearest(value: float, choices: Sequence[float]) -> float:
    """The choice nearest ``value``; a tie goes to the larger (keeping more is the safer error)."""
    return min(choices, key=lambda c: (abs(float(c) - value), -float(c)))


def guided_architecture(space: SearchSpace, scores: LayerScores, depth: int, heads: int,
                        ffn: float, **shared: Any) -> Architecture:
    """The first ``depth`` layers kept, holding the global top ``depth * heads`` heads and
    top ``depth * ffn`` of their neurons, each layer's count rounded to the space's choices;
    ``shared`` (sparsity, pattern, bits) is the same in every kept layer."""
    kept = list(range(depth))
    head_counts = global_counts([scores.heads[i] for i in kept], depth * heads)
    intermediate = space.shape.intermediate
    neuron_counts = global_counts([scores.neurons[i] for i in kept],
                                  round(depth * ffn * intermediate))
    head_choices = space.choices("heads")
    ffn_choices = space.choices("ffn")
    layers = [
        LayerConfig(keep=True, heads=int(_nearest(h, head_choices)),
                    ffn=float(_nearest(n / intermediate, ffn_choices)), **shared)
        for h, n in zip(head_counts, neuron_counts, strict=True)
    ]
    layers += [LayerConfig.dropped()] * (space.num_layers - depth)
    return Architecture(tuple(layers))


def guided_grid(controller: Controller, scores: LayerScores,
                depths: bool = True) -> list[Architecture]:
    """The importance-guided architectures of ``controller``'s space predicted within its
    budget, in :func:`uniform_grid`'s sweep order (closest under the budget first; coarse to
    fine under a ``pareto`` objective); ``depths``: also the shallower ones."""
    space = controller.space
    if scores.heads.shape[0] != space.num_layers:
        raise SpecError(f"importance scores cover {scores.heads.shape[0]} layers, the space "
                        f"{space.num_layers}")
    if True not in space.choices("keep"):
        return []
    shared_names = [name for name in FIELDS if name not in ("keep", "heads", "ffn")]
    depth_range = sweep_depths(space, depths)
    grid: dict[Architecture, float] = {}
    for values in itertools.product(*(space.choices(name) for name in shared_names)):
        shared = dict(zip(shared_names, values, strict=True))
        if shared["pattern"] == "unstructured" and shared["sparsity"] == 0.0:
            continue  # the same model as dense
        for depth, heads, ffn in itertools.product(depth_range, space.choices("heads"),
                                                   space.choices("ffn")):
            if heads == 0 or ffn == 0:
                continue  # a budget with nothing to rank
            arch = guided_architecture(space, scores, depth, heads, ffn, **shared)
            if arch in grid or not space.contains(arch):
                continue
            if all(layer.heads == 0 for layer in arch if layer.keep):
                continue  # no attention anywhere (see uniform_grid)
            latency = controller.latency(arch)
            if controller.objective.feasible(latency):
                grid[arch] = latency
    return sweep_order(controller, grid)


class GuidedScoresMissingWarning(UserWarning):
    """A ``guided`` job without importance scores sweeps the uniform models instead."""


class GuidedController(SweepController):
    """A latency-ordered sweep of importance-guided allocations under the budget.

    The baseline beside ``uniform`` that the pruning papers also compare with: global ranking
    of heads and neurons. Without importance scores (a job whose estimator has none) every unit
    scores alike and it sweeps the uniform models, with a :class:`GuidedScoresMissingWarning`.
    """

    name = "guided"

    def sweep(self) -> list[Architecture]:
        scores = self.scores()
        if scores is None:
            warnings.warn("controller guided: no importance scores (the job's estimator "
                          "has none); sweeping the uniform models",
                          GuidedScoresMissingWarning, stacklevel=4)
            scores = LayerScores.even(self.space)
        return guided_grid(self, scores, depths=self.options.depths)
