"""A binary teacher's decision threshold, chosen on training data it was not fitted to.

Cross-entropy trains the logits to be good probabilities, and argmax over them maximises the
expected accuracy. Matthews correlation (CoLA) and F1 (MRPC, QQP) score the classes
differently from accuracy, so the threshold on ``logit[1] - logit[0]`` that maximises them is
rarely 0. The threshold is chosen on a held-out slice of the training split (never on dev,
which would be tuning on the test set) and then baked into the classifier's bias, so the
teacher, the students built from it and every exported model predict with it by plain argmax.

Measured on CoLA with MiniLM (2026-11-28, AMD EPYC Zen 3), on 90% of train, 10% held out:
the held-out threshold raised the final dev Matthews in four runs of five, from 0.322 to 0.353
and from 0.266 to 0.289 (``benchmarks/cola_teacher.py calibrated``, seeds 0 and 1, 2,000
steps), and from 0.259 to 0.313, 0.312 to 0.296 and 0.296 to 0.322 (``prepare_teacher`` with
``calibrate=0.1``, seeds 0-2, 1,924 steps: ``benchmarks/estimate_fidelity.py --calibrate
cola``; mean 0.310 against 0.300 for the default teacher on all of train). It does not lift a
weak model past a strong one: the default teacher scores 0.339 at argmax at seed 0. Nor is
it a gain at every checkpoint: at mid-training checkpoints, whose thresholds swung between
-3.6 and +4.0, it lowered dev Matthews about as often as it raised it; the teacher is the
last one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from autoprune.data import Split, Task
from autoprune.data.metrics import METRICS
from autoprune.errors import ModelError, SpecError


@dataclass(frozen=True)
class Calibration:
    """Class 1 is predicted when ``logit[1] - logit[0] > offset``."""

    offset: float
    metric: str
    holdout_size: int
    holdout_argmax: float      # the metric on the held-out slice at offset 0 (argmax)
    holdout_calibrated: float  # and at ``offset``
    # The teacher's dev metric at argmax, before the threshold was applied: a record of what
    # calibrating changed, filled in after the threshold is chosen (never an input to it).
    dev_argmax: float | None = None


def check_calibratable(task: Task, fraction: float | None) -> None:
    """A threshold exists only between two classes; refuse anything else as bad input."""
    if fraction is None:
        return
    if task.is_regression or task.num_labels != 2:
        kind = "a regression" if task.is_regression else f"a {task.num_labels}-way"
        raise SpecError(f"estimate.teacher_calibrate: task {task.name!r} is {kind} task; a "
                        "decision threshold is calibrated only for two classes")


def split_holdout(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """``split`` cut at random (seeded) into the part trained on and the held-out part."""
    order = np.random.default_rng(seed).permutation(len(split))
    cut = max(1, round(fraction * len(split)))
    if cut >= len(split):
        raise SpecError(f"estimate.teacher_calibrate: holding out {fraction} of "
                        f"{len(split)} training examples leaves none to train on")
    return split.subset(np.sort(order[cut:])), split.subset(np.sort(order[:cut]))


def best_offset(margins: np.ndarray, labels: np.ndarray, metric: str) -> tuple[float, float]:
    """The threshold on ``margins`` (``logit[1] - logit[0]``) with the best ``metric`` on
    ``labels``, and that value. Candidates: 0 and the midpoints between neighbouring margins;
    among equally good ones the nearest to 0 wins, so argmax stands unless something beats it."""
    score = METRICS[metric]
    ordered = np.unique(margins)
    candidates = np.concatenate([[0.0], (ordered[1:] + ordered[:-1]) / 2])
    best_value, best_threshold = -np.inf, 0.0
    for threshold in candidates:
        value = score((margins > threshold).astype(np.int64), labels)
        if value > best_value or (value == best_value and abs(threshold) < abs(best_threshold)):
            best_value, best_threshold = value, float(threshold)
    return best_threshold, float(best_value)


def calibrate(logits: np.ndarray, labels: np.ndarray, metric: str) -> Calibration:
    """The calibration of a binary classifier from its held-out ``logits``."""
    margins = logits[:, 1] - logits[:, 0]
    offset, calibrated = best_offset(margins, labels, metric)
    argmax = METRICS[metric]((margins > 0).astype(np.int64), labels)
    return Calibration(offset=round(offset, 6), metric=metric, holdout_size=len(labels),
                       holdout_argmax=round(float(argmax), 6),
                       holdout_calibrated=round(calibrated, 6))


def apply_offset(model: nn.Module, offset: float) -> None:
    """Bake the threshold into the classifier: argmax then predicts class 1 exactly when
    ``logit[1] - logit[0] > offset`` (up to ties at the threshold itself)."""
    classifier = getattr(model, "classifier", None)
    if not isinstance(classifier, nn.Linear) or classifier.bias is None:
        raise ModelError(f"{type(model).__name__}: no linear classifier with a bias to "
                         "calibrate the decision threshold on")
    with torch.no_grad():
        classifier.bias[1] -= offset
