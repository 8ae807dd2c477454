"""The job spec: YAML in, a validated frozen object out.

Validation happens once, here, at the edge: every later module trusts a :class:`JobSpec`.
Relative paths are resolved against the spec file's directory, so a stored spec (its JSON in
the trials database) runs the same from any working directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from autoprune.errors import SpaceError, SpecError
from autoprune.space import resolve_space_path

PositiveInt = Annotated[int, Field(ge=1)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


def _base_dir(info: ValidationInfo) -> Path:
    context = info.context or {}
    return Path(context.get("base_dir", "."))


def _resolve(value: str | Path, info: ValidationInfo) -> Path:
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = _base_dir(info) / path
    return path.resolve()


class TaskSpec(_Frozen):
    """A task: a GLUE name with a GLUE-format directory, a Hugging Face dataset, or files."""

    name: str = Field(min_length=1)
    data_dir: Path | None = None
    hf_dataset: str | None = None          # e.g. "glue/sst2" (needs a reachable hub)
    train_file: Path | None = None          # user CSV/JSONL
    dev_file: Path | None = None
    text_fields: tuple[str, ...] | None = None
    label_field: str | None = None
    num_labels: PositiveInt | None = None   # for user files; 1 means regression
    metric: str | None = None               # overrides the task's official metric
    max_train_samples: PositiveInt | None = None
    max_eval_samples: PositiveInt | None = None
    max_seq_len: PositiveInt = 128

    @field_validator("data_dir", "train_file", "dev_file", mode="after")
    @classmethod
    def _must_exist(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = _resolve(value, info)
        if not path.exists():
            raise ValueError(f"no such path {str(path)!r}")
        return path

    @model_validator(mode="after")
    def _one_source(self) -> TaskSpec:
        sources = [self.data_dir is not None, self.hf_dataset is not None, self.train_file is not None]
        if sum(sources) > 1:
            raise ValueError("give one of data_dir, hf_dataset, train_file")
        if self.train_file is not None and self.dev_file is None:
            raise ValueError("train_file needs dev_file")
        return self


class LatencySpec(_Frozen):
    model: Path | None = None               # a latency-model JSON file
    # false: use `model` as it is; true: always profile first (writes `model`);
    # "auto": profile when `model` is missing, was measured on another device, or runs dense
    # more than 10% faster here than profiled (a few seconds' check: same CPU, other speed).
    profile: bool | Literal["auto"] = False
    budget_ms: float | None = Field(default=None, gt=0)
    budget_ratio: float | None = Field(default=None, gt=0, le=1)
    # Fraction of the budget held back for the latency model's error: the search aims under
    # budget x (1 - margin), so that what it finds still re-measures within the budget.
    # "auto": the latency model's own held-out error on its device (LatencyModel.suggested_margin).
    margin: float | Literal["auto"] = 0.0
    batch: PositiveInt = 1
    seq_len: PositiveInt = 128
    backend: Literal["torch", "onnxruntime"] = "torch"
    threads: PositiveInt | None = None
    strict: bool = False                    # a fingerprint mismatch is an error, not a warning

    @field_validator("model", mode="after")
    @classmethod
    def _resolve_model(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _resolve(value, info)

    @field_validator("margin", mode="before")
    @classmethod
    def _check_margin(cls, value: Any) -> Any:
        # Checked here rather than by the union's own errors, which would name its branches
        # ("latency.margin.float: ...") instead of the key the user wrote.
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"must be a number in [0, 0.5) or 'auto' (got {value!r})")
        if value < 0:
            raise ValueError("must be >= 0")
        if value >= 0.5:
            raise ValueError("must be < 0.5")
        return float(value)

    @model_validator(mode="after")
    def _check(self) -> LatencySpec:
        if (self.budget_ms is None) == (self.budget_ratio is None):
            raise ValueError("give exactly one of budget_ms, budget_ratio")
        if self.model is None and self.profile is False:
            raise ValueError("give model (a latency-model file) or profile: true")
        if self.model is not None and self.profile is False and not self.model.is_file():
            raise ValueError(f"model: no such file {str(self.model)!r} (or set profile: auto)")
        return self


class ControllerSpec(_Frozen):
    name: str = Field(min_length=1)
    evaluations: PositiveInt = 48
    population: int = Field(default=12, ge=2)
    batch: PositiveInt | None = None        # candidates asked per round (default: workers)
    seed: int = 0
    options: dict[str, Any] = Field(default_factory=dict)


class ObjectiveSpec(_Frozen):
    kind: Literal["constrained", "mnas", "pareto"] = "constrained"
    w: float = Field(default=-0.07, le=0)


class EstimateSpec(_Frozen):
    steps: PositiveInt = 100
    rungs: tuple[PositiveInt, ...] | None = None
    batch_size: PositiveInt = 32
    lr: float = Field(default=5e-5, gt=0, le=1)
    distill: bool = True
    temperature: float = Field(default=2.0, gt=0)
    max_seq_len: PositiveInt = 64
    eval_samples: PositiveInt | None = None  # a fixed dev subset; None = the whole dev set
    freeze_embeddings: bool = True
    # Re-fit the classifier of candidates that drop layers before their fine-tune
    # (estimate/head.py: it lifts some shallow estimates but cost exports accuracy; off).
    refit_head: bool = False
    teacher_steps: PositiveInt | None = None
    teacher_lr: float = Field(default=1e-4, gt=0, le=1)
    # Binary tasks: the fraction of train held out to choose the teacher's decision threshold
    # (autoprune/estimate/calibrate.py); None: argmax, all of train.
    teacher_calibrate: float | None = Field(default=None, gt=0, lt=0.5)
    # Binary single-sentence tasks (CoLA): steps of synthetic acceptability before the
    # teacher's fine-tune (autoprune/data/synthetic.py), and more grammatical sentences for
    # it: GLUE task directories (their train.tsv) or text files, one sentence per line.
    teacher_synthetic_steps: PositiveInt | None = None
    teacher_synthetic_text: tuple[Path, ...] = ()
    seed: int = 0
    # The candidates' fine-tunes alone (batch order, dropout, dev subset); None: ``seed``,
    # which also seeds the teacher and the importance scores. Set apart, repeated estimates
    # sample the fine-tune's noise against one cached teacher.
    finetune_seed: int | None = None
    kind: Literal["finetune", "proxy", "null"] = "finetune"
    # The null estimator answers from the architecture alone; this makes each answer take
    # this long (service-overhead benchmarks and tests of long trials).
    null_seconds: float = Field(default=0.0, ge=0)

    @field_validator("teacher_synthetic_text", mode="after")
    @classmethod
    def _sentence_sources(cls, value: tuple[Path, ...], info: ValidationInfo) -> tuple[Path, ...]:
        paths = tuple(_resolve(path, info) for path in value)
        for path in paths:
            if not path.exists():
                raise ValueError(f"no such path {str(path)!r}")
        return paths

    @model_validator(mode="after")
    def _synthetic(self) -> EstimateSpec:
        if self.teacher_synthetic_text and self.teacher_synthetic_steps is None:
            raise ValueError("teacher_synthetic_text: needs teacher_synthetic_steps")
        return self

    @model_validator(mode="after")
    def _rungs(self) -> EstimateSpec:
        if self.rungs is not None:
            if list(self.rungs) != sorted(set(self.rungs)):
                raise ValueError("rungs: must be strictly increasing")
            if self.rungs[-1] != self.steps:
                raise ValueError(f"rungs: the last rung must equal steps ({self.steps})")
            # ASHA promotes at min_rung * eta**k: the rungs must be that geometric sequence.
            if len(self.rungs) > 1:
                eta = self.rungs[1] / self.rungs[0]
                expected = [self.rungs[0] * eta**k for k in range(len(self.rungs))]
                if eta != int(eta) or any(abs(a - b) > 1e-9 for a, b in zip(self.rungs, expected)):
                    raise ValueError("rungs: must be geometric with an integer ratio (e.g. [20, 60, 180])")
        return self

    @property
    def reduction_factor(self) -> int:
        """ASHA's eta: the ratio between consecutive rungs (3 when there is one rung)."""
        if self.rungs is None or len(self.rungs) < 2:
            return 3
        return self.rungs[1] // self.rungs[0]

    @property
    def fidelities(self) -> tuple[int, ...]:
        return self.rungs if self.rungs is not None else (self.steps,)


