"""The latency predictor: per-operator tables plus a fitted correction, or FLOPs-linear.

``LatencyModel`` is what the rest of autoprune uses: ``predict(arch)`` in milliseconds at the
file's (batch, sequence length), ``dense_ms`` for budgets given as a ratio. Both predictors
live in every file; ``selected`` names the one ``predict`` uses.

Sparsity: the tables are keyed by heads/neurons kept and bit-width only. No supported backend
runs sparse kernels (``Backend.exploits_sparsity`` is false for all), so a sparsity-only change
predicts exactly the dense latency, which is what they measure (within noise).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from autoprune.errors import FingerprintMismatch, LatencyModelError
from autoprune.latency import fingerprint as fp
from autoprune.latency.fitting import FLOPS_FEATURES, TABLE_FEATURES, LinearFit
from autoprune.latency.operators import OperatorKey, layer_keys
from autoprune.latency.schema import LatencyModelFile, OperatorRecord, read_file, write_file
from autoprune.space import Architecture, LayerConfig, ModelShape, architecture_stats

LOW_BIT_FLOPS_WEIGHT = 0.5  # the FLOPs baseline counts an int8/int4 layer at half its FLOPs
# latency.margin "auto": the share of held-out re-measurements the margin should cover; the
# end-to-end target is 95% of exported front members within their budget.
MARGIN_COVERAGE = 0.95
MAX_MARGIN = 0.45  # the spec's margin is < 0.5; more than this leaves no search to speak of


def margin_covering(errors: Iterable[float], coverage: float = MARGIN_COVERAGE) -> float:
    """The margin ``m`` under which a share ``coverage`` of these relative latency errors
    (measured / predicted - 1) stay within a budget they were predicted at: with ``q`` their
    ``coverage`` quantile, ``(1 - m) * (1 + q) <= 1``, so ``m = q / (1 + q)`` (0 when even
    that quantile is over-predicted)."""
    q = max(float(np.quantile(list(errors), coverage)), 0.0)
    return q / (1.0 + q)


class LatencyModelWarning(UserWarning):
    """A latency model is used on a device other than the one it was measured on."""


class OperatorTable:
    """Measured operator latencies, interpolated linearly in heads or neurons kept.

    Embeddings and classifier are measured and kept in the file too, but they cost the same
    for every architecture of a base model, so the correction's intercept carries them.
    """

    def __init__(self, records: Iterable[OperatorRecord]) -> None:
        self._fixed: dict[str, float] = {}
        points: dict[tuple[str, int], dict[int, float]] = {}
        for record in records:
            if record.kind in ("embeddings", "classifier"):
                self._fixed[record.kind] = record.median_ms
            else:
                points.setdefault((record.kind, record.bits), {})[record.size] = record.median_ms
        self._curves = {
            key: (np.array(sorted(values), dtype=float), np.array([values[s] for s in sorted(values)]))
            for key, values in points.items()
        }

    def lookup(self, key: OperatorKey) -> float:
        if key.kind in ("embeddings", "classifier"):
            return self._fixed.get(key.kind, 0.0)
        curve = self._curves.get((key.kind, key.bits))
        if curve is None:
            raise LatencyModelError(f"latency model has no {key.kind} entries for {key.bits}-bit layers")
        sizes, ms = curve
        if key.size == 0 and sizes[0] > 0:
            return 0.0  # a removed sub-block that the table did not measure: no kernels run
        return max(_interpolate(float(key.size), sizes, ms), 0.0)

    def layer_sums(self, arch: Architecture, shape: ModelShape) -> dict[str, float]:
        """Summed table time over the kept layers, by ``attention_ms@bits`` / ``ffn_ms@bits``."""
        sums: dict[str, float] = {}
        for layer in arch:
            if layer.keep:
                for key in layer_keys(layer, shape):
                    name = f"{key.kind}_ms@{key.bits}"
                    sums[name] = sums.get(name, 0.0) + self.lookup(key)
        return sums

    @property
    def bits(self) -> tuple[int, ...]:
        """Bit-widths the table covers, widest first."""
        return tuple(sorted({bits for _, bits in self._curves}, reverse=True))


def _interpolate(x: float, xs: np.ndarray, ys: np.ndarray) -> float:
    """Piecewise linear through the points, extended linearly beyond the ends."""
    if len(xs) == 1:
        return float(ys[0] * x / xs[0]) if xs[0] else float(ys[0])
    if x < xs[0]:
        i = 0
    elif x > xs[-1]:
        i = len(xs) - 2
    else:
        return float(np.interp(x, xs, ys))
    slope = (ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i])
    return float(ys[i] + slope * (x - xs[i]))


def table_features(table: OperatorTable, arch: Architecture, shape: ModelShape,
                   names: tuple[str, ...] = TABLE_FEATURES) -> np.ndarray:
    """The table predictor's features, in the order of ``names`` (see ``table_feature_names``)."""
    sums = table.layer_sums(arch, shape)
    values = []
    for name in names:
        if name == "kept_layers":
            values.append(float(len(arch.kept_layers)))
        elif name == "intercept":
            values.append(1.0)
        elif name in ("attention_ms", "ffn_ms"):
            values.append(sum(v for k, v in sums.items() if k.startswith(name + "@")))
        elif name.startswith(("attention_ms@", "ffn_ms@")):
            values.append(sums.get(name, 0.0))
        else:
            raise LatencyModelError(f"latency model: unknown table feature {name!r}")
    return np.array(values)


