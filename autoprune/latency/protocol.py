"""The timing protocol: how one latency figure is taken on a noisy, shared CPU.

Back-to-back timing on a shared 2-core machine gives outliers of up to 50x and can even
invert a comparison (MEASUREMENTS.md). The protocol below is what held up there:

* a fixed thread count for the whole measurement (``threads``), restored afterwards;
* a warm-up of every model before any timing (allocator, lazy kernels, caches);
* *interleaved rounds*: each round times every model once, in a freshly shuffled order, so a
  burst of load from a neighbour hits all models alike instead of one of them;
* within a round a model runs ``repeats`` times and keeps the *minimum* (the run least
  disturbed); fast models get more repeats so every model is timed for about the same time;
* the figure is the *median of the per-round minima*; the 10th/90th percentiles of those
  minima are recorded with it as its spread;
* models whose spread is still wide get extra interleaved rounds (outlier re-measurement);
* optionally, a *reference* model runs in every round and the others are taken relative to
  it, round by round, which cancels load that slows a whole round (see :func:`measure`);
* the garbage collector is off while timing; it runs fully before the first round and on
  its youngest generation between rounds (a full pass costs ~0.1 s with torch loaded).
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from autoprune.errors import LatencyModelError

Runnable = Callable[[], Any]
"""One forward pass on a fixed input; the protocol only times calls of it."""

ProgressCallback = Callable[[int, int], None]
"""``(rounds done, rounds planned)``; planned may grow when outliers are re-measured."""


@dataclass(frozen=True)
class Measurement:
    """One latency figure with its spread (milliseconds)."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    rounds: int
    repeats: int
    remeasured: bool = False
    round_minima_ms: tuple[float, ...] = field(default=(), repr=False)

    @property
    def spread(self) -> float:
        """The p10-p90 band relative to the median (0.2 means +-10%)."""
        return (self.p90_ms - self.p10_ms) / self.median_ms if self.median_ms > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["round_minima_ms"] = [round(v, 4) for v in self.round_minima_ms]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Measurement:
        values = dict(data)
        values["round_minima_ms"] = tuple(values.get("round_minima_ms", ()))
        return cls(**values)


@dataclass(frozen=True)
class Protocol:
    """The knobs of :func:`measure`; the defaults are the ones the benchmarks use."""

    rounds: int = 9
    min_repeats: int = 2
    max_repeats: int = 20
    round_target_ms: float = 25.0     # time each model gets per round (sets its repeats)
    warmup: int = 3
    max_spread: float = 0.20          # p10-p90 band above which a model is re-measured
    extra_rounds: int = 6             # extra interleaved rounds for those models, at most
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.min_repeats < 1 or self.max_repeats < self.min_repeats:
            raise LatencyModelError("measurement protocol: rounds and repeats must be >= 1")


DEFAULT_PROTOCOL = Protocol()
"""The protocol profiles and validations use unless told otherwise."""

QUICK = Protocol(rounds=5, min_repeats=1, max_repeats=5, round_target_ms=8.0, warmup=2,
                 extra_rounds=2)
"""A short protocol for smoke runs and tests (numbers are noisier)."""


