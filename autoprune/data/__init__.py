"""Tasks: readers (GLUE TSV, Hugging Face ``datasets``, user CSV/JSONL), metrics, batching."""

from autoprune.data.batching import (
    Batch,
    Encoded,
    bucketed_batches,
    collate,
    encode,
    evaluation_batches,
    training_batches,
)
from autoprune.data.dataset import Split, TaskData
from autoprune.data.loading import load_task
from autoprune.data.metrics import METRICS, compute_metrics
from autoprune.data.tasks import GLUE_TASKS, GlueLayout, Task, glue_task

__all__ = [
    "GLUE_TASKS", "METRICS", "Batch", "Encoded", "GlueLayout", "Split", "Task", "TaskData",
    "bucketed_batches", "collate", "compute_metrics", "encode", "evaluation_batches",
    "glue_task", "load_task", "training_batches",
]
