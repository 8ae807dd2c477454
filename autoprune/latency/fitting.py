"""Fitting maths and agreement figures, free of models and files.

Two predictors are fitted on the same end-to-end measurements and compared:

* the *table* predictor: a bounded linear correction of the per-operator lookup sums,
  ``ms = a * attention_sum + b * ffn_sum + c * kept_layers + d`` with ``a, b, d >= 0`` (or
  with one ``a`` and ``b`` per bit-width, whichever cross-validates better). Summed
  isolated operators miss per-layer glue (residual adds, mask handling, Python dispatch) and
  over- or under-state cache effects; MEASUREMENTS.md found the raw sum biased and a linear
  calibration necessary;
* the *FLOPs-linear* baseline: ``ms = a * effective_flops + b``, low-bit (int8/int4) layers
  counted at half their FLOPs, which was within +-10% for 90-100% of configurations there.

Which one a latency model uses is chosen by k-fold cross-validated MAPE on the fitting
measurements (never on the held-out validation set, whose figures stay unbiased).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.optimize import lsq_linear

TABLE_FEATURES: tuple[str, ...] = ("attention_ms", "ffn_ms", "kept_layers", "intercept")
FLOPS_FEATURES: tuple[str, ...] = ("effective_gflops", "intercept")


def table_feature_names(bits: tuple[int, ...], per_bits: bool) -> tuple[str, ...]:
    """The table predictor's features: one scale for all bit-widths, or one per bit-width.

    Per-bit scales exist because an operator timed alone keeps its weights in cache while the
    full model streams every layer's weights; how much that matters depends on the weights'
    size, i.e. on the bit-width.
    """
    if not per_bits or len(bits) < 2:
        return TABLE_FEATURES
    return (*(f"attention_ms@{b}" for b in bits), *(f"ffn_ms@{b}" for b in bits), "kept_layers", "intercept")


def bounds_for(names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Operator-time scales and the fixed cost are >= 0; the per-layer glue term may be either
    sign (it also absorbs the LayerNorm/bias work the isolated blocks double count)."""
    lower = np.array([-np.inf if name == "kept_layers" else 0.0 for name in names])
    return lower, np.full(len(names), np.inf)


@dataclass(frozen=True)
class LinearFit:
    """``prediction = features @ coefficients``; features in the order of ``names``."""

    names: tuple[str, ...]
    coefficients: tuple[float, ...]

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.atleast_2d(features) @ np.asarray(self.coefficients)


def fit_bounded(features: np.ndarray, targets: np.ndarray, names: Sequence[str]) -> LinearFit:
    """Least squares on *relative* error (rows weighted by 1/target), within ``bounds_for``.

    Weighting by the inverse target makes the fit minimise percentage error, the figure the
    targets are stated in, so a 2 ms model counts as much as a 100 ms one.
    """
    x = np.asarray(features, dtype=float)
    y = np.asarray(targets, dtype=float)
    lower, upper = bounds_for(names)
    weights = 1.0 / np.maximum(y, 1e-9)
    scale = np.maximum(np.abs(x).max(axis=0), 1e-12)  # condition the columns
    result = lsq_linear(x * weights[:, None] / scale, y * weights,
                        bounds=(lower * scale, upper * scale), method="bvls")
    return LinearFit(tuple(names), tuple(float(c) for c in result.x / scale))


def fitter_for(names: Sequence[str]) -> Callable[[np.ndarray, np.ndarray], LinearFit]:
    return lambda x, y: fit_bounded(x, y, names)


def cross_validated_mape(features: np.ndarray, targets: np.ndarray,
                         fitter: Callable[[np.ndarray, np.ndarray], LinearFit],
                         folds: int = 5, seed: int = 0) -> float:
    """Mean absolute percentage error of out-of-fold predictions (k-fold)."""
    n = len(targets)
    folds = max(2, min(folds, n))
    order = np.random.default_rng(seed).permutation(n)
    predictions = np.empty(n)
    for fold in range(folds):
        test = order[fold::folds]
        train = np.setdiff1d(order, test)
        predictions[test] = fitter(features[train], targets[train]).predict(features[test])
    return mape(predictions, targets)


def mape(predicted: Sequence[float] | np.ndarray, measured: Sequence[float] | np.ndarray) -> float:
    p, m = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    return float(np.mean(np.abs(p - m) / m))


def within(predicted: Sequence[float] | np.ndarray, measured: Sequence[float] | np.ndarray,
           tolerance: float = 0.10) -> float:
    """Share of predictions within ``+-tolerance`` of the measured value."""
    p, m = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    return float(np.mean(np.abs(p - m) <= tolerance * m))


def agreement(first: Sequence[float] | np.ndarray, second: Sequence[float] | np.ndarray,
              tolerance: float = 0.10) -> float:
    """Share of pairs of measurement passes that agree within ``+-tolerance`` of their mean."""
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    return float(np.mean(np.abs(a - b) <= tolerance * (a + b) / 2))


def kendall_tau(predicted: Sequence[float] | np.ndarray, measured: Sequence[float] | np.ndarray) -> float:
    tau = stats.kendalltau(np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)).statistic
    return float(tau) if np.isfinite(tau) else 0.0
