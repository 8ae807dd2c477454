"""The pieces every fine-tune shares: threads, freezing, optimiser, prediction, scoring."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from autoprune.data import Batch, Encoded, Task, collate, compute_metrics, evaluation_batches


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` intra-op threads, then restore. Two torch processes that each
    use every core on a 2-core machine run about 10x slower (MEASUREMENTS.md), so workers
    pass ``cores // workers``."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def freeze_embeddings(model: nn.Module) -> int:
    """Freeze the token/position/type embeddings; returns the parameters frozen.

    They hold most of a small encoder's parameters (MiniLM-L6: 12M of 22M), change little in
    fine-tuning, and their gradient (a sparse scatter into a 30k-row table, then AdamW over
    all of it) is a large share of a step on CPU.
    """
    embeddings = getattr(getattr(model, "bert", model), "embeddings", None)
    if embeddings is None:
        return 0
    frozen = 0
    for parameter in embeddings.parameters():
        if parameter.requires_grad:
            parameter.requires_grad_(False)
            frozen += parameter.numel()
    return frozen


def takes_weight_decay(name: str, parameter: nn.Parameter) -> bool:
    """Whether AdamW decays this parameter: not biases and LayerNorm weights (the BERT recipe)."""
    return parameter.ndim >= 2 and "LayerNorm" not in name


def make_optimizer(model: nn.Module, lr: float, weight_decay: float = 0.01) -> torch.optim.AdamW:
    """AdamW without decay on biases and LayerNorm weights (the BERT recipe)."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (decay if takes_weight_decay(name, parameter) else no_decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)


def model_inputs(batch: Batch) -> Batch:
    """A batch without its labels (so the model does not compute its own loss)."""
    return {k: v for k, v in batch.items() if k != "labels"}


@torch.no_grad()
def predict(model: nn.Module, data: Encoded, batch_size: int = 64) -> np.ndarray:
    """Logits for every example, in the data's order."""
    was_training = model.training
    model.eval()
    out: np.ndarray | None = None
    for index in evaluation_batches(data, batch_size):
        logits = model(**model_inputs(collate(data, index))).logits.float().numpy()
        if out is None:
            out = np.zeros((len(data), logits.shape[-1]), dtype=np.float32)
        out[index] = logits
    model.train(was_training)
    assert out is not None
    return out


def score(task: Task, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Every metric of ``task`` on model outputs."""
    predictions = logits[:, 0] if task.is_regression else logits.argmax(axis=-1)
    return compute_metrics(task.metrics, predictions, labels)


def evaluate(model: nn.Module, task: Task, data: Encoded, batch_size: int = 64) -> dict[str, float]:
    return score(task, predict(model, data, batch_size), data.labels)
