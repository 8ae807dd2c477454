"""Metrics against scikit-learn/SciPy and against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from autoprune.data import compute_metrics
from autoprune.data.metrics import accuracy, f1, matthews, pearson, spearman
from autoprune.errors import DataError

PRED = np.array([1, 0, 1, 1, 0, 1, 0, 0, 1, 1])
GOLD = np.array([1, 0, 0, 1, 0, 1, 1, 0, 1, 0])


def test_classification_metrics_by_hand() -> None:
    # tp=4 (0,3,5,8) fp=2 (2,9) fn=1 (6) tn=3 (1,4,7)
    assert accuracy(PRED, GOLD) == pytest.approx(0.7)
    assert f1(PRED, GOLD) == pytest.approx(2 * 4 / (2 * 4 + 2 + 1))
    mcc = (4 * 3 - 2 * 1) / np.sqrt((4 + 2) * (4 + 1) * (3 + 2) * (3 + 1))
    assert matthews(PRED, GOLD) == pytest.approx(mcc)


def test_classification_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    pred, gold = rng.integers(0, 2, 500), rng.integers(0, 2, 500)
    assert accuracy(pred, gold) == pytest.approx(skm.accuracy_score(gold, pred))
    assert f1(pred, gold) == pytest.approx(skm.f1_score(gold, pred))
    assert matthews(pred, gold) == pytest.approx(skm.matthews_corrcoef(gold, pred))
    pred3, gold3 = rng.integers(0, 3, 300), rng.integers(0, 3, 300)
    assert f1(pred3, gold3) == pytest.approx(skm.f1_score(gold3, pred3, average="macro"))


def test_correlations_match_scipy_and_degenerate_cases() -> None:
    rng = np.random.default_rng(1)
    gold = rng.uniform(0, 5, 200)
    pred = gold + rng.normal(0, 1, 200)
    assert pearson(pred, gold) == pytest.approx(stats.pearsonr(pred, gold)[0])
    assert spearman(pred, gold) == pytest.approx(stats.spearmanr(pred, gold)[0])
    assert spearman(np.exp(gold), gold) == pytest.approx(1.0)  # rank-based: scale-free
    assert pearson(np.full(200, 2.5), gold) == 0.0  # constant predictions carry no signal


def test_compute_metrics_checks_its_input() -> None:
    assert compute_metrics(["accuracy", "f1"], PRED, GOLD) == {
        "accuracy": pytest.approx(0.7), "f1": pytest.approx(8 / 11)}
    with pytest.raises(DataError, match="unknown metric 'bleu'"):
        compute_metrics(["bleu"], PRED, GOLD)
    with pytest.raises(DataError, match="empty"):
        compute_metrics(["accuracy"], np.array([]), np.array([]))