@contextmanager
def thread_limit(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` intra-op threads (``None``: leave as is), restoring afterwards."""
    previous = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise LatencyModelError(f"threads: {threads} is not >= 1")
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _time_min_ms(run: Runnable, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter_ns()
        run()
        best = min(best, time.perf_counter_ns() - start)
    return best / 1e6


def _summary(minima: list[float], repeats: int, remeasured: bool) -> Measurement:
    values = np.asarray(minima, dtype=float)
    return Measurement(
        median_ms=float(np.median(values)),
        p10_ms=float(np.percentile(values, 10)),
        p90_ms=float(np.percentile(values, 90)),
        rounds=len(minima),
        repeats=repeats,
        remeasured=remeasured,
        round_minima_ms=tuple(float(v) for v in values),
    )


def measure(
    models: Mapping[str, Runnable | torch.nn.Module],
    protocol: Protocol = DEFAULT_PROTOCOL,
    *,
    threads: int | None = None,
    inputs: Mapping[str, torch.Tensor] | None = None,
    progress: ProgressCallback | None = None,
    reference: str | None = None,
) -> dict[str, Measurement]:
    """Time every model with interleaved rounds; one :class:`Measurement` per name.

    ``models`` maps a name to a zero-argument callable (one forward pass) or to a module
    that is called as ``module(**inputs)`` under ``torch.inference_mode``.

    ``reference`` names one of the models that then runs in *every* round (re-measurement
    rounds included), and every other model's round minimum is divided by the reference's
    minimum of the same round before the median is taken (then scaled back by the reference's
    median). Load from neighbours that slows a whole round down cancels out of such ratios;
    this is what makes figures from different rounds, groups and passes comparable on a
    shared machine.
    """
    if not models:
        return {}
    if reference is not None and reference not in models:
        raise LatencyModelError(f"measure: reference {reference!r} is not among the models")
    runners = {name: _as_runnable(model, inputs) for name, model in models.items()}
    names = list(runners)
    rng = np.random.default_rng(protocol.seed)
    with thread_limit(threads), torch.inference_mode():
        repeats = _warm_up(runners, protocol)
        timings: dict[str, dict[int, float]] = {name: {} for name in names}  # round -> minimum
        planned = protocol.rounds
        done = 0

        gc.collect()  # one full collection up front: with torch loaded it takes ~0.1 s

        def one_round(subset: list[str]) -> None:
            nonlocal done
            if reference is not None and reference not in subset:
                subset = [*subset, reference]
            gc.collect(0)  # the youngest generation only: cheap, and all a round allocates
            with _gc_paused():
                for index in rng.permutation(len(subset)):
                    name = subset[int(index)]
                    timings[name][done] = _time_min_ms(runners[name], repeats[name])
            done += 1
            if progress is not None:
                progress(done, planned)

        def minima(name: str) -> list[float]:
            if reference is None or name == reference:
                return list(timings[name].values())
            ref = timings[reference]
            scale = float(np.median(list(ref.values())))
            return [value / ref[r] * scale for r, value in timings[name].items()]

        for _ in range(protocol.rounds):
            one_round(names)
        # Outlier re-measurement: only the models whose rounds disagree get extra rounds,
        # interleaved among themselves, until their band is narrow or the extra rounds run out.
        remeasured: set[str] = set()
        for _ in range(protocol.extra_rounds):
            wide = [n for n in names if n != reference
                    and _summary(minima(n), 1, False).spread > protocol.max_spread]
            if not wide:
                break
            if not remeasured:
                planned += protocol.extra_rounds
            remeasured.update(wide)
            one_round(wide)
    return {name: _summary(minima(name), repeats[name], name in remeasured) for name in names}


def _warm_up(runners: Mapping[str, Runnable], protocol: Protocol) -> dict[str, int]:
    """Run each model ``warmup`` times; derive its repeats per round from the fastest run."""
    repeats: dict[str, int] = {}
    for name, run in runners.items():
        fastest = _time_min_ms(run, max(protocol.warmup, 1))
        wanted = math.ceil(protocol.round_target_ms / max(fastest, 1e-3))
        repeats[name] = int(min(max(wanted, protocol.min_repeats), protocol.max_repeats))
    return repeats


def _as_runnable(model: Runnable | torch.nn.Module, inputs: Mapping[str, torch.Tensor] | None) -> Runnable:
    if isinstance(model, torch.nn.Module):
        if inputs is None:
            raise LatencyModelError("measure: a module needs `inputs` to be called with")
        module = model.eval()
        kwargs = dict(inputs)
        return lambda: module(**kwargs)
    if not callable(model):
        raise LatencyModelError(f"measure: {type(model).__name__} is neither callable nor a module")
    return model
