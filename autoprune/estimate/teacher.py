"""The teacher: the dense base model fine-tuned on the task once, cached on disk.

Every candidate is built from the teacher (so it starts from task-tuned weights, which is
what makes a few hundred steps of fine-tuning informative) and distils from it. The cache
key covers the base model's files, the task data's content, the recipe and the seed, so a
second job on the same inputs loads the teacher in seconds.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from tqdm.auto import tqdm
from transformers import (
    AutoConfig,
    AutoTokenizer,
    BertForSequenceClassification,
    get_linear_schedule_with_warmup,
)

from autoprune.data import Encoded, Split, Task, TaskData, collate, encode, training_batches
from autoprune.data.synthetic import (
    acceptable_sentences,
    read_sentences,
    synthetic_acceptability,
)
from autoprune.errors import ModelError, SpecError
from autoprune.estimate.cache import DiskCache, content_key, model_fingerprint
from autoprune.estimate.calibrate import (
    Calibration,
    apply_offset,
    calibrate,
    check_calibratable,
    split_holdout,
)
from autoprune.estimate.training import (
    evaluate,
    freeze_embeddings,
    make_optimizer,
    predict,
    torch_threads,
)
from autoprune.models import load_base, load_tokenizer, resolve_model_path

TEACHER_FILE = "teacher.json"


@dataclass(frozen=True)
class TeacherRecipe:
    """How the teacher is fine-tuned.

    ``steps=None`` trains ``epochs`` passes over the training set, capped at ``max_steps``
    (SST-2's 67k sentences would otherwise take an hour on 2 cores). Defaults follow the
    MiniLM measurements in MEASUREMENTS.md: lr 1e-4, batch 32, length 64, embeddings frozen.
    Measured with MiniLM-L6 (dev): SST-2 2,000 steps 89.8% accuracy; MRPC 344 steps (3
    epochs) F1 0.861; CoLA 802 steps (3 epochs) Matthews 0.276, 2,000 steps 0.339: hence 8
    epochs, so small tasks also get about 2,000 steps.
    """

    steps: int | None = None
    epochs: float = 8.0
    max_steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-4
    warmup: float = 0.06
    weight_decay: float = 0.01
    max_seq_len: int = 64
    eval_max_seq_len: int = 128
    eval_batch_size: int = 64
    freeze_embeddings: bool = True
    # From this fraction of the steps on, the teacher is the running mean of the weights
    # (stochastic weight averaging, Izmailov et al. 2018), tried because CoLA's dev Matthews
    # moves by 3-6 points between checkpoints 250 steps apart. Measured on CoLA (MiniLM,
    # default recipe, seed 0): 0.307 averaged over the second half against 0.339 for the last
    # weights (benchmarks/cola_teacher.py ``average``), so no job spec exposes it. None: the
    # last weights.
    average_from: float | None = None
    # Binary tasks: hold out this fraction of train, train on the rest, and bake into the
    # classifier the decision threshold that maximises the task's main metric on the held-out
    # part (autoprune/estimate/calibrate.py; Matthews and F1 are not maximised by argmax).
    # None: all of train, argmax.
    calibrate: float | None = None
    # Binary single-sentence tasks (CoLA): first this many steps on synthetic acceptability
    # (autoprune/data/synthetic.py: the task's class-1 training sentences, and those of
    # ``synthetic_text``, each beside a copy broken by one edit), then the task's fine-tune
    # from there. None: straight to the task.
    synthetic_steps: int | None = None
    # More grammatical sentences for that stage: GLUE task directories (their train.tsv) or
    # text files, one sentence per line. Their content, not their paths, enters the cache key.
    synthetic_text: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.average_from is not None and not 0.0 <= self.average_from < 1.0:
            raise ValueError(f"average_from: {self.average_from} is not in [0, 1)")
        if self.calibrate is not None and not 0.0 < self.calibrate < 0.5:
            raise ValueError(f"calibrate: {self.calibrate} is not in (0, 0.5)")
        if self.synthetic_steps is not None and self.synthetic_steps < 1:
            raise ValueError(f"synthetic_steps: {self.synthetic_steps} is not >= 1")
        if self.synthetic_text and self.synthetic_steps is None:
            raise ValueError("synthetic_text: needs synthetic_steps")

    def resolve_steps(self, train_size: int) -> int:
        if self.steps is not None:
            return self.steps
        return max(1, min(self.max_steps, math.ceil(self.epochs * train_size / self.batch_size)))

    @classmethod
    def from_spec(cls, estimate: Any, task: Any | None = None) -> TeacherRecipe:
        """From an ``EstimateSpec`` (and the ``TaskSpec`` for the evaluation length)."""
        return cls(steps=estimate.teacher_steps, batch_size=estimate.batch_size,
                   lr=estimate.teacher_lr, max_seq_len=estimate.max_seq_len,
                   eval_max_seq_len=getattr(task, "max_seq_len", 128),
                   freeze_embeddings=estimate.freeze_embeddings,
                   calibrate=estimate.teacher_calibrate,
                   synthetic_steps=estimate.teacher_synthetic_steps,
                   synthetic_text=tuple(str(p) for p in estimate.teacher_synthetic_text))


@dataclass
class Teacher:
    """A fine-tuned dense model with its dev metrics and what it cost."""

    model: nn.Module
    tokenizer: Any
    task: Task
    metrics: dict[str, float]
    seconds: float
    steps: int
    directory: Path
    key: str
    cached: bool = False
    calibration: dict[str, Any] | None = None  # see autoprune/estimate/calibrate.py
    synthetic: dict[str, Any] | None = None  # the synthetic acceptability stage, if any

    @property
    def metric(self) -> float:
        """The value of the task's main metric on the dev set."""
        return self.metrics[self.task.main_metric]

    @classmethod
    def load(cls, directory: Path, task: Task, cached: bool = True) -> Teacher:
        info = json.loads((directory / TEACHER_FILE).read_text())
        model = BertForSequenceClassification.from_pretrained(directory)
        if int(model.config.num_labels) != task.num_labels:
            raise ModelError(f"{directory}: teacher has {model.config.num_labels} outputs, "
                             f"task {task.name!r} needs {task.num_labels}")
        model.eval()
        tokenizer = AutoTokenizer.from_pretrained(directory)
        return cls(model, tokenizer, task, info["metrics"], info["seconds"], info["steps"],
                   directory, info["key"], cached, info.get("calibration"),
                   info.get("synthetic"))


# Recipe fields added after version 1 of the key enter it only when set, so that teachers
# cached before they existed keep their keys.
_LATER_FIELDS = ("average_from", "calibrate", "synthetic_steps")


def teacher_key(model_id: str, data: TaskData, recipe: TeacherRecipe, seed: int,
                synthetic_text: Sequence[str] = ()) -> str:
    """``synthetic_text``: the sentences read from ``recipe.synthetic_text``, which enter the
    key in place of their paths."""
    fields = {name: value for name, value in asdict(recipe).items()
              if not (name in _LATER_FIELDS and value is None) and name != "synthetic_text"}
    content: dict[str, Any] = {"kind": "teacher", "model": model_id, "data": data.fingerprint(),
                               "recipe": fields, "seed": seed, "version": 1}
    if synthetic_text:
        content["synthetic_text"] = hashlib.sha256(
            "\x1e".join(synthetic_text).encode()).hexdigest()
    return content_key(content)


StepCallback = Callable[[int, nn.Module, nn.Module | None], None]


def fine_tune(model: nn.Module, train: Encoded, recipe: TeacherRecipe, steps: int, seed: int,
              progress: bool = True, description: str = "teacher",
              on_step: StepCallback | None = None) -> None:
    """Plain supervised fine-tuning (the model's own CE/MSE loss) for ``steps`` steps.

    With ``recipe.average_from``, ``model`` ends up holding the mean of its weights over the
    steps from that fraction on. ``on_step(step, model, averaged)`` is called after every
    step (``averaged``: the running mean so far, or None); it may evaluate either model, and
    must leave them in train mode.
    """
    torch.manual_seed(seed)
    if recipe.freeze_embeddings:
        freeze_embeddings(model)
    optimizer = make_optimizer(model, recipe.lr, recipe.weight_decay)
    schedule = get_linear_schedule_with_warmup(optimizer, int(recipe.warmup * steps), steps)
    first_averaged = None if recipe.average_from is None else int(recipe.average_from * steps) + 1
    averaged: AveragedModel | None = None
    model.train()
    batches = training_batches(train, recipe.batch_size, seed)
    with tqdm(total=steps, desc=description, disable=not progress, unit="step") as bar:
        for step in range(1, steps + 1):
            loss = model(**collate(train, next(batches))).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            if first_averaged is not None and step >= first_averaged:
                if averaged is None:
                    averaged = AveragedModel(model)
                averaged.update_parameters(model)  # the first call copies, later ones average
            if on_step is not None:
                on_step(step, model, None if averaged is None else averaged.module)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            bar.update()
    if averaged is not None:
        model.load_state_dict(averaged.module.state_dict())
    model.eval()


def check_head_fits(model_name: str, task: Task) -> None:
    """A checkpoint that already has a sequence-classification head must fit the task.

    Hugging Face would silently re-initialise a mismatched head (a 3-way MNLI model asked for
    SST-2's 2 labels); a user who passes a fine-tuned model almost certainly meant its head,
    so that is bad input, not something to paper over. A bare encoder (no head) always fits.
    """
    try:
        config = AutoConfig.from_pretrained(resolve_model_path(model_name))
    except (OSError, ValueError):
        return  # load_base reports unloadable models with its own message
    heads = [a for a in (config.architectures or []) if a.endswith("ForSequenceClassification")]
    if heads and int(config.num_labels) != task.num_labels:
        raise ModelError(f"model {model_name!r}: its classification head has "
                         f"{config.num_labels} outputs, task {task.name!r} needs {task.num_labels}")


def check_synthetic(data: TaskData) -> None:
    """Synthetic acceptability teaches class 1 as "grammatical": only binary tasks on single
    sentences (CoLA) mean that; anything else is bad input."""
    task = data.task
    where = f"estimate.teacher_synthetic_steps: task {task.name!r}"
    if task.is_regression or task.num_labels != 2:
        kind = "a regression" if task.is_regression else f"a {task.num_labels}-way"
        raise SpecError(f"{where} is {kind} task; synthetic acceptability needs two classes "
                        "(class 1: acceptable)")
    if any(len(texts) != 1 for texts in data.train.texts):
        raise SpecError(f"{where} has sentence pairs; synthetic acceptability is for single "
                        "sentences")


def synthetic_stage(model: nn.Module, tokenizer: Any, task: Task, train: Split,
                    extra_sentences: Sequence[str], dev: Encoded, recipe: TeacherRecipe,
                    seed: int, progress: bool) -> dict[str, Any]:
    """Fine-tune ``model`` on synthetic acceptability (the class-1 sentences of ``train`` and
    ``extra_sentences``, each beside a broken copy) for ``recipe.synthetic_steps`` steps with
    the recipe's optimiser and schedule; what it scores on dev before any task label is
    returned with the example count. The classifier head is kept for the task's fine-tune:
    class 1 means acceptable in both."""
    assert recipe.synthetic_steps is not None
    split = synthetic_acceptability([*acceptable_sentences(train), *extra_sentences], seed)
    fine_tune(model, encode(split, tokenizer, recipe.max_seq_len),
              replace(recipe, average_from=None), recipe.synthetic_steps, seed + 1, progress,
              f"teacher {task.name} (synthetic)")
    scored = evaluate(model, task, dev, recipe.eval_batch_size)
    return {"steps": recipe.synthetic_steps, "examples": len(split),
            "extra_sentences": len(extra_sentences),
            "dev": {k: round(v, 6) for k, v in scored.items()}}


def prepare_teacher(model_name: str, data: TaskData, recipe: TeacherRecipe | None = None,
                    seed: int = 0, cache: DiskCache | None = None, threads: int | None = None,
                    progress: bool = True, on_step: StepCallback | None = None) -> Teacher:
    """The teacher for ``(model, data, recipe, seed)``: from the cache, or trained and cached.

    ``model_name`` is anything :func:`autoprune.models.load_base` accepts. ``on_step``: see
    :func:`fine_tune` (called only when the teacher is trained, not when it is loaded).
    """
    recipe = recipe or TeacherRecipe()
    cache = cache or DiskCache()
    check_head_fits(model_name, data.task)
    check_calibratable(data.task, recipe.calibrate)
    extra_sentences: list[str] = []
    if recipe.synthetic_steps is not None:
        check_synthetic(data)
        for path in recipe.synthetic_text:
            extra_sentences += read_sentences(Path(path))
    key = teacher_key(model_fingerprint(resolve_model_path(model_name)), data, recipe, seed,
                      extra_sentences)

    def build(directory: Path) -> None:
        with torch_threads(threads):
            start = time.perf_counter()
            tokenizer = load_tokenizer(model_name)
            torch.manual_seed(seed)  # the fresh classifier head
            model = load_base(model_name, data.task.num_labels)
            train, holdout = data.train, None
            if recipe.calibrate is not None:
                train, holdout = split_holdout(data.train, recipe.calibrate, seed)
            dev = encode(data.dev, tokenizer, recipe.eval_max_seq_len)
            synthetic: dict[str, Any] | None = None
            if recipe.synthetic_steps is not None:
                synthetic = synthetic_stage(model, tokenizer, data.task, train, extra_sentences,
                                            dev, recipe, seed, progress)
            steps = recipe.resolve_steps(len(train))
            fine_tune(model, encode(train, tokenizer, recipe.max_seq_len), recipe, steps,
                      seed, progress, f"teacher {data.task.name}", on_step)
            calibration: Calibration | None = None
            if holdout is not None:
                held_out = encode(holdout, tokenizer, recipe.eval_max_seq_len)
                calibration = calibrate(predict(model, held_out, recipe.eval_batch_size),
                                        held_out.labels, data.task.main_metric)
                # What the threshold changed on dev: recorded, never used to choose it.
                calibration = replace(calibration, dev_argmax=round(evaluate(
                    model, data.task, dev, recipe.eval_batch_size)[data.task.main_metric], 6))
                apply_offset(model, calibration.offset)
            metrics = evaluate(model, data.task, dev, recipe.eval_batch_size)
            seconds = time.perf_counter() - start
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        info = {"key": key, "model": model_name, "task": data.task.name, "metrics": metrics,
                "main_metric": data.task.main_metric, "seconds": seconds, "steps": steps,
                "train_samples": steps * recipe.batch_size, "recipe": asdict(recipe),
                "seed": seed, "calibration": None if calibration is None else asdict(calibration),
                "synthetic": synthetic}
        (directory / TEACHER_FILE).write_text(json.dumps(info, indent=2))

    directory, hit = cache.get_or_build("teachers", key, build)
    return Teacher.load(directory, data.task, cached=hit)
