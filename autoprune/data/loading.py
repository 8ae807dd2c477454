"""``load_task``: a task spec in, a :class:`TaskData` out, from whichever source it names."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from autoprune.data.dataset import Split, TaskData
from autoprune.data.readers import label_text, read_glue_dir, read_hf_dataset, read_user_file
from autoprune.data.tasks import Task, glue_task
from autoprune.errors import DataError


class TaskSource(Protocol):
    """What ``load_task`` reads from a spec (``autoprune.spec.TaskSpec`` has all of it)."""

    name: str
    data_dir: Any
    hf_dataset: str | None
    train_file: Any
    dev_file: Any
    text_fields: tuple[str, ...] | None
    label_field: str | None
    num_labels: int | None
    metric: str | None
    max_train_samples: int | None
    max_eval_samples: int | None


def load_task(spec: TaskSource, seed: int = 0) -> TaskData:
    """Read a task's train and dev splits.

    ``max_train_samples``/``max_eval_samples`` keep a seeded random subset (files are often
    sorted by source or label, so the first rows would be a biased sample).
    """
    if spec.train_file is not None:
        if spec.dev_file is None:
            raise DataError(f"task {spec.name!r}: train_file needs dev_file")
        task, train, dev = _load_user_files(spec)
    else:
        task = glue_task(spec.name)
        if spec.hf_dataset is not None:
            if task is None:
                task = _classification_or_regression(spec.name, spec.num_labels, None)
            train, dev = read_hf_dataset(task, spec.hf_dataset, spec.text_fields, spec.label_field)
        elif spec.data_dir is not None:
            if task is None:
                raise DataError(f"task {spec.name!r}: not a GLUE task (give train_file and "
                                "dev_file for your own data)")
            train, dev = read_glue_dir(task, Path(spec.data_dir))
        else:
            raise DataError(f"task {spec.name!r}: give data_dir, hf_dataset or train_file")
    if spec.num_labels is not None and spec.num_labels != task.num_labels:
        raise DataError(f"task {spec.name!r}: num_labels is {spec.num_labels}, "
                        f"the data has {task.num_labels}")
    if spec.metric is not None:
        task = task.with_main_metric(spec.metric)
    return TaskData(task, train.sample(spec.max_train_samples, seed),
                    dev.sample(spec.max_eval_samples, seed))


def _classification_or_regression(name: str, num_labels: int | None,
                                  labels: tuple[str, ...] | None) -> Task:
    if num_labels == 1:
        return Task(name, None, ("pearson", "spearman"), "spearman")
    if labels is None:
        if num_labels is None:
            raise DataError(f"task {name!r}: give num_labels")
        labels = tuple(str(i) for i in range(num_labels))
    metrics = ("accuracy", "f1") if len(labels) == 2 else ("accuracy",)
    return Task(name, labels, metrics, "accuracy")


def _load_user_files(spec: TaskSource) -> tuple[Task, Split, Split]:
    if not spec.text_fields or not spec.label_field:
        raise DataError(f"task {spec.name!r}: user files need text_fields and label_field")
    train_path, dev_path = Path(spec.train_file), Path(spec.dev_file)
    train_texts, train_raw, train_where = read_user_file(train_path, spec.text_fields,
                                                         spec.label_field)
    dev_texts, dev_raw, dev_where = read_user_file(dev_path, spec.text_fields, spec.label_field)
    for path, texts in ((train_path, train_texts), (dev_path, dev_texts)):
        if not texts:
            raise DataError(f"{path}: no records (task {spec.name!r})")
    labels = None if spec.num_labels == 1 else _label_set(train_raw, spec.num_labels, train_where)
    task = _classification_or_regression(spec.name, spec.num_labels, labels)
    train = Split(train_texts, _labels(task, train_raw, train_where), str(train_path))
    dev = Split(dev_texts, _labels(task, dev_raw, dev_where), str(dev_path))
    return task, train, dev


def _label_set(raw: Sequence[Any], num_labels: int | None, where: Sequence[str]) -> tuple[str, ...]:
    """The class names: ``0..n-1`` when the labels are those integers, else the sorted set."""
    values = sorted({label_text(v) for v in raw})
    if all(v.lstrip("-").isdigit() for v in values):
        numbers = sorted(int(v) for v in values)
        count = num_labels if num_labels is not None else numbers[-1] + 1
        if numbers[0] >= 0 and numbers[-1] < count:
            return tuple(str(i) for i in range(count))
        if num_labels is not None:
            bad = next(n for n in numbers if not 0 <= n < count)
            index = next(i for i, v in enumerate(raw) if label_text(v) == str(bad))
            raise DataError(f"{where[index]}: label {bad} outside 0..{count - 1}")
    if num_labels is not None and len(values) > num_labels:
        raise DataError(f"{where[0].rsplit(':', 1)[0]}: {len(values)} distinct labels, "
                        f"num_labels is {num_labels}")
    if len(values) < 2 and num_labels is None:
        raise DataError(f"{where[0].rsplit(':', 1)[0]}: only one label value "
                        f"({values[0]!r}); give num_labels")
    return tuple(values)


def _labels(task: Task, raw: Sequence[Any], where: Sequence[str]) -> np.ndarray:
    if task.is_regression:
        out = []
        for value, place in zip(raw, where):
            try:
                out.append(float(value))
            except (TypeError, ValueError):
                raise DataError(f"{place}: {value!r} is not a number (regression)") from None
        return np.asarray(out, dtype=np.float32)
    return np.asarray([task.label_index(label_text(v), p) for v, p in zip(raw, where)],
                      dtype=np.int64)
