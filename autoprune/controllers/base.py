"""The controller interface: ``ask(n)`` proposes architectures, ``tell(results)`` reports them.

A controller's whole state is a deterministic function of (space, objective, seed, options,
the ordered ask/tell history). That is what makes resume safe without pickles: ``rebuild``
creates a fresh controller and replays the recorded history batch by batch, checking that
every replayed ``ask`` proposes exactly what was recorded. Controllers therefore draw every
random number from their own seeded generators (never a global one) and must accept, in
``tell``, results for architectures they did not ask themselves (the replay fallback).
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from autoprune.errors import AutopruneError, SpecError
from autoprune.objectives import Objective
from autoprune.space import Architecture, SearchSpace

if TYPE_CHECKING:
    from autoprune.controllers.guided import LayerScores

TrialState = Literal["complete", "pruned", "failed", "infeasible"]
STATES: tuple[str, ...] = ("complete", "pruned", "failed", "infeasible")
LatencyFn = Callable[[Architecture], float]
# The teacher's unit importance, asked for on first use (it may train the teacher); None when
# the job's estimator has none (the null estimator).
ScoresFn = Callable[[], "LayerScores | None"]

# How hard ``fresh`` looks for an architecture not proposed before, before it gives up and
# repeats one (only a nearly exhausted space gets there).
FRESH_TRIES = 64


@dataclass(frozen=True)
class TrialResult:
    """What happened to one proposed architecture.

    ``metric`` is None unless the trial produced one (``failed`` and ``infeasible`` never do;
    ``pruned`` carries the low-fidelity metric it was stopped at, which every controller reads
    as a pessimistic estimate). ``latency_ms`` is the predicted latency (``predicted=True``) or
    a measurement. ``batch`` is the index of the ``ask`` call that proposed it: resume replays
    the history grouped by it.
    """

    trial_id: int
    architecture: Architecture
    metric: float | None
    latency_ms: float | None
    state: TrialState
    predicted: bool = True
    batch: int = 0

    @property
    def usable(self) -> bool:
        """True when the trial has both a finite metric and a latency to learn from."""
        return (
            self.state in ("complete", "pruned")
            and self.metric is not None
            and math.isfinite(self.metric)
            and self.latency_ms is not None
        )


class ControllerOptions(BaseModel):
    """Base of every controller's options: unknown keys are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ResumeDivergedWarning(UserWarning):
    """Replaying a trial history proposed something else than was recorded."""


class ControllerError(AutopruneError):
    """A controller was driven wrongly (e.g. told a result in an unknown state)."""


