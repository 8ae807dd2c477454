"""Optuna's samplers driven through its ask/tell interface: TPE and NSGA-II.

Each dimension of the space's integer encoding is an ``IntDistribution`` (choices are sorted,
so neighbouring integers are similar models, which suits TPE's kernels). The study lives in
Optuna's in-memory storage with a seeded sampler; resume replays the history into a fresh
study (the base class's ``rebuild``), so nothing is ever pickled.

Objectives: NSGA-II always minimises ``(-metric, latency/scale)`` (see
:mod:`autoprune.objectives`); TPE does the same for ``pareto`` objectives and otherwise
maximises the scalar reward. A hard budget becomes an Optuna constraint ``latency - budget <= 0``
set with ``Trial.set_constraint`` before each tell (Optuna 5 deprecated the samplers'
``constraints_func`` in its favour; TPE and NSGA-II read both the same way). Candidates predicted
over the budget are answered inside the study at once (placeholder values, violated
constraint) and a new one is asked, as the runner would answer them, without taking a slot of
the batch. A proposal repeating an earlier one is answered with the earlier result (or as
failed while that is pending) and replaced by an enqueued fresh architecture, so the study's
trials always match what was proposed.
"""

from __future__ import annotations

import warnings

import optuna
from optuna.distributions import BaseDistribution, IntDistribution
from optuna.study import StudyDirection
from optuna.trial import Trial, TrialState
from pydantic import Field

from autoprune.controllers.base import Controller, ControllerOptions, TrialResult
from autoprune.space import Architecture

LATENCY_ATTR = "latency_ms"
CONSTRAINT = "latency_over_budget_ms"
MAX_REJECTIONS = 10  # over-budget proposals answered in the study per slot before giving up


class OptunaTPEOptions(ControllerOptions):
    n_startup_trials: int = Field(default=10, ge=0)
    n_ei_candidates: int = Field(default=24, ge=1)
    multivariate: bool = True


class OptunaNSGA2Options(ControllerOptions):
    population: int = Field(default=12, ge=2)
    crossover_prob: float = Field(default=0.9, ge=0.0, le=1.0)
    mutation_prob: float | None = Field(default=None, ge=0.0, le=1.0)


class _OptunaController(Controller):
    """Shared ask/tell plumbing; subclasses choose the sampler and whether it is multi-objective."""

    multi_objective: bool = True

    def _make_sampler(self) -> optuna.samplers.BaseSampler:
        raise NotImplementedError

    def _setup(self) -> None:
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # Optuna logs every trial at INFO
        self._names = [f"L{d.layer:02d}.{d.name}" for d in self.space.dims]
        self._distributions: dict[str, BaseDistribution] = {
            name: IntDistribution(0, d.size - 1)
            for name, d in zip(self._names, self.space.dims, strict=True)
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = self._make_sampler()
        directions = (
            [StudyDirection.MINIMIZE] * 2 if self.multi_objective else [StudyDirection.MAXIMIZE]
        )
        self._study = optuna.create_study(directions=directions, sampler=sampler)
        self._open: dict[Architecture, Trial] = {}
        self._known: dict[Architecture, TrialResult] = {}

    # ---- study <-> architectures ----------------------------------------------------------------
    def _new_trial(self, arch: Architecture | None = None) -> tuple[Trial, Architecture]:
        if arch is not None:
            vector = self.space.encode(arch)
            self._study.enqueue_trial({n: int(v) for n, v in zip(self._names, vector, strict=True)})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            trial = self._study.ask(self._distributions)
        decoded = self.space.decode([trial.params[name] for name in self._names])
        return trial, decoded

    def _values(self, metric: float, latency: float) -> list[float]:
        if self.multi_objective:
            return list(self.objective.point(metric, latency))
        return [self.objective.reward(metric, latency)]

    def _finish(self, trial: Trial, result: TrialResult) -> None:
        if result.state == "failed" or result.latency_ms is None:
            self._study.tell(trial, state=TrialState.FAIL)
            return
        trial.set_user_attr(LATENCY_ATTR, float(result.latency_ms))
        if self.objective.hard:
            trial.set_constraint(CONSTRAINT, float(result.latency_ms) - self.objective.budget_ms)
        if result.usable:
            assert result.metric is not None
            self._study.tell(trial, self._values(result.metric, result.latency_ms))
        else:  # infeasible: the violated constraint ranks it; the values are placeholders
            self._study.tell(trial, self._values(0.0, result.latency_ms))

    # ---- the interface ------------------------------------------------------------------------
    def _ask(self, n: int) -> list[Architecture]:
        batch: list[Architecture] = []
        while len(batch) < n:
            trial, arch = self._new_trial()
            rejections = 0
            while not self.predicted_feasible(arch) and rejections < MAX_REJECTIONS:
                self._finish(trial, TrialResult(-1, arch, None, self.latency(arch), "infeasible"))
                trial, arch = self._new_trial()
                rejections += 1
            if not self.is_new(arch, batch):
                known = self._known.get(arch)
                if known is not None:
                    self._finish(trial, known)
                else:
                    self._study.tell(trial, state=TrialState.FAIL)
                trial, arch = self._new_trial(self.fresh(arch, batch, feasible=True))
            self._open[arch] = trial
            batch.append(arch)
        return batch

    def _tell(self, results: list[TrialResult]) -> None:
        for result in results:
            trial = self._open.pop(result.architecture, None)
            if trial is None:  # not proposed here (replay fallback): enter it as a fixed trial
                trial, _ = self._new_trial(result.architecture)
            self._finish(trial, result)
            self._known[result.architecture] = result


class OptunaTPEController(_OptunaController):
    """Optuna's (multivariate) TPE; multi-objective (MOTPE) for ``pareto`` objectives."""

    name = "optuna-tpe"
    Options = OptunaTPEOptions

    def _setup(self) -> None:
        self.multi_objective = self.objective.kind == "pareto"
        super()._setup()

    def _make_sampler(self) -> optuna.samplers.BaseSampler:
        return optuna.samplers.TPESampler(
            seed=self.seed,
            n_startup_trials=self.options.n_startup_trials,
            n_ei_candidates=self.options.n_ei_candidates,
            multivariate=self.options.multivariate,
        )


class OptunaNSGA2Controller(_OptunaController):
    """Optuna's NSGA-II on ``(-metric, latency)`` with the budget as a constraint."""

    name = "optuna-nsga2"
    Options = OptunaNSGA2Options

    def _make_sampler(self) -> optuna.samplers.BaseSampler:
        return optuna.samplers.NSGAIISampler(
            seed=self.seed,
            population_size=self.options.population,
            crossover_prob=self.options.crossover_prob,
            mutation_prob=self.options.mutation_prob,
        )
