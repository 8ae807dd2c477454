"""Metrics as GLUE reports them, computed by scikit-learn and SciPy (not re-implemented).

Every metric takes ``(predictions, references)`` as arrays: class indices for classification,
floats for regression. Values are fractions (accuracy 0.89, not 89), as in GLUE's own code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from scipy import stats
from sklearn import metrics as skm

from autoprune.errors import DataError

MetricFn = Callable[[np.ndarray, np.ndarray], float]


def accuracy(predictions: np.ndarray, references: np.ndarray) -> float:
    return float(skm.accuracy_score(references, predictions))


def f1(predictions: np.ndarray, references: np.ndarray) -> float:
    """F1 of class 1 for binary tasks (MRPC, QQP), macro F1 when there are more classes."""
    classes = np.union1d(np.unique(references), np.unique(predictions))
    average = "binary" if set(classes.tolist()) <= {0, 1} else "macro"
    return float(skm.f1_score(references, predictions, average=average, zero_division=0.0))


def matthews(predictions: np.ndarray, references: np.ndarray) -> float:
    """Matthews correlation (CoLA); 0 when a constant predictor makes it undefined."""
    return float(skm.matthews_corrcoef(references, predictions))


def _correlation(fn: Callable[..., object], predictions: np.ndarray,
                 references: np.ndarray) -> float:
    # A constant prediction has no defined correlation; report 0 (no signal), not NaN, so
    # a degenerate candidate ranks last instead of poisoning comparisons.
    if np.ptp(predictions) == 0 or np.ptp(references) == 0:
        return 0.0
    return float(fn(predictions, references)[0])  # type: ignore[index]


def pearson(predictions: np.ndarray, references: np.ndarray) -> float:
    return _correlation(stats.pearsonr, predictions, references)


def spearman(predictions: np.ndarray, references: np.ndarray) -> float:
    return _correlation(stats.spearmanr, predictions, references)


METRICS: dict[str, MetricFn] = {
    "accuracy": accuracy,
    "f1": f1,
    "matthews": matthews,
    "pearson": pearson,
    "spearman": spearman,
}


def compute_metrics(names: Iterable[str], predictions: np.ndarray,
                    references: np.ndarray) -> dict[str, float]:
    """Every named metric on one set of predictions."""
    predictions = np.asarray(predictions)
    references = np.asarray(references)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if len(references) == 0:
        raise DataError("cannot score an empty dataset")
    result = {}
    for name in names:
        if name not in METRICS:
            raise DataError(f"unknown metric {name!r} (known: {', '.join(sorted(METRICS))})")
        result[name] = METRICS[name](predictions, references)
    return result
