"""pymoo's NSGA-II through its ask/tell interface on the space's integer encoding.

The problem has one integer variable per dimension (``0..upper_bound``), two minimised
objectives ``(-metric, latency/scale)`` and, for a hard budget, one inequality constraint
``latency - budget <= 0`` (pymoo's constrained domination ranks every feasible candidate
above every infeasible one). Variation is pymoo's integer recipe: ``IntegerRandomSampling``,
SBX and polynomial mutation on floats followed by ``RoundingRepair``, duplicate elimination.

pymoo proposes a whole generation at a time while the runner asks in batches of any size, so
the controller hands a generation out across as many asks as it takes and tells pymoo once
every member is known. Members predicted over the budget are answered at once (a violated
constraint, placeholder objectives) and never proposed. A member repeating an earlier proposal
has its variables replaced by a fresh architecture. When an ask needs more candidates than the
open generation has left, the shortfall is filled with *spares* (mutations of survivors) that
join the next ``tell`` as extra infills; NSGA-II's survival takes any number of infills.
Results are written into the individuals with pymoo's ``StaticProblem`` + ``Evaluator`` (its
documented ask/tell pattern). The algorithm's random state is seeded by ``setup``.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
from pydantic import Field
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.evaluator import Evaluator
from pymoo.core.individual import Individual
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.core.termination import NoTermination
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.operators.sampling.rnd import IntegerRandomSampling
from pymoo.problems.static import StaticProblem

from autoprune.controllers.base import Controller, ControllerOptions, TrialResult
from autoprune.space import Architecture

FAILED_VIOLATION = 1.0  # a failed trial is ranked as if it missed the budget


class PymooNSGA2Options(ControllerOptions):
    population: int = Field(default=12, ge=2)
    crossover_prob: float = Field(default=0.9, ge=0.0, le=1.0)
    crossover_eta: float = Field(default=15.0, gt=1.0)
    mutation_eta: float = Field(default=20.0, gt=1.0)


class _EncodingProblem(Problem):
    """The integer encoding as a pymoo problem; it is never evaluated by pymoo itself."""

    def __init__(self, upper: np.ndarray, constrained: bool) -> None:
        super().__init__(
            n_var=len(upper),
            n_obj=2,
            n_ieq_constr=1 if constrained else 0,
            xl=np.zeros(len(upper)),
            xu=upper.astype(float),
            vtype=int,
        )

    def _evaluate(self, x: np.ndarray, out: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("values come from told trials (StaticProblem)")


class PymooNSGA2Controller(Controller):
    """NSGA-II (pymoo) with the budget as a constraint."""

    name = "pymoo-nsga2"
    Options = PymooNSGA2Options

    def _setup(self) -> None:
        options = self.options
        self._problem = _EncodingProblem(self.space.upper_bounds, self.objective.hard)
        self._algorithm = NSGA2(
            pop_size=options.population,
            sampling=IntegerRandomSampling(),
            crossover=SBX(
                prob=options.crossover_prob,
                eta=options.crossover_eta,
                vtype=float,
                repair=RoundingRepair(),
            ),
            mutation=PM(eta=options.mutation_eta, vtype=float, repair=RoundingRepair()),
            eliminate_duplicates=True,
        )
        self._algorithm.setup(
            self._problem, termination=NoTermination(), seed=self.seed, verbose=False
        )
        self._members: list[Individual] = []  # the open generation plus spares
        self._values: dict[int, tuple[list[float], list[float]] | None] = {}  # member -> (F, G)
        self._queue: deque[int] = deque()  # members not handed out yet
        self._open: dict[Architecture, int] = {}  # handed out, awaiting tell

    # ---- helpers ------------------------------------------------------------------------------
    def _decode(self, individual: Individual) -> Architecture:
        return self.space.decode(np.rint(individual.X).astype(np.int64))

    def _evaluation(
        self, metric: float | None, latency: float | None, failed: bool = False
    ) -> tuple[list[float], list[float]]:
        latency = self.objective.budget_ms * 2 if latency is None else latency
        metric_value = 0.0 if metric is None else metric
        objectives = list(self.objective.point(metric_value, latency))
        if not self.objective.hard:
            return objectives, []
        violation = latency - self.objective.budget_ms
        if failed or metric is None:
            violation = max(violation, FAILED_VIOLATION)
        return objectives, [violation]

    def _add_member(self, individual: Individual) -> int:
        self._members.append(individual)
        index = len(self._members) - 1
        self._values[index] = None
        return index

    def _tell_pymoo(self) -> None:
        """Hand the finished generation (and spares) to NSGA-II's survival."""
        infills = Population.create(*self._members)
        values = [self._values[i] for i in range(len(self._members))]
        finished = [v for v in values if v is not None]
        assert len(finished) == len(values), "told pymoo a generation with open members"
        kwargs: dict[str, Any] = {"F": np.array([f for f, _ in finished], dtype=float)}
        if self.objective.hard:
            kwargs["G"] = np.array([g for _, g in finished], dtype=float)
        Evaluator().eval(StaticProblem(self._problem, **kwargs), infills)
        self._algorithm.tell(infills=infills)
        self._members, self._values, self._queue = [], {}, deque()

    def _open_generation(self) -> None:
        if self._members and all(v is not None for v in self._values.values()):
            self._tell_pymoo()
        if self._members:
            return  # members still out for evaluation: the caller makes spares
        generation = self._algorithm.ask()
        for individual in generation if generation is not None else []:
            index = self._add_member(individual)
            arch = self._decode(individual)
            if not self.predicted_feasible(arch):
                self._values[index] = self._evaluation(None, self.latency(arch))
            else:
                self._queue.append(index)

    def _spare(self, taken: list[Architecture]) -> int:
        survivors = self._algorithm.pop
        if survivors is not None and len(survivors) > 0:
            parent = self._decode(survivors[int(self.rng.integers(len(survivors)))])
            arch = self.fresh(self.space.mutate(parent, self.rng), taken, feasible=True)
        else:
            arch = self.sample_new(taken)
        return self._add_member(Individual(X=self.space.encode(arch).astype(float)))

    # ---- the interface ------------------------------------------------------------------------
    def _ask(self, n: int) -> list[Architecture]:
        batch: list[Architecture] = []
        while len(batch) < n:
            if not self._queue:
                self._open_generation()
            if self._queue:
                index = self._queue.popleft()
                individual = self._members[index]
                arch = self._decode(individual)
                if not self.is_new(arch, batch):
                    arch = self.fresh(arch, batch, feasible=True)
                    individual.set("X", self.space.encode(arch).astype(float))
            else:
                index = self._spare(batch)
                arch = self._decode(self._members[index])
            self._open[arch] = index
            batch.append(arch)
        return batch

    def _tell(self, results: list[TrialResult]) -> None:
        for result in results:
            index = self._open.pop(result.architecture, None)
            if index is None:  # not proposed here (replay fallback): an extra infill
                vector = self.space.encode(result.architecture).astype(float)
                index = self._add_member(Individual(X=vector))
            latency = (
                result.latency_ms
                if result.latency_ms is not None
                else (self.latency(result.architecture) if self.can_predict_latency else None)
            )
            metric = result.metric if result.usable else None
            self._values[index] = self._evaluation(metric, latency, failed=result.state == "failed")
