"""``build_estimator``: a job spec in, a ready estimator out (teacher and scores prepared)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from autoprune.data import load_task
from autoprune.estimate.base import Estimator, NullEstimator
from autoprune.estimate.cache import DiskCache, content_key
from autoprune.estimate.finetune import CheapFinetune, FinetuneRecipe
from autoprune.estimate.importance import prepare_importance
from autoprune.estimate.proxy import ProxyEstimator
from autoprune.estimate.teacher import TeacherRecipe, prepare_teacher


def build_estimator(spec: Any, *, threads: int | None = None, cache: DiskCache | None = None,
                    checkpoint_dir: Path | None = None, progress: bool = True,
                    **recipe_overrides: Any) -> Estimator:
    """The estimator a ``JobSpec`` asks for (``spec.estimate.kind``).

    The teacher and the importance scores are prepared here: trained on the first call for a
    given (model, data, recipe, seed), loaded from the disk cache on every later call, which
    is what a worker process does when it builds its own estimator. Checkpoints (for
    resuming rungs) go to ``checkpoint_dir``, by default under the cache root; whoever
    consumes a result may delete its checkpoint.
    """
    estimate = spec.estimate
    if estimate.kind == "null":
        return NullEstimator(delay_s=estimate.null_seconds)
    data = load_task(spec.task, seed=estimate.seed)
    cache = cache or DiskCache()
    teacher = prepare_teacher(spec.model, data, TeacherRecipe.from_spec(estimate, spec.task),
                              seed=estimate.seed, cache=cache, threads=threads, progress=progress)
    importance, _ = prepare_importance(teacher, data, batch_size=estimate.batch_size,
                                       max_seq_len=estimate.max_seq_len, seed=estimate.seed,
                                       cache=cache, threads=threads)
    recipe = FinetuneRecipe.from_spec(estimate, spec.task, **recipe_overrides)
    if checkpoint_dir is None:
        # Rungs resume from checkpoints; without a directory every rung would start over.
        checkpoint_dir = cache.root / "checkpoints" / content_key(
            {"teacher": teacher.key, "recipe": asdict(recipe)})[:16]
    finetune = CheapFinetune(teacher, data, importance, recipe, checkpoint_dir=checkpoint_dir,
                             threads=threads)
    return ProxyEstimator(finetune) if estimate.kind == "proxy" else finetune
