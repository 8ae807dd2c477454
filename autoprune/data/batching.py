"""Tokenization once, then dynamically padded, length-bucketed batches.

Sentences in GLUE vary from 2 to 60+ tokens; padding every batch to a fixed length wastes
most of a step on pad tokens. Batches are padded to their own longest example, and
training batches are drawn from length buckets (sort within chunks of ``chunk`` batches,
shuffle the batches) so that their examples have similar lengths, while keeping enough
randomness for SGD. Everything is seeded: the same seed gives the same batch sequence, which
is what lets a candidate resume from a checkpoint at step k as if it had never stopped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from autoprune.data.dataset import Split

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Encoded:
    """A tokenized split: unpadded token ids per example, their lengths and labels."""

    input_ids: tuple[np.ndarray, ...]
    token_type_ids: tuple[np.ndarray, ...]
    labels: np.ndarray
    pad_id: int

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64,
                           count=len(self.input_ids))

    def subset(self, indices: np.ndarray) -> Encoded:
        return Encoded(tuple(self.input_ids[i] for i in indices),
                       tuple(self.token_type_ids[i] for i in indices),
                       self.labels[indices], self.pad_id)


def encode(split: Split, tokenizer: Any, max_length: int, batch_size: int = 2048) -> Encoded:
    """Tokenize every example once (truncated to ``max_length``, not padded)."""
    input_ids: list[np.ndarray] = []
    token_types: list[np.ndarray] = []
    pair = len(split.texts[0]) == 2 if len(split) else False
    for start in range(0, len(split), batch_size):
        chunk = split.texts[start:start + batch_size]
        first = [t[0] for t in chunk]
        second = [t[1] for t in chunk] if pair else None
        out = tokenizer(first, second, truncation=True, max_length=max_length,
                        return_token_type_ids=True, return_attention_mask=False)
        input_ids += [np.asarray(ids, dtype=np.int64) for ids in out["input_ids"]]
        token_types += [np.asarray(t, dtype=np.int64) for t in out["token_type_ids"]]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return Encoded(tuple(input_ids), tuple(token_types), split.labels, int(pad_id))


def collate(data: Encoded, indices: np.ndarray | list[int]) -> Batch:
    """A batch padded to its own longest example, with ``labels``."""
    index = np.asarray(indices, dtype=np.int64)
    width = max(len(data.input_ids[i]) for i in index)
    ids = np.full((len(index), width), data.pad_id, dtype=np.int64)
    types = np.zeros((len(index), width), dtype=np.int64)
    mask = np.zeros((len(index), width), dtype=np.int64)
    for row, i in enumerate(index):
        n = len(data.input_ids[i])
        ids[row, :n] = data.input_ids[i]
        types[row, :n] = data.token_type_ids[i]
        mask[row, :n] = 1
    return {
        "input_ids": torch.from_numpy(ids),
        "token_type_ids": torch.from_numpy(types),
        "attention_mask": torch.from_numpy(mask),
        "labels": torch.from_numpy(data.labels[index]),
    }


def bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                     chunk: int = 50) -> list[np.ndarray]:
    """One epoch of index batches: shuffle, sort each chunk of ``chunk`` batches by length,
    cut into batches, shuffle the batches."""
    order = rng.permutation(len(lengths))
    span = batch_size * chunk
    batches: list[np.ndarray] = []
    for start in range(0, len(order), span):
        part = order[start:start + span]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def training_batches(data: Encoded, batch_size: int, seed: int, start_step: int = 0,
                     chunk: int = 50) -> Iterator[np.ndarray]:
    """An endless, seeded stream of index batches (epoch after epoch), from ``start_step``.

    Skipping to ``start_step`` replays the index arithmetic only (no tokenization, no
    model), so resuming is cheap and exact.
    """
    epoch = 0
    step = 0
    while True:
        rng = np.random.default_rng([seed, epoch])
        for batch in bucketed_batches(data.lengths, batch_size, rng, chunk):
            if step >= start_step:
                yield batch
            step += 1
        epoch += 1


def evaluation_batches(data: Encoded, batch_size: int) -> Iterator[np.ndarray]:
    """Every example once, sorted by length (least padding); callers restore the order."""
    order = np.argsort(data.lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]