def flops_features(arch: Architecture, shape: ModelShape, batch: int, seq_len: int) -> np.ndarray:
    """The FLOPs baseline's features: effective GFLOPs (low-bit layers at half) and 1."""
    empty = Architecture(tuple(LayerConfig.dropped() for _ in range(len(arch))))
    fixed = architecture_stats(empty, shape, batch, seq_len).flops
    total = float(fixed)
    for index, layer in enumerate(arch):
        if not layer.keep:
            continue
        alone = Architecture(tuple(layer if i == index else LayerConfig.dropped() for i in range(len(arch))))
        layer_flops = architecture_stats(alone, shape, batch, seq_len).flops - fixed
        total += layer_flops * (LOW_BIT_FLOPS_WEIGHT if layer.bits < 32 else 1.0)
    return np.array([total / 1e9, 1.0])


class LatencyModel:
    """A fitted latency model of one device, backend, batch and sequence length."""

    def __init__(self, document: LatencyModelFile, path: Path | None = None) -> None:
        self.document = document
        self.path = path
        self.shape = ModelShape(**document.shape)
        self.table = OperatorTable(document.operators)
        self.fits = {name: LinearFit(tuple(f.names), tuple(f.coefficients)) for name, f in document.fits.items()}
        known = {"kept_layers", "intercept", "attention_ms", "ffn_ms"} | {
            f"{kind}_ms@{bits}" for kind in ("attention", "ffn") for bits in (32, 8, 4)}
        table_names = self.fits["table"].names
        if self.fits["flops"].names != FLOPS_FEATURES or not set(table_names) <= known:
            raise LatencyModelError("latency model: fitted features do not match this version of autoprune")
        for fit in self.fits.values():
            if len(fit.names) != len(fit.coefficients):
                raise LatencyModelError("latency model: fits: names and coefficients differ in length")

    # ---- the contract -----------------------------------------------------------------------
    @property
    def dense_ms(self) -> float:
        return self.document.dense_ms

    @property
    def batch(self) -> int:
        return self.document.batch

    @property
    def seq_len(self) -> int:
        return self.document.seq_len

    @property
    def backend(self) -> str:
        return self.document.backend

    @property
    def threads(self) -> int:
        return self.document.threads

    @property
    def fingerprint(self) -> dict:
        return dict(self.document.fingerprint)

    @property
    def selected(self) -> str:
        return self.document.selected

    def predict(self, arch: Architecture, batch: int | None = None, seq_len: int | None = None) -> float:
        """Predicted milliseconds of one forward pass of ``arch`` (selected predictor)."""
        return self.predict_with(self.selected, arch, batch, seq_len)

    def predict_with(self, predictor: str, arch: Architecture, batch: int | None = None,
                     seq_len: int | None = None) -> float:
        self._check_shape(arch, batch, seq_len)
        if predictor == "table":
            features = table_features(self.table, arch, self.shape, self.fits["table"].names)
        elif predictor == "flops":
            features = flops_features(arch, self.shape, self.batch, self.seq_len)
        else:
            raise LatencyModelError(f"predictor {predictor!r}: expected 'table' or 'flops'")
        return float(self.fits[predictor].predict(features)[0])

    def _check_shape(self, arch: Architecture, batch: int | None, seq_len: int | None) -> None:
        if (batch is not None and batch != self.batch) or (seq_len is not None and seq_len != self.seq_len):
            raise LatencyModelError(
                f"latency model covers batch {self.batch}, seq_len {self.seq_len} only "
                f"(asked for batch {batch or self.batch}, seq_len {seq_len or self.seq_len})"
            )
        if len(arch) != self.shape.num_layers:
            raise LatencyModelError(
                f"architecture has {len(arch)} layers, the latency model's base model {self.shape.num_layers}"
            )

    # ---- error -------------------------------------------------------------------------------
    def suggested_margin(self, coverage: float = MARGIN_COVERAGE) -> float | None:
        """The ``latency.margin`` under which a share ``coverage`` of this model's held-out
        architectures would have re-measured within a budget they were predicted at.

        With ``q`` the ``coverage`` quantile of measured / predicted - 1 over both validation
        passes, a model predicted at ``budget * (1 - m)`` measures within the budget when
        ``(1 - m) * (1 + q) <= 1``, so ``m = q / (1 + q)`` (0 when the model over-predicts
        even there). The passes ran on the profiled device, in the load of that hour: a machine
        that re-measures noisily gets a larger margin. None without validation points.
        """
        validation = self.document.validation
        if validation is None or not validation.points:
            return None
        errors = [measured / point.predicted_ms - 1.0 for point in validation.points
                  for measured in (point.first_ms, point.second_ms)]
        return min(margin_covering(errors, coverage), MAX_MARGIN)

    # ---- device ------------------------------------------------------------------------------
    def device_differences(self) -> list[str]:
        """How this machine differs from the one the model was measured on (empty: same)."""
        current = fp.device_fingerprint(self.backend, self.threads)
        return fp.differences(self.document.fingerprint, current)

    def check_device(self, strict: bool = False) -> list[str]:
        """Warn (or raise :class:`FingerprintMismatch` when strict) if measured elsewhere."""
        found = self.device_differences()
        if found:
            where = f" {str(self.path)!r}" if self.path else ""
            message = f"latency model{where} was measured on another device: {'; '.join(found)}"
            if strict:
                raise FingerprintMismatch(message)
            warnings.warn(message, LatencyModelWarning, stacklevel=3)
        return found

    # ---- files -------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, strict: bool = False) -> LatencyModel:
        model = cls(read_file(path), Path(path))
        model.check_device(strict)
        return model

    def save(self, path: str | Path | None = None) -> Path:
        target = Path(path) if path is not None else self.path
        if target is None:
            raise LatencyModelError("latency model: no path to save to")
        self.path = write_file(self.document, target)
        return self.path

    def with_document(self, **changes: object) -> LatencyModel:
        """A copy with some top-level fields replaced (e.g. ``validation=...``)."""
        return LatencyModel(self.document.model_copy(update=changes), self.path)

    def describe(self) -> dict[str, object]:
        """A short summary for people (the CLI prints it)."""
        summary: dict[str, object] = {
            "model": self.document.model, "backend": self.backend, "batch": self.batch,
            "seq_len": self.seq_len, "threads": self.threads, "dense_ms": round(self.dense_ms, 3),
            "selected": self.selected,
            "cv_mape": {name: f.cv_mape for name, f in self.document.fits.items()},
            "n_operators": len(self.document.operators), "n_end_to_end": len(self.document.end_to_end),
        }
        if self.document.validation is not None:
            v = self.document.validation
            summary["validation"] = {k: getattr(v, k) for k in (
                "n_heldout", "within_10pct", "kendall_tau", "mape", "flops_baseline_mape",
                "repeatability_within_10pct")}
            summary["validation"]["suggested_margin"] = self.suggested_margin()  # type: ignore[index]
        return summary


def shape_dict(shape: ModelShape) -> dict[str, int | bool]:
    return asdict(shape)


__all__ = [
    "LatencyModel",
    "LatencyModelWarning",
    "OperatorTable",
    "flops_features",
    "shape_dict",
    "table_features",
]
