"""Profiling a device: operator tables, end-to-end measurements, both fits, one JSON file.

The procedure, bounded by ``time_budget_s`` (the benchmark uses 300 s per batch size):

1. operator tables: attention for every heads choice of the space and FFN for every FFN
   fraction, at every bit-width of the space, plus embeddings and classifier, all measured in
   one interleaved run (cut out of a few compressed models, see ``operators.operator_plan``);
2. end-to-end: the dense model and random architectures of the space, measured in small
   interleaved groups (a group's models are in memory together) relative to the dense model,
   which runs in every round, until ``n_fit`` are measured or the budget would be exceeded;
3. fitting: the table correction and the FLOPs-linear baseline, both on those measurements;
   the one with the lower cross-validated MAPE is selected.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from autoprune.errors import LatencyModelError
from autoprune.latency import fingerprint as fp
from autoprune.latency.backends import Backend, get_backend
from autoprune.latency.factory import CompressFactory, ModelFactory
from autoprune.latency.fitting import (
    FLOPS_FEATURES,
    TABLE_FEATURES,
    cross_validated_mape,
    fit_bounded,
    fitter_for,
    table_feature_names,
)
from autoprune.latency.operators import OperatorKey, layer_keys, operator_plan
from autoprune.latency.predictor import (
    LatencyModel,
    OperatorTable,
    flops_features,
    shape_dict,
    table_features,
)
from autoprune.latency.progress import NullProgress, Progress
from autoprune.latency.protocol import DEFAULT_PROTOCOL, Measurement, Protocol, Runnable, measure
from autoprune.latency.records import FASTER_THAN_MEASURED, MeasurementLog
from autoprune.latency.schema import (
    FORMAT,
    VERSION,
    EndToEndRecord,
    FitRecord,
    LatencyModelFile,
    OperatorRecord,
)
from autoprune.space import Architecture, SearchSpace

logger = logging.getLogger(__name__)
DEFAULT_SPACE = "bert-full"
MIN_FIT_MEASUREMENTS = 8  # below this, neither fit is trustworthy: fail instead


def default_threads() -> int:
    """All CPUs this process may use (the usual setting for one inference process)."""
    return fp.usable_cpus()


def warn_if_busy(threads: int) -> dict[str, float]:
    """Log a warning when other processes already use the CPUs the timing needs; the load, as
    the ``conditions`` of the measurements to come record it."""
    load = fp.machine_load(window_s=1.0)
    if fp.oversubscribed(threads, load):
        logger.warning("other processes keep %.1f of %d usable CPUs busy: timings with %d "
                       "threads will be slow and noisy (measure on a quiet machine)",
                       fp.others_load(load), int(load["usable_cpus"]), threads)
    return starting_conditions(load)


def starting_conditions(load: dict[str, float]) -> dict[str, float]:
    """A ``machine_load`` reading as a profile's or validation's ``conditions`` at its start."""
    return {f"{key}_start": value for key, value in load.items() if key != "usable_cpus"}


def _sampled_load() -> dict[str, float]:
    return fp.machine_load(window_s=2.0)


def wait_until_quiet(threads: int, timeout_s: float, poll_s: float = 10.0, *,
                     sleep: Callable[[float], None] = time.sleep,
                     machine_load: Callable[[], dict[str, float]] = _sampled_load) -> dict[str, float]:
    """Wait up to ``timeout_s`` for other processes to leave the CPUs ``threads`` need; the
    last reading of ``machine_load``.

    A profile is the scale of every later budget, and one taken while the machine still
    settles (an install just ended) times dense slow. Other processes' CPU time is sampled
    rather than the load average read, which counts this process's own threads and decays
    over a minute. A machine still busy at ``timeout_s`` is measured anyway, and
    ``warn_if_busy`` says so.
    """
    load = machine_load()
    polls = max(0, math.ceil(timeout_s / poll_s))
    if polls and fp.oversubscribed(threads, load):
        logger.warning("other processes keep %.1f CPUs busy: waiting up to %.0f s for a quiet "
                       "machine before timing", fp.others_load(load), timeout_s)
    for _ in range(polls):
        if not fp.oversubscribed(threads, load):
            break
        sleep(poll_s)
        load = machine_load()
    return load


def make_backend(backend: str, factory: ModelFactory, batch: int, seq_len: int, threads: int) -> Backend:
    return get_backend(backend)(factory, batch, seq_len, threads)


def sample_architectures(space: SearchSpace, n: int, rng: np.random.Generator,
                         exclude: set[str] = frozenset()) -> list[Architecture]:  # type: ignore[assignment]
    """``n`` distinct random members of the space whose hashes are not in ``exclude``."""
    found: dict[str, Architecture] = {}
    for _ in range(max(100, 50 * n)):
        if len(found) >= n:
            break
        arch = space.sample(rng)
        if arch.hash not in exclude:
            found.setdefault(arch.hash, arch)
    return list(found.values())


REFERENCE = "__reference__"


def measure_architectures(
    build: Callable[[Architecture], Runnable],
    archs: Sequence[Architecture],
    protocol: Protocol,
    *,
    threads: int,
    group_size: int = 8,
    reference: Architecture | None = None,
    deadline: float | None = None,
    progress: Progress | None = None,
    log: MeasurementLog | None = None,
) -> dict[str, Measurement]:
    """End-to-end figures by architecture hash, measured in interleaved groups.

    Only a group's models are in memory at once (``build`` makes each when its group starts).
    With a ``reference`` architecture, it runs in every round of every group: each model is
    measured relative to it (see :func:`measure`), and each group is rescaled to the
    reference's median over *all* groups, so load that changes between groups cancels too.
    Architectures the log already knows are not measured again. With a ``deadline``
    (``time.monotonic()``), no group is started that would probably end after it.
    """
    progress = progress or NullProgress()
    results: dict[str, Measurement] = {}
    pending = []
    for arch in archs:
        known = log.architectures.get(arch.hash) if log is not None else None
        if known is not None:
            results[arch.hash] = known
            progress.advance()
        elif reference is None or arch.hash != reference.hash:
            pending.append(arch)
    needs_reference = reference is not None and (bool(pending) or reference.hash not in results)
    reference_run = build(reference) if needs_reference and reference is not None else None
    groups: list[tuple[list[Architecture], dict[str, Measurement]]] = []
    seconds_per_model: float | None = None
    for start in range(0, len(pending), max(group_size, 1)):
        group = pending[start:start + group_size]
        if (deadline is not None and seconds_per_model is not None
                and time.monotonic() + seconds_per_model * len(group) > deadline):
            break
        began = time.monotonic()
        runners: dict[str, Runnable] = {arch.hash: build(arch) for arch in group}
        if reference_run is not None:
            runners[REFERENCE] = reference_run
        groups.append((group, measure(runners, protocol, threads=threads,
                                      reference=REFERENCE if reference_run is not None else None)))
        del runners  # the next group's models replace these (measure() collects garbage first)
        seconds_per_model = (time.monotonic() - began) / len(group)
        progress.advance(len(group))
    if reference is not None and groups:
        all_minima = [v for _, figures in groups for v in figures[REFERENCE].round_minima_ms]
        overall = float(np.median(all_minima))
        for group, figures in groups:
            factor = overall / figures[REFERENCE].median_ms
            results.update({arch.hash: _rescaled(figures[arch.hash], factor) for arch in group})
        first = groups[0][1][REFERENCE]
        results[reference.hash] = replace(_summary_of(all_minima, first.repeats), remeasured=False)
    elif reference is not None and reference_run is not None:  # only the reference was unknown
        results[reference.hash] = measure({REFERENCE: reference_run}, protocol, threads=threads)[REFERENCE]
    else:
        for group, figures in groups:
            results.update({arch.hash: figures[arch.hash] for arch in group})
    if log is not None:
        for arch in archs:
            if arch.hash in results and arch.hash not in log.architectures:
                log.record_architecture(arch, results[arch.hash])
    return results


def _rescaled(m: Measurement, factor: float) -> Measurement:
    return replace(m, median_ms=m.median_ms * factor, p10_ms=m.p10_ms * factor, p90_ms=m.p90_ms * factor,
                   round_minima_ms=tuple(v * factor for v in m.round_minima_ms))


def _summary_of(minima: list[float], repeats: int) -> Measurement:
    values = np.asarray(minima, dtype=float)
    return Measurement(float(np.median(values)), float(np.percentile(values, 10)),
                       float(np.percentile(values, 90)), rounds=len(values), repeats=repeats,
                       round_minima_ms=tuple(float(v) for v in values))


def measure_operators(backend: Backend, space: SearchSpace, protocol: Protocol,
                      log: MeasurementLog | None = None, progress: Progress | None = None
                      ) -> dict[OperatorKey, Measurement]:
    """Every table entry the space needs, measured in one interleaved run."""
    shape = backend.factory.shape
    bits = tuple(sorted(set(space.choices("bits")) | {32}, reverse=True))
    known = dict(log.operators) if log is not None else {}
    runners: dict[OperatorKey, Runnable] = {}
    for arch in operator_plan(shape, space.heads, tuple(space.choices("ffn")), bits):
        wanted = {key for i in arch.kept_layers for key in layer_keys(arch[i], shape)}
        wanted |= {OperatorKey("embeddings"), OperatorKey("classifier")}
        if wanted <= set(known) | set(runners):
            continue
        for key, run in backend.operators(arch).items():
            if key not in known:
                runners.setdefault(key, run)
    reporter = progress or NullProgress()
    done = 0

    def on_round(finished: int, planned: int) -> None:
        nonlocal done
        reporter.advance(finished - done)
        done = finished

    # The widest fp32 FFN block runs in every round as the reference the others are taken
    # relative to (see ``measure``), so load that comes and goes between rounds cancels.
    widest = OperatorKey("ffn", shape.ffn_neurons(max(space.choices("ffn"))), 32)
    reference = widest.label if widest in runners else None
    reporter.start("operator tables", protocol.rounds)
    figures = measure({key.label: run for key, run in runners.items()}, protocol,
                      threads=backend.threads, progress=on_round, reference=reference)
    by_label = {key.label: key for key in runners}
    for label, measurement in figures.items():
        known[by_label[label]] = measurement
        if log is not None:
            log.record_operator(by_label[label], measurement)
    return known


def profile(
    model_name: str,
    backend: str = "torch",
    batch: int = 1,
    seq_len: int = 128,
    threads: int | None = None,
    out: str | Path | None = None,
    *,
    space: str | Path | SearchSpace = DEFAULT_SPACE,
    n_fit: int = 100,
    time_budget_s: float | None = 300.0,
    protocol: Protocol = DEFAULT_PROTOCOL,
    group_size: int = 8,
    seed: int = 0,
    store: Any | None = None,
    reuse_measurements: bool = True,
    factory: ModelFactory | None = None,
    progress: Progress | None = None,
) -> LatencyModel:
    """Profile ``model_name`` on this device and return (and write to ``out``) its latency model.

    ``time_budget_s`` bounds the whole profile: the operator tables are always measured, then
    end-to-end measurements stop when the budget would be exceeded (at least
    ``MIN_FIT_MEASUREMENTS`` are required). ``store``: a trials database to write every
    measurement to and, unless ``reuse_measurements`` is False, to reuse earlier ones of this
    device from (False when this machine no longer runs at the speed they were taken at).
    """
    began = time.monotonic()
    deadline = began + time_budget_s if time_budget_s is not None else None
    backend_cls = get_backend(backend)  # unknown backend: fail before any expensive work
    if n_fit < MIN_FIT_MEASUREMENTS:
        raise LatencyModelError(f"n_fit {n_fit}: at least {MIN_FIT_MEASUREMENTS} measurements are needed")
    threads = threads or default_threads()
    factory = factory or CompressFactory(model_name)
    bound = space if isinstance(space, SearchSpace) else SearchSpace.load(space, factory.shape)
    runner = backend_cls(factory, batch, seq_len, threads)
    if runner.exploits_sparsity:  # pragma: no cover - no such backend yet
        raise LatencyModelError(f"backend {backend}: sparsity-aware tables are not implemented")
    fingerprint = fp.device_fingerprint(backend, threads)
    conditions = warn_if_busy(threads)
    log = MeasurementLog(store, fingerprint, backend, batch, seq_len, threads, reuse=reuse_measurements)
    if _stored_figures_are_stale(log, runner, bound.dense(), protocol, threads):
        log.supersede()
    progress = progress or NullProgress()

    operators = measure_operators(runner, bound, protocol, log, progress)

    rng = np.random.default_rng(seed)
    archs = [bound.dense()] + sample_architectures(bound, n_fit - 1, rng, {bound.dense().hash})
    progress.start("end-to-end", len(archs))
    measured = measure_architectures(runner.model, archs, protocol, threads=threads, group_size=group_size,
                                     reference=bound.dense(), deadline=deadline, progress=progress, log=log)
    fitted = [arch for arch in archs if arch.hash in measured]
    if len(fitted) < MIN_FIT_MEASUREMENTS:
        raise LatencyModelError(
            f"profile: only {len(fitted)} end-to-end measurements fit in {time_budget_s:g} s "
            f"(need {MIN_FIT_MEASUREMENTS}); raise the time budget"
        )
    operator_records = [
        OperatorRecord(kind=key.kind, size=key.size, bits=key.bits, **_measurement_fields(m))  # type: ignore[arg-type]
        for key, m in sorted(operators.items())
    ]
    end_to_end = [
        EndToEndRecord(architecture=arch.to_list(), architecture_hash=arch.hash,
                       **_measurement_fields(measured[arch.hash]))
        for arch in fitted
    ]
    fits, selected = fit_predictors(OperatorTable(operator_records), bound, fitted,
                                    [measured[a.hash].median_ms for a in fitted], batch, seq_len)
    document = LatencyModelFile(
        format=FORMAT, version=VERSION, model=model_name, shape=shape_dict(factory.shape),
        space=bound.name if isinstance(space, SearchSpace) else str(space),
        backend=backend, batch=batch, seq_len=seq_len, threads=threads, fingerprint=fingerprint,  # type: ignore[arg-type]
        fingerprint_hash=fp.fingerprint_hash(fingerprint),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        profile_seconds=round(time.monotonic() - began, 2), sparsity_exploited=False,
        conditions={**conditions, "load_1min_end": fp.machine_load()["load_1min"]},
        dense_ms=measured[bound.dense().hash].median_ms, operators=operator_records,
        end_to_end=end_to_end, fits=fits, selected=selected,  # type: ignore[arg-type]
    )
    model = LatencyModel(document)
    if out is not None:
        model.save(out)
    return model


def _stored_figures_are_stale(log: MeasurementLog, runner: Backend, dense: Architecture,
                              protocol: Protocol, threads: int) -> bool:
    """Whether this machine outruns the store's figures of its device (one dense measurement,
    with the profile's own protocol, against the stored dense). Two machines of one CPU model
    share a fingerprint and can differ by a fifth; reused figures would then profile the
    slower one again."""
    stored = log.architectures.get(dense.hash)
    if stored is None:
        return False
    now = measure({"dense": runner.model(dense)}, protocol, threads=threads)["dense"].median_ms
    if now >= (1 - FASTER_THAN_MEASURED) * stored.median_ms:
        return False
    logger.warning("dense runs %.0f%% faster than the stored measurements of this device "
                   "(%.2f ms against %.2f): measuring afresh", 100 * (1 - now / stored.median_ms),
                   now, stored.median_ms)
    return True


def fit_predictors(table: OperatorTable, space: SearchSpace, archs: Sequence[Architecture],
                   measured_ms: Sequence[float], batch: int, seq_len: int
                   ) -> tuple[dict[str, FitRecord], str]:
    """Fit both predictors on the same measurements; select the lower cross-validated MAPE.

    The table predictor comes in two variants (one correction scale for every bit-width, or
    one per bit-width); the better-validating one is kept as ``fits["table"]``. The per-bit
    variant is only tried with enough measurements (5 per coefficient).
    """
    y = np.asarray(measured_ms, dtype=float)
    candidates: dict[str, list[tuple[str, ...]]] = {"table": [TABLE_FEATURES], "flops": [FLOPS_FEATURES]}
    per_bits = table_feature_names(table.bits, per_bits=True)
    if per_bits != TABLE_FEATURES and len(y) >= 5 * len(per_bits):
        candidates["table"].append(per_bits)
    fits: dict[str, FitRecord] = {}
    for kind, variants in candidates.items():
        best: FitRecord | None = None
        for names in variants:
            if kind == "table":
                x = np.stack([table_features(table, a, space.shape, names) for a in archs])
            else:
                x = np.stack([flops_features(a, space.shape, batch, seq_len) for a in archs])
            cv = cross_validated_mape(x, y, fitter_for(names))
            if best is None or (best.cv_mape is not None and cv < best.cv_mape):
                fit = fit_bounded(x, y, names)
                best = FitRecord(names=list(fit.names), coefficients=list(fit.coefficients),
                                 cv_mape=None if math.isnan(cv) else round(cv, 5))
        assert best is not None
        fits[kind] = best
    selected = min(fits, key=lambda n: fits[n].cv_mape if fits[n].cv_mape is not None else math.inf)
    return fits, selected


def _measurement_fields(m: Measurement) -> dict[str, Any]:
    data = m.to_dict()
    return data
