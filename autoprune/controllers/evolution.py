"""Evolutionary search in the style of AE-BERT (Huang et al. 2022).

Population, tournament selection, uniform crossover by layers, mutation, elitism, and the
overall compression constraint: offspring predicted over the latency budget are regenerated
before they are proposed (AE-BERT rejects candidates that miss its pruning-ratio target; the
latency budget is this service's target). Fitness is the objective's scalar reward; under a
``pareto`` objective it is Pareto-aware instead: minus the number of evaluated candidates
that dominate the individual in ``(-metric, latency)`` (SPEA's strength idea), so selection
spreads along the whole front rather than converging on one point of it.

Asks arrive in batches of any size, so the evolution is steady-state rather than
generational: the population is the ``elites`` best results ever seen plus the most recent
``population - elites`` usable results (aging, as in regularized evolution); each child comes
from a tournament. Until ``population`` results are known, proposals are random feasible
samples (the initial population), after the first ``warm_start`` proposals, which are the
uniform baseline's best: the top of its sweep, the uniform models closest under the budget,
and the first ``guided_start`` importance-guided allocations (:mod:`autoprune.controllers.
guided`: the teacher's most important heads and neurons kept across layers, by default those
that keep the most of the teacher's importance within the budget; none when the job's
estimator has no importance scores). With ``start_min_layers`` every member of the initial
population, warm-started or random, keeps at least that many layers. A warm start is the
hand-crafted answer the search has to beat; it keeps the initial population from being all
random samples, which drop half the layers of a space that allows dropping (on SST-2 the 48
real cheap fine-tunes of ``benchmarks/data`` rate full-depth models about a point above
shallower ones of the same latency).

With ``fill_to`` each child is grown after its mutation, one random step of one coordinate of
a kept layer at a time (more heads, a wider FFN, more bits: whatever raises its predicted
latency), while it stays predicted within the budget, until it reaches that fraction of the
budget. Rejecting over-budget children alone biases the offspring downwards: parents sit near
the budget, so most feasible mutations shrink them (in a 24-candidate end-to-end run at 0.3x
the offspring were predicted at a median 76% of the budget, the starting members at 93%),
their capacity left unused. AE-BERT holds every candidate at its target ratio, AMC clips each
episode to the budget; this is the same constraint as a repair after variation, and the
mutation still decides where capacity moves.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from autoprune.controllers.base import Controller, ControllerOptions, TrialResult
from autoprune.controllers.guided import guided_grid, importance_order, is_uniform
from autoprune.controllers.uniform import uniform_grid
from autoprune.errors import SpecError
from autoprune.objectives import domination_counts
from autoprune.space import Architecture

OFFSPRING_TRIES = 32  # regenerations of an over-budget or repeated child before a fallback
# Random draws for a floored initial member: a uniform draw keeps 4 of 6 layers or more a
# third of the time, and a tight budget passes a few percent of those.
START_TRIES = 2048


class EvolutionOptions(ControllerOptions):
    population: int = Field(default=12, ge=2)
    tournament: int = Field(default=3, ge=1)
    elites: int = Field(default=2, ge=0)
    crossover: float = Field(default=0.5, ge=0.0, le=1.0)  # probability a child is a crossover
    mutation_rate: float | None = Field(
        default=None, gt=0.0, le=1.0
    )  # per coordinate; None = 1/dims
    # The first proposals: this many uniform models from the top of the uniform sweep.
    warm_start: int = Field(default=0, ge=0)
    # Then this many importance-guided allocations (non-uniform ones), picked by
    # ``guided_pick``: "importance" (the most teacher importance kept, guided.importance_order)
    # or "closest" (predicted closest under the budget, the guided sweep's order).
    guided_start: int = Field(default=0, ge=0)
    guided_pick: Literal["importance", "closest"] = "importance"
    # The initial population (warm start, guided start and random samples alike) keeps at
    # least this many layers; children may keep fewer. At the end-to-end benchmark's fidelity
    # (100 steps at 5e-5) models of 2-3 MiniLM layers still answer the majority class
    # (benchmarks/shallow_start.py), so a start the estimate cannot rank is a wasted trial.
    start_min_layers: int = Field(default=0, ge=0)
    # Grow each child towards the budget until its predicted latency reaches this fraction of
    # it (None: children stay as variation left them). Needs a hard budget and a latency.
    fill_to: float | None = Field(default=None, gt=0.0, le=1.0)

    @model_validator(mode="before")
    @classmethod
    def _renamed_floor(cls, data: Any) -> Any:
        # ``guided_min_layers`` (one release) floored the guided start only; stored job specs
        # may still carry it, so it is read as ``start_min_layers``, with a warning (a
        # FutureWarning: Python shows those to users by default, DeprecationWarnings not).
        if isinstance(data, dict) and "guided_min_layers" in data:
            if "start_min_layers" in data:
                raise ValueError("give start_min_layers only (guided_min_layers is its old name)")
            warnings.warn("controller option guided_min_layers is now start_min_layers and "
                          "floors the whole initial population", FutureWarning, stacklevel=2)
            data = {("start_min_layers" if key == "guided_min_layers" else key): value
                    for key, value in data.items()}
        return data

    @model_validator(mode="after")
    def _elites_fit(self) -> EvolutionOptions:
        if self.elites >= self.population:
            raise ValueError("elites must be smaller than population")
        return self


class EvolutionController(Controller):
    """Steady-state evolution with tournament selection, crossover, mutation and elitism."""

    name = "evolution"
    Options = EvolutionOptions

    def _setup(self) -> None:
        if self.options.start_min_layers > self.space.num_layers:
            raise SpecError(f"controller.options.start_min_layers: {self.options.start_min_layers}"
                            f" is more than the model's {self.space.num_layers} layers")
        self._scored: list[tuple[float, int, Architecture]] = []  # (fitness, order, arch)
        self._points: list[tuple[float, float]] = []  # (-metric, latency) of each scored entry
        self._warm: list[Architecture] | None = None  # built on first ask (it costs predictions)

    @property
    def pareto(self) -> bool:
        return self.objective.kind == "pareto"

    def _rescore(self) -> None:
        """Under a ``pareto`` objective, fitness is minus the domination count (it drifts as
        the archive grows, so it is recomputed before each selection)."""
        if self.pareto and self._scored:
            counts = domination_counts(np.asarray(self._points))
            self._scored = [
                (-float(c), order, arch)
                for c, (_, order, arch) in zip(counts, self._scored, strict=True)
            ]

    # ---- population ---------------------------------------------------------------------------
    def population(self) -> list[tuple[float, int, Architecture]]:
        """The elites (best ever) plus the most recent individuals, without repeats."""
        size, elites = self.options.population, self.options.elites
        best = sorted(self._scored, key=lambda item: (-item[0], item[1]))[:elites]
        chosen = {item[1] for item in best}
        recent = [item for item in reversed(self._scored) if item[1] not in chosen]
        return best + recent[: size - len(best)]

    def _tournament(
        self, population: list[tuple[float, int, Architecture]]
    ) -> tuple[float, int, Architecture]:
        k = min(self.options.tournament, len(population))
        picks = self.rng.choice(len(population), size=k, replace=False)
        return max((population[int(i)] for i in picks), key=lambda item: (item[0], -item[1]))

    # ---- variation (overridden by SwiftPruner) ---------------------------------------------------
    def mutate(self, base: Architecture, parent: Architecture, fitness: float) -> Architecture:
        """A mutation of ``base`` (``parent`` itself, or its crossover with a second parent)."""
        return self.space.mutate(base, self.rng, self.options.mutation_rate)

    def _child(self, population: list[tuple[float, int, Architecture]]) -> Architecture:
        first = self._tournament(population)
        base = first[2]
        if self.rng.random() < self.options.crossover and len(population) > 1:
            second = self._tournament(population)
            base = self.space.crossover(first[2], second[2], self.rng)
        return self.mutate(base, first[2], first[0])

    def _ask(self, n: int) -> list[Architecture]:
        batch: list[Architecture] = []
        self._rescore()
        population = self.population()
        for _ in range(n):
            if len(population) < self.options.population:
                batch.append(self._initial(batch))
                continue
            child = None
            for _ in range(OFFSPRING_TRIES):
                candidate = self._child(population)
                if not self.predicted_feasible(candidate):
                    continue
                candidate = self.fill(candidate)
                if self.is_new(candidate, batch):
                    child = candidate
                    break
            batch.append(child if child is not None else self.sample_new(batch))
        return batch

    # ---- filling the budget -------------------------------------------------------------------
    def fill(self, arch: Architecture) -> Architecture:
        """``arch`` grown by random single steps while it stays predicted within the budget,
        until its predicted latency reaches ``fill_to`` of it (``arch`` itself when off)."""
        share = self.options.fill_to
        if share is None or not self.objective.hard or not self.can_predict_latency:
            return arch
        goal = share * self.objective.budget_ms
        latency = self.latency(arch)
        while latency < goal:
            steps = [step for step in self._growth_steps(arch)
                     if self.latency(step) > latency and self.predicted_feasible(step)]
            if not steps:
                break
            arch = steps[int(self.rng.integers(len(steps)))]
            latency = self.latency(arch)
        return arch

    def _growth_steps(self, arch: Architecture) -> list[Architecture]:
        """The space's neighbours of ``arch`` that keep its layers (either way: choices are not
        ordered by latency, so the caller keeps the steps that cost more). Dropped layers stay
        dropped: a layer brought back at its smallest setting costs latency for little
        capacity, and how deep a child is stays the variation's choice."""
        kept = arch.kept_layers
        return [step for step in self.space.neighbours(arch) if step.kept_layers == kept]

    def _initial(self, batch: list[Architecture]) -> Architecture:
        """A member of the initial population: the next warm-start model, else a random one."""
        if self._warm is None:
            self._warm = self._warm_start()
        while self._warm:
            arch = self._warm.pop(0)
            if self.is_new(arch, batch):
                return arch
        return self._sample_start(batch)

    def _deep_enough(self, arch: Architecture) -> bool:
        return len(arch.kept_layers) >= self.options.start_min_layers

    def _sample_start(self, batch: list[Architecture]) -> Architecture:
        """A random feasible member of the initial population keeping ``start_min_layers``
        (the floor is dropped when the budget leaves hardly any model that deep)."""
        if not self.options.start_min_layers:
            return self.sample_new(batch)
        return self.sample_new(batch, accept=self._deep_enough, tries=START_TRIES)

    def _warm_start(self) -> list[Architecture]:
        """The uniform, then the importance-guided, models the initial population begins with."""
        if not self.can_predict_latency:
            return []
        warm: list[Architecture] = []
        if self.options.warm_start:
            warm = [arch for arch in uniform_grid(self) if self._deep_enough(arch)]
            warm = warm[: self.options.warm_start]
        scores = self.scores() if self.options.guided_start else None
        if scores is not None:
            guided = [arch for arch in guided_grid(self, scores)
                      if arch not in warm and not is_uniform(arch) and self._deep_enough(arch)]
            if self.options.guided_pick == "importance":
                guided = importance_order(guided, scores, self.space.shape)
            warm += guided[: self.options.guided_start]
        return warm

    def _tell(self, results: list[TrialResult]) -> None:
        for result in results:
            fitness = self.fitness(result)
            if fitness is not None and (
                not self.objective.hard or self.objective.feasible(result.latency_ms)
            ):
                assert result.metric is not None and result.latency_ms is not None
                self._scored.append((fitness, len(self._scored), result.architecture))
                self._points.append(self.objective.point(result.metric, result.latency_ms))
