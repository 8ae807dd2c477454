"""Head and neuron importance of the teacher, computed once and cached beside it."""

from __future__ import annotations

import json
import time
from pathlib import Path

from safetensors.torch import load_file, save_file

from autoprune.compress import Importance, compute_importance
from autoprune.data import TaskData, collate, encode, training_batches
from autoprune.estimate.cache import DiskCache, content_key
from autoprune.estimate.teacher import Teacher
from autoprune.estimate.training import torch_threads

IMPORTANCE_FILE = "importance.safetensors"


def prepare_importance(teacher: Teacher, data: TaskData, batches: int = 32, batch_size: int = 32,
                       max_seq_len: int = 64, seed: int = 0, cache: DiskCache | None = None,
                       threads: int | None = None) -> tuple[Importance, float]:
    """The teacher's importance scores (from the cache or computed) and the seconds spent.

    Scores come from :func:`autoprune.compress.compute_importance` (head-mask gradients and
    first-order Taylor scores) over ``batches`` seeded training batches; they depend only on
    the teacher and those batches, so the key is the teacher's key plus the batch recipe.
    """
    cache = cache or DiskCache()
    key = content_key({"kind": "importance", "teacher": teacher.key, "batches": batches,
                       "batch_size": batch_size, "max_seq_len": max_seq_len, "seed": seed,
                       "version": 1})

    def build(directory: Path) -> None:
        with torch_threads(threads):
            start = time.perf_counter()
            train = encode(data.train, teacher.tokenizer, max_seq_len)
            stream = training_batches(train, batch_size, seed)
            tokenized = (collate(train, next(stream)) for _ in range(batches))
            importance = compute_importance(teacher.model, tokenized, max_batches=batches)
            seconds = time.perf_counter() - start
        save_file({k: v.contiguous() for k, v in importance.to_state_dict().items()},
                  str(directory / IMPORTANCE_FILE))
        (directory / "info.json").write_text(json.dumps({"seconds": seconds, "batches": batches}))

    directory, _ = cache.get_or_build("importance", key, build)
    teacher.model.eval()
    seconds = json.loads((directory / "info.json").read_text())["seconds"]
    return Importance.from_state_dict(load_file(str(directory / IMPORTANCE_FILE))), seconds
