"""``CheapFinetune``: a candidate's accuracy after a short distillation fine-tune.

The candidate is cut from the *teacher* (already tuned on the task) by the compression
engine, with sparsity masks and fake quantization in place, then trained for a given number
of steps to match the teacher and scored on the dev set (or a fixed subset of it).

Two choices make estimates comparable and resumable:

* every candidate sees the same seeded batch sequence, so differences between candidates
  come from their architectures, not from which examples they drew;
* the learning rate is constant after a short warm-up, and a checkpoint carries the random
  state that dropout draws from, so training k steps, saving, and resuming to n steps is the
  same run as training n steps at once: ASHA rungs resume candidates rather than retrain them.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from transformers import get_linear_schedule_with_warmup

from autoprune.compress import Importance, compress
from autoprune.data import Batch, TaskData, collate, encode, training_batches
from autoprune.errors import AutopruneError
from autoprune.estimate.base import Checkpoint, EstimateResult, Estimator
from autoprune.estimate.distill import distillation_loss, label_loss, layer_map
from autoprune.estimate.head import refit_head
from autoprune.estimate.teacher import Teacher
from autoprune.estimate.training import (
    evaluate,
    freeze_embeddings,
    make_optimizer,
    model_inputs,
    torch_threads,
)
from autoprune.space import Architecture


class CheckpointError(AutopruneError):
    """A checkpoint that does not belong to the candidate, or is ahead of the request."""


@dataclass(frozen=True)
class FinetuneRecipe:
    """How candidates are fine-tuned and scored (``EstimateSpec`` has the user-facing part).

    ``hidden_weight`` > 0 adds hidden-state distillation, which needs a teacher forward per
    step; with 0 (the default) the teacher's logits for the shared batch sequence are computed
    once per process and reused by every candidate. Measured on 12 SST-2 candidates (25 vs 200
    steps): Kendall tau 0.90 on logits alone, 0.89 with hidden states, and logits alone
    trained in 0.58x the time.
    """

    batch_size: int = 32
    lr: float = 5e-5
    warmup_steps: int = 10
    weight_decay: float = 0.01
    max_seq_len: int = 64
    eval_max_seq_len: int = 128
    eval_samples: int | None = None
    eval_batch_size: int = 64
    distill: bool = True
    temperature: float = 2.0
    hidden_weight: float = 0.0
    freeze_embeddings: bool = True
    quantize: Literal["none", "fake"] = "fake"
    # Candidates that drop layers get their classifier re-fitted to the teacher's logits on
    # the first ``head_probe_batches`` shared batches before training (``estimate/head.py``).
    refit_head: bool = False
    head_probe_batches: int = 16
    seed: int = 0

    @classmethod
    def from_spec(cls, estimate: Any, task: Any | None = None, **overrides: Any) -> FinetuneRecipe:
        """From an ``EstimateSpec`` (and the ``TaskSpec`` for the evaluation length)."""
        values = dict(batch_size=estimate.batch_size, lr=estimate.lr,
                      max_seq_len=estimate.max_seq_len, eval_samples=estimate.eval_samples,
                      distill=estimate.distill, temperature=estimate.temperature,
                      freeze_embeddings=estimate.freeze_embeddings,
                      seed=(estimate.seed if estimate.finetune_seed is None
                            else estimate.finetune_seed),
                      refit_head=estimate.refit_head,
                      eval_max_seq_len=getattr(task, "max_seq_len", 128))
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True)
class FinalPhase:
    """How a kept candidate trains past the search's fidelity (``autoprune export --steps``).

    The search trains at a constant learning rate so that ASHA rungs resume exactly; that is
    the wrong schedule for the model a user takes home. The final phase restarts the learning
    rate at ``lr`` and lets it decay linearly to 0 over the extra steps, and adds TinyBERT's
    hidden-state distillation with weight ``hidden_weight`` (one teacher forward per step, which
    the search avoids). ``benchmarks/export_recipe.py`` measures it against training on at the
    search's constant rate.
    """

    lr: float = 1e-4
    hidden_weight: float = 1.0
    # Experimental levers for a student above its teacher (benchmarks/final_phase_levers.py):
    # the gold labels' loss with this weight beside the distillation loss, and the last kept
    # layer distilled towards the teacher's last layer (``distill.layer_map``).
    label_weight: float = 0.0
    last_to_last: bool = False


class CandidateData:
    """The tokenized training stream and dev subset that every candidate shares."""

    def __init__(self, teacher: Teacher, data: TaskData, recipe: FinetuneRecipe) -> None:
        self.train = encode(data.train, teacher.tokenizer, recipe.max_seq_len)
        dev = data.dev.sample(recipe.eval_samples, recipe.seed)
        self.dev = encode(dev, teacher.tokenizer, recipe.eval_max_seq_len)
        self._batches: list[Batch] = []
        self._stream = training_batches(self.train, recipe.batch_size, recipe.seed)

    def batch(self, step: int) -> Batch:
        """The ``step``-th training batch (memoised: every candidate replays the same ones)."""
        while len(self._batches) <= step:
            self._batches.append(collate(self.train, next(self._stream)))
        return self._batches[step]


class CheapFinetune(Estimator):
    """Compress the teacher to ``arch``, distil for ``steps`` steps, score on dev."""

    def __init__(self, teacher: Teacher, data: TaskData, importance: Importance | None,
                 recipe: FinetuneRecipe,
                 checkpoint_dir: Path | None = None, threads: int | None = None) -> None:
        self.teacher = teacher
        self.task = data.task
        self.importance = importance
        self.recipe = recipe
        self.checkpoint_dir = checkpoint_dir
        self.threads = threads
        self.metric_name = data.task.main_metric
        self.shared = CandidateData(teacher, data, recipe)
        self._teacher_logits: dict[int, torch.Tensor] = {}

    # ---- building -----------------------------------------------------------------------
    def build(self, arch: Architecture) -> nn.Module:
        """The candidate, cut from the teacher (which stays untouched)."""
        student = compress(self.teacher.model, arch, self.importance, quantize=self.recipe.quantize)
        if self.recipe.freeze_embeddings:
            freeze_embeddings(student)
        return student

    # ---- one training step --------------------------------------------------------------
    def _teacher_outputs(self, step: int, batch: Batch, hidden: bool
                         ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        if not hidden and step in self._teacher_logits:
            return self._teacher_logits[step], None
        with torch.no_grad():
            out = self.teacher.model(**model_inputs(batch), output_hidden_states=hidden)
        if not hidden:
            self._teacher_logits[step] = out.logits
        return out.logits, (out.hidden_states if hidden else None)

    def loss(self, student: nn.Module, step: int, arch: Architecture,
             hidden_weight: float | None = None, final: FinalPhase | None = None
             ) -> torch.Tensor:
        """The training loss of ``student`` on the ``step``-th shared batch: as the export's
        final phase trains with ``final``, else as the search does (``hidden_weight``
        overrides either's)."""
        batch = self.shared.batch(step)
        if not self.recipe.distill:
            return student(**batch).loss
        weight = (hidden_weight if hidden_weight is not None
                  else final.hidden_weight if final is not None else self.recipe.hidden_weight)
        hidden = weight > 0
        teacher_logits, teacher_hidden = self._teacher_outputs(step, batch, hidden)
        out = student(**model_inputs(batch), output_hidden_states=hidden)
        loss = distillation_loss(
            out.logits, teacher_logits, temperature=self.recipe.temperature,
            regression=self.task.is_regression,
            student_hidden=out.hidden_states if hidden else None, teacher_hidden=teacher_hidden,
            pairs=layer_map(arch, final is not None and final.last_to_last),
            attention_mask=batch["attention_mask"], hidden_weight=weight)
        if final is not None and final.label_weight > 0:
            loss = loss + final.label_weight * label_loss(out.logits, batch["labels"],
                                                          self.task.is_regression)
        return loss

    def refits_head(self, arch: Architecture) -> bool:
        """Whether ``arch``'s classifier is re-fitted before training (``refit_head``): only a
        candidate that drops layers feeds the head another layer's output."""
        return self.recipe.refit_head and len(arch.kept_layers) < len(arch)

    def probe_head(self, student: nn.Module) -> bool:
        """Re-fit ``student``'s classifier to the teacher's logits on the first shared
        batches (the ones training starts with, so their teacher logits are reused)."""
        steps = range(self.recipe.head_probe_batches)
        batches = [self.shared.batch(step) for step in steps]
        targets = [self._teacher_outputs(step, batch, False)[0] for step, batch in zip(steps, batches)]
        return refit_head(student, batches, targets)

    def _optimizer(self, student: nn.Module) -> tuple[torch.optim.Optimizer, Any]:
        optimizer = make_optimizer(student, self.recipe.lr, self.recipe.weight_decay)
        warmup = max(self.recipe.warmup_steps, 1)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min(1.0, (s + 1) / warmup))
        return optimizer, schedule

    # ---- the estimate -------------------------------------------------------------------
    @property
    def finetuner(self) -> CheapFinetune:
        return self

    def evaluate(self, arch: Architecture, steps: int,
                 resume_from: Checkpoint | None = None) -> EstimateResult:
        return self.train(arch, steps, resume_from)[1]

    def train(self, arch: Architecture, steps: int, resume_from: Checkpoint | None = None, *,
              on_step: Callable[[int], None] | None = None, final: FinalPhase | None = None,
              score: bool = True) -> tuple[nn.Module, EstimateResult]:
        """:meth:`evaluate`, also handing back the trained student (``autoprune export``).

        The student still holds its sparsity masks and fake quantization, as scored;
        ``compress.finalize`` makes it deployable. ``on_step(step)`` is called after each
        training step (progress bars). ``final``: train the steps after ``resume_from`` as the
        :class:`FinalPhase` says instead of at the search's constant rate (its checkpoint is
        named apart, so that no search resumes from it). ``score=False`` skips the dev set (the
        metric is NaN): for a stage whose only use is its checkpoint.
        """
        with torch_threads(self.threads):
            return self._train(arch, steps, resume_from, on_step, final, score)

    def _train(self, arch: Architecture, steps: int, resume_from: Checkpoint | None,
               on_step: Callable[[int], None] | None = None, final: FinalPhase | None = None,
               score: bool = True) -> tuple[nn.Module, EstimateResult]:
        start = time.perf_counter()
        torch.manual_seed(self.recipe.seed)
        student = self.build(arch)
        optimizer, schedule = self._optimizer(student)
        first = 0
        if resume_from is not None:
            first = self._restore(resume_from, arch, steps, student, optimizer, schedule)
        elif self.refits_head(arch):
            self.probe_head(student)
        if final is not None:
            schedule = _linear_decay(optimizer, final.lr, steps - first)
        built = time.perf_counter()
        student.train()
        for step in range(first, steps):
            loss = self.loss(student, step, arch, final=final)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            if on_step is not None:
                on_step(step + 1)
        trained = time.perf_counter()
        metrics = (evaluate(student, self.task, self.shared.dev, self.recipe.eval_batch_size)
                   if score else {self.metric_name: math.nan})
        scored = time.perf_counter()
        checkpoint = (self._save(arch, steps, student, optimizer, schedule, final is not None)
                      if steps > 0 else None)
        details = {"build_s": built - start, "train_s": trained - built, "eval_s": scored - trained,
                   "steps_run": float(steps - first),
                   "eval_samples": float(len(self.shared.dev)) if score else 0.0, **metrics}
        return student, EstimateResult(self.metric_name, metrics[self.metric_name], steps,
                                       time.perf_counter() - start,
                                       steps * self.recipe.batch_size, checkpoint, details)

    # ---- checkpoints --------------------------------------------------------------------
    def _save(self, arch: Architecture, steps: int, student: nn.Module,
              optimizer: torch.optim.Optimizer, schedule: Any, final: bool = False) -> Path | None:
        if self.checkpoint_dir is None:
            return None
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        path = self.checkpoint_dir / f"{arch.hash}-{steps}{'-final' if final else ''}.pt"
        # Frozen parameters (the embeddings) equal the teacher's: rebuilt, not stored.
        frozen = _frozen_names(student)
        model_state = {k: v for k, v in student.state_dict().items() if k not in frozen}
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        torch.save({"architecture": arch.to_json(), "step": steps,
                    "model": model_state, "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(), "rng": torch.get_rng_state()}, partial)
        partial.replace(path)  # atomic: a parallel reader never sees half a file
        return path

    def _restore(self, path: Checkpoint, arch: Architecture, steps: int, student: nn.Module,
                 optimizer: torch.optim.Optimizer, schedule: Any) -> int:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        if state["architecture"] != arch.to_json():
            raise CheckpointError(f"{path}: checkpoint of another architecture")
        if state["step"] > steps:
            raise CheckpointError(f"{path}: checkpoint at step {state['step']} is past {steps}")
        missing, unexpected = student.load_state_dict(state["model"], strict=False)
        if unexpected or set(missing) - _frozen_names(student):
            raise CheckpointError(f"{path}: checkpoint does not match the candidate's weights")
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        # Dropout goes on from where the lower rung stopped; without this it would replay the
        # stream from the seed, which moved a 100-step MiniLM estimate by about a point against
        # the straight run (benchmarks/selection_fidelity.py). Checkpoints written before the
        # state was saved resume from the seed, as they did.
        if "rng" in state:
            torch.set_rng_state(state["rng"])
        return int(state["step"])


def _linear_decay(optimizer: torch.optim.Optimizer, lr: float, steps: int) -> Any:
    """From ``lr`` now to 0 after ``steps`` more optimizer steps (no warm-up: the student is
    already trained at the search's rate). The restored optimizer carries the search's rate as
    its schedule's base, so the base is reset first."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] = lr
    return get_linear_schedule_with_warmup(optimizer, 0, max(1, steps))


def _frozen_names(model: nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if not p.requires_grad}
