"""Validating a latency model on fresh random architectures, measured end to end twice.

The held-out architectures are sampled from the space and never among the fitting
measurements. Each is measured in two independent passes (separate interleaved groupings,
separate round orders, run one after the other; relative to the dense model in every round,
as when profiling); the figure compared with the prediction is the mean of the two, and the
share of architectures whose passes agree within +-10% is the measurement's own
repeatability - the ceiling any predictor can be judged against.

Both passes are expressed on the profile's scale (dense model = the profiled ``dense_ms``):
the figures judge the *relative* latencies the search relies on. How much faster or slower
the machine as a whole runs now than when profiled is reported as ``dense_drift`` (one ratio
per pass), and the agreement on the raw scale as ``absolute_within_10pct``/``absolute_mape``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from autoprune.latency.backends import Backend
from autoprune.latency.factory import CompressFactory, ModelFactory
from autoprune.latency.fingerprint import machine_load
from autoprune.latency.fitting import agreement, kendall_tau, mape, within
from autoprune.latency.predictor import LatencyModel
from autoprune.latency.profile import (
    make_backend,
    measure_architectures,
    sample_architectures,
    warn_if_busy,
)
from autoprune.latency.progress import NullProgress, Progress
from autoprune.latency.protocol import DEFAULT_PROTOCOL, QUICK, Protocol, Runnable, measure
from autoprune.latency.records import MeasurementLog
from autoprune.latency.schema import ValidationPoint, ValidationRecord
from autoprune.space import SearchSpace


def validate(
    model: LatencyModel | str | Path,
    n: int = 50,
    *,
    space: str | Path | SearchSpace | None = None,
    protocol: Protocol = DEFAULT_PROTOCOL,
    group_size: int = 8,
    seed: int = 1,
    strict: bool = False,
    save: bool = False,
    store: Any | None = None,
    factory: ModelFactory | None = None,
    progress: Progress | None = None,
) -> ValidationRecord:
    """Measure ``n`` held-out random architectures twice and compare with the predictions.

    Returns the figures (``within_10pct``, ``kendall_tau``, ``mape``, ``flops_baseline_mape``,
    ``repeatability_within_10pct``, ...); with ``save`` they are also written into the
    model's file. ``space``: where held-out architectures come from (default: the space the
    model was profiled on, so its tables cover every bit-width that occurs); ``strict``: a
    model measured on another device is an error, not a warning.
    """
    began = time.monotonic()
    latency = model if isinstance(model, LatencyModel) else LatencyModel.load(model, strict=strict)
    if isinstance(model, LatencyModel):
        latency.check_device(strict)
    bound, backend = _space_and_backend(latency, space, factory)
    fitted = {record.architecture_hash for record in latency.document.end_to_end}
    archs = sample_architectures(bound, n, np.random.default_rng(seed), fitted)
    log = MeasurementLog(store, latency.fingerprint, latency.backend, latency.batch,
                         latency.seq_len, latency.threads) if store is not None else None
    progress = progress or NullProgress()
    conditions = warn_if_busy(latency.threads)

    progress.start("building held-out models", len(archs) + 1)
    runners: dict[str, Runnable] = {}
    for arch in [bound.dense(), *archs]:
        runners[arch.hash] = backend.model(arch)
        progress.advance()
    passes = []
    for index in (1, 2):
        order = np.random.default_rng(seed + index).permutation(len(archs))
        progress.start(f"pass {index}", len(archs))
        figures = measure_architectures(
            lambda arch: runners[arch.hash], [archs[int(i)] for i in order],
            replace(protocol, seed=protocol.seed + index), threads=backend.threads,
            group_size=group_size, reference=bound.dense(), progress=progress)
        passes.append(figures)
    runners.clear()  # free the models before the figures are computed
    if log is not None:  # fresh figures for the store (never reused here: validation re-measures)
        for arch in archs:
            log.record_architecture(arch, passes[0][arch.hash])
    dense = bound.dense().hash
    # Each pass is put on the profile's scale: its figures are measured relative to the dense
    # model (same round), and its dense median is mapped to the profiled ``dense_ms``. A machine
    # that is uniformly faster or slower than when profiled (another tenant's load between
    # passes) then changes neither agreement figure; that drift is reported separately.
    drift = [figures[dense].median_ms / latency.dense_ms for figures in passes]
    a, b = (np.array([figures[arch.hash].median_ms / d for arch in archs]) for figures, d in zip(passes, drift))
    measured = (a + b) / 2
    absolute = measured * (drift[0] + drift[1]) / 2
    predicted = np.array([latency.predict(arch) for arch in archs])
    by_table = np.array([latency.predict_with("table", arch) for arch in archs])
    by_flops = np.array([latency.predict_with("flops", arch) for arch in archs])
    record = ValidationRecord(
        n_heldout=len(archs),
        within_10pct=round(within(predicted, measured), 4),
        kendall_tau=round(kendall_tau(predicted, measured), 4),
        mape=round(mape(predicted, measured), 5),
        flops_baseline_mape=round(mape(by_flops, measured), 5),
        table_mape=round(mape(by_table, measured), 5),
        repeatability_within_10pct=round(agreement(a, b), 4),
        selected=latency.selected,  # type: ignore[arg-type]
        space=bound.name,
        seconds=round(time.monotonic() - began, 2),
        dense_drift=[round(d, 4) for d in drift],
        absolute_within_10pct=round(within(predicted, absolute), 4),
        absolute_mape=round(mape(predicted, absolute), 5),
        conditions={**conditions, "load_1min_end": machine_load()["load_1min"]},
        points=[
            ValidationPoint(architecture_hash=arch.hash, predicted_ms=round(p, 4),
                            flops_predicted_ms=round(f, 4), first_ms=round(x, 4), second_ms=round(y, 4))
            for arch, p, f, x, y in zip(archs, predicted, by_flops, a, b)
        ],
    )
    if save:
        latency.with_document(validation=record).save()
    return record


def dense_speed(model: LatencyModel, *, protocol: Protocol = QUICK,
                space: str | Path | SearchSpace | None = None,
                factory: ModelFactory | None = None) -> float:
    """The dense model's latency on this machine now over the profiled ``dense_ms``, a few
    seconds' measurement. Below 1 this machine runs faster than the one profiled: two machines
    of one CPU model share a fingerprint and can still differ (a Zen 4 ran dense 22% faster
    than another Zen 4's profile). The figure is a median of per-round minima, which load
    only raises, so a figure well below 1 is a faster machine or a profile taken in a slow
    period, never a busy moment."""
    bound, backend = _space_and_backend(model, space, factory)
    figures = measure({"dense": backend.model(bound.dense())}, protocol, threads=backend.threads)
    return figures["dense"].median_ms / model.dense_ms


def _space_and_backend(model: LatencyModel, space: str | Path | SearchSpace | None,
                       factory: ModelFactory | None) -> tuple[SearchSpace, Backend]:
    """The space to measure in (default: the one the model was profiled on) and a backend
    that builds its models as the profile did (same backend, batch, length, threads)."""
    factory = factory or CompressFactory(model.document.model)
    space = space if space is not None else model.document.space
    bound = space if isinstance(space, SearchSpace) else SearchSpace.load(space, factory.shape)
    return bound, make_backend(model.backend, factory, model.batch, model.seq_len, model.threads)
