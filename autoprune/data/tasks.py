"""Tasks: what a dataset's columns mean and how a task is scored.

A :class:`Task` is pure description (no data): its text fields, its label set (or regression),
its metrics and the one main metric a search optimises. :data:`GLUE_TASKS` holds every GLUE
task with the column layout of its GLUE-format TSV files and of its Hugging Face ``glue``
configuration, so one description serves both sources.
"""

from __future__ import annotations

from dataclasses import dataclass

from autoprune.data.metrics import METRICS
from autoprune.errors import DataError

Column = str | int  # a header name, or a 0-based index for header-less files (CoLA)


@dataclass(frozen=True)
class GlueLayout:
    """Where a GLUE task's fields live: in its TSV files and in its ``datasets`` config."""

    train_file: str
    dev_file: str
    header: bool
    text_columns: tuple[Column, ...]
    label_column: Column
    hf_config: str
    hf_text_columns: tuple[str, ...]
    hf_dev_split: str = "validation"


@dataclass(frozen=True)
class Task:
    """A task's description. ``labels`` is ``None`` for regression (one output)."""

    name: str
    labels: tuple[str, ...] | None
    metrics: tuple[str, ...]
    main_metric: str
    glue: GlueLayout | None = None

    def __post_init__(self) -> None:
        unknown = [m for m in (*self.metrics, self.main_metric) if m not in METRICS]
        if unknown:
            raise DataError(f"task {self.name!r}: unknown metric {unknown[0]!r} "
                            f"(known: {', '.join(sorted(METRICS))})")
        if self.main_metric not in self.metrics:
            object.__setattr__(self, "metrics", (*self.metrics, self.main_metric))

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def num_labels(self) -> int:
        """The model head's output count (1 for regression)."""
        return 1 if self.labels is None else len(self.labels)

    def label_index(self, value: str, where: str) -> int:
        """A label string -> its class index; a value outside the label set is a DataError."""
        assert self.labels is not None
        try:
            return self.labels.index(value)
        except ValueError:
            raise DataError(f"{where}: label {value!r} not in {list(self.labels)} "
                            f"for task {self.name!r}") from None

    def with_main_metric(self, metric: str) -> Task:
        """The same task scored by another main metric (the spec's ``task.metric``)."""
        return Task(self.name, self.labels, self.metrics, metric, self.glue)


def _glue(name: str, labels: tuple[str, ...] | None, metrics: tuple[str, ...], main: str,
          layout: GlueLayout) -> Task:
    return Task(name, labels, metrics, main, layout)


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")

# Label lists follow the class-id order of the Hugging Face ``glue`` configs, so a model
# fine-tuned on either source means the same thing by the same output index.
# Main metrics: GLUE reports F1 *and* accuracy for MRPC/QQP (we optimise F1, the figure the
# paper lists first) and Pearson *and* Spearman for STS-B (we optimise Spearman: it is
# rank-based, so a briefly fine-tuned regressor with a badly scaled output is not punished
# for its scale, only for its order).
GLUE_TASKS: dict[str, Task] = {
    "cola": _glue("cola", _BINARY, ("matthews",), "matthews",
                  GlueLayout("train.tsv", "dev.tsv", False, (3,), 1, "cola", ("sentence",))),
    "sst2": _glue("sst2", _BINARY, ("accuracy",), "accuracy",
                  GlueLayout("train.tsv", "dev.tsv", True, ("sentence",), "label", "sst2",
                             ("sentence",))),
    "mrpc": _glue("mrpc", _BINARY, ("f1", "accuracy"), "f1",
                  GlueLayout("train.tsv", "dev.tsv", True, ("#1 String", "#2 String"), "Quality",
                             "mrpc", ("sentence1", "sentence2"))),
    "qqp": _glue("qqp", _BINARY, ("f1", "accuracy"), "f1",
                 GlueLayout("train.tsv", "dev.tsv", True, ("question1", "question2"),
                            "is_duplicate", "qqp", ("question1", "question2"))),
    "stsb": _glue("stsb", None, ("pearson", "spearman"), "spearman",
                  GlueLayout("train.tsv", "dev.tsv", True, ("sentence1", "sentence2"), "score",
                             "stsb", ("sentence1", "sentence2"))),
    "mnli": _glue("mnli", ("entailment", "neutral", "contradiction"), ("accuracy",), "accuracy",
                  GlueLayout("train.tsv", "dev_matched.tsv", True, ("sentence1", "sentence2"),
                             "gold_label", "mnli", ("premise", "hypothesis"),
                             "validation_matched")),
    "mnli-mm": _glue("mnli-mm", ("entailment", "neutral", "contradiction"), ("accuracy",),
                     "accuracy",
                     GlueLayout("train.tsv", "dev_mismatched.tsv", True,
                                ("sentence1", "sentence2"), "gold_label", "mnli",
                                ("premise", "hypothesis"), "validation_mismatched")),
    "qnli": _glue("qnli", _NLI2, ("accuracy",), "accuracy",
                  GlueLayout("train.tsv", "dev.tsv", True, ("question", "sentence"), "label",
                             "qnli", ("question", "sentence"))),
    "rte": _glue("rte", _NLI2, ("accuracy",), "accuracy",
                 GlueLayout("train.tsv", "dev.tsv", True, ("sentence1", "sentence2"), "label",
                            "rte", ("sentence1", "sentence2"))),
    "wnli": _glue("wnli", _BINARY, ("accuracy",), "accuracy",
                  GlueLayout("train.tsv", "dev.tsv", True, ("sentence1", "sentence2"), "label",
                             "wnli", ("sentence1", "sentence2"))),
}

_ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "mnli-m": "mnli", "mnli_matched": "mnli",
            "mnli_mismatched": "mnli-mm", "mnli-mismatched": "mnli-mm"}


def glue_task(name: str) -> Task | None:
    """The GLUE task called ``name`` (any usual spelling: ``SST-2``, ``sst2``), else ``None``."""
    key = name.strip().lower()
    return GLUE_TASKS.get(_ALIASES.get(key, key))