class ExecutorSpec(_Frozen):
    kind: Literal["local", "ray"] = "local"
    workers: PositiveInt = 1
    cpus_per_worker: PositiveInt | None = None
    ray_address: str | None = None


class JobSpec(_Frozen):
    name: str = Field(min_length=1, max_length=200)
    model: str = Field(min_length=1)
    task: TaskSpec
    latency: LatencySpec
    space: Path
    controller: ControllerSpec
    objective: ObjectiveSpec = ObjectiveSpec()
    estimate: EstimateSpec = EstimateSpec()
    executor: ExecutorSpec = ExecutorSpec()

    @field_validator("space", mode="before")
    @classmethod
    def _space(cls, value: Any, info: ValidationInfo) -> Path:
        if not isinstance(value, (str, Path)):
            raise ValueError("expected a path or a built-in space name")
        try:
            return resolve_space_path(value, _base_dir(info))
        except SpaceError as exc:
            raise ValueError(str(exc).split(": ", 1)[-1] + f" ({value})") from exc

    @model_validator(mode="after")
    def _teacher_options_need_two_classes(self) -> JobSpec:
        # Refused here when the spec tells the label count (a GLUE name, or num_labels for
        # user files) or the text count; prepare_teacher checks every task again once its
        # data is loaded. Here, the job spends no latency profile before hearing it.
        from autoprune.data.tasks import glue_task

        known = glue_task(self.task.name)
        labels = self.task.num_labels or (known.num_labels if known is not None else None)
        kind = "a regression" if labels == 1 else f"a {labels}-way"
        if labels not in (None, 2) and self.estimate.teacher_calibrate is not None:
            raise ValueError(f"estimate.teacher_calibrate: task {self.task.name!r} is {kind} "
                             "task; a decision threshold is calibrated only for two classes")
        if self.estimate.teacher_synthetic_steps is None:
            return self
        if labels not in (None, 2):
            raise ValueError(f"estimate.teacher_synthetic_steps: task {self.task.name!r} is "
                             f"{kind} task; synthetic acceptability needs two classes "
                             "(class 1: acceptable)")
        texts = (len(self.task.text_fields) if self.task.text_fields is not None
                 else len(known.glue.text_columns) if known is not None and known.glue
                 else 1)
        if texts != 1:
            raise ValueError(f"estimate.teacher_synthetic_steps: task {self.task.name!r} has "
                             "sentence pairs; synthetic acceptability is for single sentences")
        return self

    @field_validator("model", mode="after")
    @classmethod
    def _model(cls, value: str, info: ValidationInfo) -> str:
        # A local directory is resolved like every other path; aliases and hub names stay.
        candidate = _base_dir(info) / value
        if ("/" in value or value.startswith(".")) and candidate.is_dir():
            return str(candidate.resolve())
        return value

    # ---- loading --------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, base_dir: str | Path = ".", source: str = "spec") -> JobSpec:
        if not isinstance(data, dict):
            raise SpecError(f"{source}: expected a mapping at the top level")
        try:
            return cls.model_validate(data, context={"base_dir": Path(base_dir)})
        except ValidationError as exc:
            raise SpecError(f"{source}: {_first_error(exc)}") from None

    @classmethod
    def load(cls, path: str | Path) -> JobSpec:
        path = Path(path)
        if not path.is_file():
            raise SpecError(f"{path}: no such spec file")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            raise SpecError(f"{path}:{where} not valid YAML") from None
        except UnicodeDecodeError:
            raise SpecError(f"{path}: not a UTF-8 text file") from None
        return cls.from_dict(data, base_dir=path.resolve().parent, source=str(path))

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        """A stored spec (paths already absolute)."""
        return cls.from_dict(json.loads(text), base_dir="/", source="stored spec")


_MESSAGES = {
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}",
    "less_than": "must be < {lt}",
    "extra_forbidden": "unknown key",
    "missing": "required",
    "string_too_short": "must not be empty",
}


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    location = ".".join(str(part) for part in error["loc"])
    template = _MESSAGES.get(error["type"])
    if template is not None:
        message = template.format(**(error.get("ctx") or {}))
    else:
        message = error["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        message = message[0].lower() + message[1:]
        if error["type"] not in ("value_error",) and "input" in error:
            message += f" (got {error['input']!r})"
    # A check across sections (JobSpec's own validators) names its keys in the message.
    return f"{location}: {message}" if location else message
