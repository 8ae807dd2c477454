"""In-memory task data: raw texts and labels, before any tokenizer sees them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from autoprune.data.tasks import Task
from autoprune.errors import DataError


@dataclass(frozen=True)
class Split:
    """One split: one tuple of strings per example (one or two texts) and a label array.

    ``labels`` holds class indices (int64) for classification, floats (float32) for
    regression.
    """

    texts: tuple[tuple[str, ...], ...]
    labels: np.ndarray
    source: str = "<memory>"

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{len(self.texts)} texts for {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: np.ndarray | list[int]) -> Split:
        index = np.asarray(indices, dtype=np.int64)
        return Split(tuple(self.texts[i] for i in index), self.labels[index], self.source)

    def sample(self, n: int | None, seed: int) -> Split:
        """A seeded random subset of ``n`` examples (all of them, in order, when ``n`` is
        ``None`` or not smaller): files are often sorted, so the first ``n`` would be biased."""
        if n is None or n >= len(self):
            return self
        order = np.random.default_rng(seed).permutation(len(self))[:n]
        return self.subset(np.sort(order))

    def fingerprint(self) -> str:
        """A content hash of texts and labels: equal data gives an equal cache key."""
        digest = hashlib.sha256()
        for texts in self.texts:
            digest.update("\x1f".join(texts).encode())
            digest.update(b"\x1e")
        digest.update(np.ascontiguousarray(self.labels).tobytes())
        return digest.hexdigest()


@dataclass(frozen=True)
class TaskData:
    """A task with its training and development splits."""

    task: Task
    train: Split
    dev: Split

    def __post_init__(self) -> None:
        for name, split in (("train", self.train), ("dev", self.dev)):
            if len(split) == 0:
                raise DataError(f"{split.source}: the {name} split of task "
                                f"{self.task.name!r} is empty")

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        digest.update(repr((self.task.name, self.task.labels, self.task.main_metric)).encode())
        digest.update(self.train.fingerprint().encode())
        digest.update(self.dev.fingerprint().encode())
        return digest.hexdigest()