class Controller(ABC):
    """A seeded search strategy over one :class:`SearchSpace` for one :class:`Objective`.

    ``latency_fn`` is a cheap latency predictor (the runner's fitted latency model). Without
    it, :meth:`latency` falls back to an analytic FLOPs proxy scaled so that the dense model
    costs ``objective.dense_ms`` (FLOPs ignore sparsity and bit-width, so the proxy cannot
    see int8 or sparse speed-ups). ``scores_fn`` gives the teacher's head and neuron
    importance to strategies that allocate by it (:meth:`scores`).
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type[ControllerOptions]] = ControllerOptions
    # False for strategies whose proposals do not depend on results (random, uniform).
    adaptive: ClassVar[bool] = True
    # False for strategies whose first proposals are a fixed order (uniform's sweep).
    seed_dependent: ClassVar[bool] = True

    def __init__(
        self,
        space: SearchSpace,
        objective: Objective,
        seed: int = 0,
        *,
        latency_fn: LatencyFn | None = None,
        scores_fn: ScoresFn | None = None,
        **options: Any,
    ) -> None:
        self.space = space
        self.objective = objective
        self.seed = int(seed)
        self.options = self.parse_options(options)
        self.latency_fn = latency_fn
        self.scores_fn = scores_fn
        self.rng = np.random.default_rng(self.seed)
        self.history: list[TrialResult] = []
        self._asked: set[Architecture] = set()
        self._latency_cache: dict[Architecture, float] = {}
        self._dense_flops = float(space.stats(space.dense()).flops)
        self._setup()

    # ---- options ------------------------------------------------------------------------------
    @classmethod
    def parse_options(cls, options: dict[str, Any]) -> Any:
        """Validate ``options`` against :attr:`Options`; the error names the offending key."""
        try:
            return cls.Options(**options)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(["controller.options", *(str(part) for part in error.get("loc", ()))])
            if error.get("type") == "extra_forbidden":
                raise SpecError(f"{where}: unknown option") from None
            message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
            raise SpecError(f"{where}: {message}") from None

    @classmethod
    def accepts(cls, option: str) -> bool:
        """Whether ``option`` is one of this controller's options (e.g. ``population``)."""
        return option in cls.Options.model_fields

    # ---- the interface ------------------------------------------------------------------------
    def ask(self, n: int) -> list[Architecture]:
        """``n`` architectures of the space, none proposed before while the space allows."""
        if n < 1:
            raise ControllerError(f"ask: n must be >= 1 (got {n})")
        proposals = self._ask(int(n))
        if len(proposals) != n:
            raise ControllerError(
                f"{self.name}: proposed {len(proposals)} architectures, asked {n}"
            )
        self._asked.update(proposals)
        return proposals

    def tell(self, results: Sequence[TrialResult]) -> None:
        """Report results, in ask order. Architectures not asked here are accepted too."""
        results = list(results)
        for result in results:
            if result.state not in STATES:
                raise ControllerError(f"trial {result.trial_id}: unknown state {result.state!r}")
        self.history.extend(results)
        self._asked.update(result.architecture for result in results)
        self._tell(results)

    @abstractmethod
    def _ask(self, n: int) -> list[Architecture]:
        """Propose exactly ``n`` architectures (distinct from ``self._asked`` where possible)."""

    def _tell(self, results: list[TrialResult]) -> None:  # noqa: B027 - optional hook
        """Learn from results; the default learns nothing (``history`` is kept by ``tell``)."""

    def _setup(self) -> None:  # noqa: B027 - optional hook
        """Build strategy state after options are parsed (seeded from ``self.seed``)."""

    # ---- resume -------------------------------------------------------------------------------
    @classmethod
    def rebuild(
        cls,
        space: SearchSpace,
        objective: Objective,
        seed: int,
        history: Sequence[TrialResult],
        *,
        latency_fn: LatencyFn | None = None,
        scores_fn: ScoresFn | None = None,
        **options: Any,
    ) -> Controller:
        """A controller in the state the history left the original in, by replaying it.

        The history is grouped into its ask batches (consecutive equal ``batch``); each batch
        is asked again and told. If a replayed ask differs from the record (a history written
        by another version, or a batch index the runner did not record), the replay stops, a
        :class:`ResumeDivergedWarning` says so, and a fresh controller is told the whole
        history without asking: informed, but not the state the original had.
        """
        controller = cls(space, objective, seed, latency_fn=latency_fn, scores_fn=scores_fn,
                         **options)
        for index, batch in enumerate(group_batches(history)):
            recorded = [result.architecture for result in batch]
            replayed = controller.ask(len(batch))
            if replayed != recorded:
                warnings.warn(
                    f"{cls.name}: resume replay diverged at ask batch {index} "
                    f"(trial {batch[0].trial_id}); the history is told without replaying asks",
                    ResumeDivergedWarning,
                    stacklevel=2,
                )
                controller = cls(space, objective, seed, latency_fn=latency_fn,
                                 scores_fn=scores_fn, **options)
                controller.tell(history)
                return controller
            controller.tell(batch)
        return controller

    # ---- helpers for strategies -------------------------------------------------------------
    def latency(self, arch: Architecture) -> float:
        """Predicted latency (ms): ``latency_fn``, else the FLOPs proxy scaled to dense."""
        cached = self._latency_cache.get(arch)
        if cached is not None:
            return cached
        if self.latency_fn is not None:
            value = float(self.latency_fn(arch))
        else:
            if self.objective.dense_ms is None:
                raise SpecError(
                    f"controller {self.name!r}: needs a latency predictor or "
                    "objective.dense_ms for its FLOPs proxy"
                )
            value = self.objective.dense_ms * self.space.stats(arch).flops / self._dense_flops
        self._latency_cache[arch] = value
        return value

    def scores(self) -> LayerScores | None:
        """The teacher's unit importance from ``scores_fn`` (None without one)."""
        return self.scores_fn() if self.scores_fn is not None else None

    @property
    def can_predict_latency(self) -> bool:
        return self.latency_fn is not None or self.objective.dense_ms is not None

    def predicted_feasible(self, arch: Architecture) -> bool:
        """The budget check before proposing; True for a soft objective or without any latency."""
        return (
            not self.objective.hard
            or not self.can_predict_latency
            or self.objective.feasible(self.latency(arch))
        )

    def is_new(self, arch: Architecture, taken: Iterable[Architecture] = ()) -> bool:
        return arch not in self._asked and arch not in taken

    def fresh(
        self, arch: Architecture, taken: Iterable[Architecture] = (), feasible: bool = False
    ) -> Architecture:
        """``arch`` if it was never proposed, else a mutation of it (then a sample) that is new.

        With ``feasible`` the replacement must also be predicted within the budget. When
        nothing new is found (an exhausted space), ``arch`` is returned as it is.
        """
        taken_set = set(taken)
        if self.is_new(arch, taken_set):
            return arch
        candidate = arch
        for attempt in range(FRESH_TRIES):
            candidate = (
                self.space.mutate(candidate, self.rng)
                if attempt < FRESH_TRIES // 2
                else self.space.sample(self.rng)
            )
            if self.is_new(candidate, taken_set) and (
                not feasible or self.predicted_feasible(candidate)
            ):
                return candidate
        for _ in range(FRESH_TRIES):  # drop the feasibility wish before repeating
            candidate = self.space.sample(self.rng)
            if self.is_new(candidate, taken_set):
                return candidate
        return arch

    def sample_new(
        self,
        taken: Iterable[Architecture] = (),
        feasible: bool = True,
        accept: Callable[[Architecture], bool] | None = None,
        tries: int = FRESH_TRIES,
    ) -> Architecture:
        """A random architecture not proposed before, predicted feasible when asked to be.

        With ``accept``, also one it accepts; when ``tries`` draws find none, ``accept`` is
        dropped (a wish, like feasibility in :meth:`fresh`)."""
        taken_set = set(taken)
        for _ in range(tries):
            candidate = self.space.sample(self.rng)
            if (
                (accept is None or accept(candidate))
                and self.is_new(candidate, taken_set)
                and (not feasible or self.predicted_feasible(candidate))
            ):
                return candidate
        if accept is not None:
            return self.sample_new(taken_set, feasible)
        return self.fresh(self.space.sample(self.rng), taken_set, feasible=False)

    def fitness(self, result: TrialResult) -> float | None:
        """The objective's scalar reward of a usable result, else None."""
        if not result.usable:
            return None
        assert result.metric is not None and result.latency_ms is not None
        return self.objective.reward(result.metric, result.latency_ms)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed}, told={len(self.history)})"


def group_batches(history: Sequence[TrialResult]) -> list[list[TrialResult]]:
    """Consecutive results with the same ``batch`` index, in order."""
    batches: list[list[TrialResult]] = []
    for result in history:
        if batches and batches[-1][0].batch == result.batch:
            batches[-1].append(result)
        else:
            batches.append([result])
    return batches
