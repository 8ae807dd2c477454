"""SwiftPruner (Zhang et al. 2022): evolution whose mutator is a learned policy.

A mutation is a short sequence of *actions*, each one step of one coordinate of the integer
encoding: which layer, which dimension (keep, heads, FFN fraction, sparsity, pattern, bits)
and which direction. The policy is a softmax over all actions whose logits are linear in the
parent's latency position ``z = clip(latency/budget - 1, -1, 1)`` (``θ0[a] + θ1[a]·z``), so
it can learn to prune when a parent sits at the budget and to grow when it has slack. It is
trained by REINFORCE on the reward improvement of each child over its parent (the objective's
latency-aware reward: the MnasNet form; under a ``pareto`` objective, how many fewer evaluated
candidates dominate the child than its parent), normalised by a running mean and deviation; a child
predicted over the budget is rejected before it is proposed and teaches the policy a fixed
penalty at once. Actions that cannot move (at a bound, or on a dropped layer) are masked.
Selection, crossover and elitism are :class:`EvolutionController`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import Field

from autoprune.controllers.base import TrialResult
from autoprune.controllers.evolution import EvolutionController, EvolutionOptions
from autoprune.objectives import domination_counts
from autoprune.space import Architecture

LOGIT_CLIP = 6.0  # keeps every action's probability above ~e^-12 relative: no collapse
INFEASIBLE_ADVANTAGE = -1.0  # in normalised-advantage units
EMA = 0.1  # running mean/variance rate of the improvement baseline


class SwiftPrunerOptions(EvolutionOptions):
    actions: int = Field(default=2, ge=1, le=16)  # mutation actions per child
    learning_rate: float = Field(default=0.2, gt=0.0)


@dataclass(frozen=True)
class _Mutation:
    """How a child was made: its parent's fitness, the context, the actions and their masks."""

    parent_fitness: float
    parent: Architecture
    z: float
    steps: tuple[tuple[int, np.ndarray], ...]  # (action, mask) per step


class SwiftPrunerController(EvolutionController):
    """Evolution with a policy-gradient-trained mutation policy."""

    name = "swiftpruner"
    Options = SwiftPrunerOptions

    def _setup(self) -> None:
        super()._setup()
        n_actions = 2 * len(self.space.dims)
        self._theta = np.zeros((2, n_actions))  # rows: bias, latency-position slope
        self._baseline = 0.0
        self._variance = 1.0
        self._seen_improvements = 0
        self._records: dict[Architecture, _Mutation] = {}
        self._results: dict[Architecture, TrialResult] = {}
        self._keep_positions = np.array([d.name == "keep" for d in self.space.dims])
        self._dim_layers = np.array([d.layer for d in self.space.dims], dtype=np.int64)
        self._upper = self.space.upper_bounds

    # ---- the policy -----------------------------------------------------------------------------
    def _mask(self, vector: np.ndarray, arch: Architecture) -> np.ndarray:
        kept = np.array([arch[layer].keep for layer in self._dim_layers], dtype=bool)
        movable = kept | self._keep_positions
        down = (vector > 0) & movable
        up = (vector < self._upper) & movable
        return np.stack([down, up], axis=1).reshape(-1)

    def _probabilities(self, z: float, mask: np.ndarray) -> np.ndarray:
        logits = np.clip(self._theta[0] + self._theta[1] * z, -LOGIT_CLIP, LOGIT_CLIP)
        logits = np.where(mask, logits, -np.inf)
        logits -= logits[mask].max()
        weights = np.exp(logits)
        return weights / weights.sum()

    def _position(self, arch: Architecture) -> float:
        if not self.can_predict_latency:
            return 0.0
        return float(np.clip(self.latency(arch) / self.objective.budget_ms - 1.0, -1.0, 1.0))

    def mutate(self, base: Architecture, parent: Architecture, fitness: float) -> Architecture:
        if not self.space.dims:
            return base
        z = self._position(base)
        vector = self.space.encode(base)
        arch = base
        steps = []
        for _ in range(self.options.actions):
            mask = self._mask(vector, arch)
            if not mask.any():
                break
            action = int(self.rng.choice(len(mask), p=self._probabilities(z, mask)))
            steps.append((action, mask))
            position, up = divmod(action, 2)
            vector[position] += 1 if up else -1
            arch = self.space.decode(vector)
        record = _Mutation(fitness, parent, z, tuple(steps))
        if arch != base and not self.predicted_feasible(arch):
            self._update(record, INFEASIBLE_ADVANTAGE)
        else:
            self._records[arch] = record
        return arch

    def fill(self, arch: Architecture) -> Architecture:
        # The mutation's record follows the child it made, so the policy is credited with
        # what its actions led to once the child was grown to the budget (``fill_to``).
        filled = super().fill(arch)
        if filled != arch and arch in self._records:
            self._records[filled] = self._records.pop(arch)
        return filled

    def _update(self, record: _Mutation, advantage: float) -> None:
        """REINFORCE: θ += lr·A·∇log π(actions), with ∇ of a masked softmax = onehot - π."""
        for action, mask in record.steps:
            grad = -self._probabilities(record.z, mask)
            grad[action] += 1.0
            self._theta[0] += self.options.learning_rate * advantage * grad
            self._theta[1] += self.options.learning_rate * advantage * grad * record.z

    def _improvement(self, record: _Mutation, result: TrialResult, fitness: float) -> float:
        if not self.pareto or not self._points:
            return fitness - record.parent_fitness
        assert result.metric is not None and result.latency_ms is not None
        parent_result = self._results.get(record.parent)
        if parent_result is None or not parent_result.usable:  # told without a metric
            return 0.0
        assert parent_result.metric is not None and parent_result.latency_ms is not None
        points = [
            self.objective.point(result.metric, result.latency_ms),
            self.objective.point(parent_result.metric, parent_result.latency_ms),
        ]
        child_count, parent_count = domination_counts(points, self._points)
        return float(parent_count - child_count)

    def _tell(self, results: list[TrialResult]) -> None:
        for result in results:
            self._results[result.architecture] = result
        super()._tell(results)
        for result in results:
            record = self._records.pop(result.architecture, None)
            if record is None:
                continue
            if result.state == "infeasible":
                self._update(record, INFEASIBLE_ADVANTAGE)
                continue
            fitness = self.fitness(result)
            if fitness is None:
                continue  # a failed trial says nothing about the mutation
            improvement = self._improvement(record, result, fitness)
            # Normalise by running statistics, updated after use so the first one is not 0/0.
            advantage = (improvement - self._baseline) / np.sqrt(self._variance + 1e-12)
            if self._seen_improvements == 0:
                self._baseline, self._variance = improvement, max(improvement**2, 1e-6)
            else:
                delta = improvement - self._baseline
                self._baseline += EMA * delta
                self._variance = (1 - EMA) * (self._variance + EMA * delta * delta)
            self._seen_improvements += 1
            self._update(record, float(np.clip(advantage, -3.0, 3.0)))
