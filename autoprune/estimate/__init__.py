"""Accuracy estimation: the cached teacher and importance scores, the cheap distillation
fine-tune, a no-training proxy, and a null estimator for overhead measurements."""

from autoprune.estimate.base import Checkpoint, EstimateResult, Estimator, NullEstimator
from autoprune.estimate.cache import DiskCache, content_key, default_cache_root
from autoprune.estimate.distill import distillation_loss, layer_map
from autoprune.estimate.factory import build_estimator
from autoprune.estimate.finetune import (
    CheapFinetune,
    CheckpointError,
    FinalPhase,
    FinetuneRecipe,
)
from autoprune.estimate.importance import prepare_importance
from autoprune.estimate.proxy import ProxyEstimator
from autoprune.estimate.teacher import Teacher, TeacherRecipe, prepare_teacher

__all__ = [
    "CheapFinetune", "Checkpoint", "CheckpointError", "DiskCache", "EstimateResult",
    "Estimator", "FinalPhase", "FinetuneRecipe", "NullEstimator", "ProxyEstimator", "Teacher",
    "TeacherRecipe", "build_estimator", "content_key", "default_cache_root",
    "distillation_loss", "layer_map", "prepare_importance", "prepare_teacher",
]
