"""Everything a job needs before its first trial, built once from its spec.

The base model's shape, the task, the latency model (profiled first when the spec asks for it,
or for ``profile: auto`` when the stored model was measured on another device or on a slower
machine of the same kind), the budget in milliseconds, the
objective, the seeded controller, and a factory for the estimator (whose teacher and
importance scores are trained once and cached on disk, so every worker that builds its own
estimator loads them instead of training again).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoprune.controllers import TrialResult, get_controller
from autoprune.controllers.guided import LayerScores
from autoprune.errors import LatencyModelError
from autoprune.objectives import Objective
from autoprune.space import Architecture, SearchSpace
from autoprune.spec import JobSpec

if TYPE_CHECKING:  # the estimators import torch; the runner's head process need not
    from autoprune.estimate import Estimator

log = logging.getLogger(__name__)

def autoprune_home() -> Path:
    """``AUTOPRUNE_HOME`` or ``~/.autoprune``: the default database, caches and work files."""
    home = Path(os.environ.get("AUTOPRUNE_HOME", Path.home() / ".autoprune")).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def _existing_latency_model(spec: JobSpec) -> tuple[Any, bool]:
    """The spec's latency-model file as it stands and whether a job on this device profiles a
    new one: ``profile: true`` or no file (None: the file is not read), or ``profile: auto``
    with a file measured on another device."""
    from autoprune.latency import LatencyModel
    from autoprune.latency.fingerprint import device_fingerprint, differences

    latency = spec.latency
    path = latency.model
    if latency.profile is True or path is None or not path.is_file():
        return None, True
    with warnings.catch_warnings():  # a foreign device is reported by the caller, or profiled
        warnings.simplefilter("ignore")
        existing = LatencyModel.load(path)
    if latency.profile == "auto":
        current = device_fingerprint(latency.backend, existing.threads)
        return existing, bool(differences(existing.fingerprint, current))
    return existing, False


def keep_replaced(path: Path) -> Path | None:
    """Copy the latency model that a new profile is about to overwrite to
    ``NAME.replaced-<its creation time>.json`` beside it, once. The file may be another
    device's profile that nothing else holds (a job on a new machine, ``profile: auto``),
    and a stored measurement is not the job's to lose."""
    if not path.is_file():
        return None
    try:  # only its ``created`` is needed: the file is kept whether or not it would load
        created = str(json.loads(path.read_text())["created"])
        stamp = "".join(c for c in created[:19] if c.isdigit() or c == "T")
    except (OSError, ValueError, KeyError, TypeError):  # unreadable: kept too, by its mtime
        stamp = str(int(path.stat().st_mtime))
    kept = path.with_name(f"{path.stem}.replaced-{stamp}{path.suffix}")
    if not kept.exists():
        shutil.copy2(path, kept)
    log.warning("latency model %s is profiled again; the file it replaces is kept as %s",
                path, kept)
    return kept


def load_or_profile_latency_model(spec: JobSpec, store: Any = None, quiet: bool = False,
                                  check_speed: bool = True) -> Any:
    """The spec's latency model, profiling this device first when the spec says so.

    ``check_speed``: whether ``profile: auto`` measures dense to see if this machine outruns
    the profile; off for a job that resumes, whose trials were budgeted with the file as is."""
    from autoprune.latency import profile

    latency = spec.latency
    path = latency.model
    existing, need_profile = _existing_latency_model(spec)
    # The store's measurements of this device are as stale as the file when the device itself
    # outruns them: reusing them would write the same model again.
    stale = False
    if need_profile and existing is not None:  # profile: auto, another device
        log.warning("latency model %s was measured on another device: profiling", path)
    elif existing is not None and latency.profile == "auto" and check_speed:
        from autoprune.latency import dense_speed
        from autoprune.latency.records import FASTER_THAN_MEASURED

        # Only faster: a busy machine reads slower, and that is the export's DriftGuard's
        # business, not a reason to profile.
        speed = dense_speed(existing)
        if speed < 1 - FASTER_THAN_MEASURED:
            log.warning("latency model %s: dense runs %.0f%% faster on this machine than "
                        "profiled (the same CPU model at another speed): profiling",
                        path, 100 * (1 - speed))
            need_profile = stale = True
    if need_profile:
        out = path or autoprune_home() / "latency_models" / (
            f"{spec.name}-{latency.backend}-b{latency.batch}-s{latency.seq_len}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        keep_replaced(out)
        from contextlib import nullcontext

        from autoprune.latency import NullProgress, RichProgress

        with nullcontext(NullProgress()) if quiet else RichProgress() as bar:
            model = profile(spec.model, latency.backend, latency.batch, latency.seq_len,
                            latency.threads, out, store=store, reuse_measurements=not stale,
                            progress=bar)
            if latency.margin == "auto":  # the margin comes from the held-out error: measure it
                from autoprune.latency import validate

                record = validate(model, save=True, store=store, progress=bar)
                model = model.with_document(validation=record)  # what validate just saved
        return model
    model = existing  # read once above; the device check it skipped comes now
    model.check_device(latency.strict)
    if (model.batch, model.seq_len) != (latency.batch, latency.seq_len):
        raise LatencyModelError(
            f"{path}: measured at batch {model.batch}, seq_len {model.seq_len}; the spec asks for "
            f"batch {latency.batch}, seq_len {latency.seq_len}"
        )
    return model


def check_controller(spec: JobSpec) -> None:
    """Refuse, before a job is queued, an unknown controller or options its controller does
    not take: the job could only fail once a worker prepared it. (Checks that need the
    model's shape, such as ``start_min_layers`` against its depth, wait for :func:`prepare`.)"""
    cls = get_controller(spec.controller.name)
    cls.parse_options(controller_options(cls, spec))


def check_margin_is_resolvable(spec: JobSpec) -> None:
    """Refuse, before a job is queued, ``latency.margin: auto`` with a latency model that the
    job would use as it is and that has no held-out validation: the job could only fail later.

    A job that profiles validates its new model itself, so it passes. The device compared
    for ``profile: auto`` is the submitting machine's: the usual case is one machine, and a
    worker on another device would profile anyway."""
    if spec.latency.margin != "auto":
        return
    existing, need_profile = _existing_latency_model(spec)
    if not need_profile and existing.suggested_margin() is None:
        resolve_margin(spec, existing)  # raises the error that names the fix


def resolve_margin(spec: JobSpec, model: Any) -> float:
    """``latency.margin`` as a fraction: the spec's number, or for ``auto`` the latency
    model's :meth:`~autoprune.latency.LatencyModel.suggested_margin`."""
    margin = spec.latency.margin
    if margin != "auto":
        return float(margin)
    suggested = model.suggested_margin()
    if suggested is None:
        where = model.path or "the latency model"
        raise LatencyModelError(
            f"latency.margin: auto needs held-out validation in {where}; run "
            f"`autoprune latency validate {where} --save` on the device it was measured on, "
            "or give the margin as a number")
    log.info("latency.margin auto: %.1f%% (95%% of the latency model's held-out "
             "re-measurements within a budget they were predicted at)", 100 * suggested)
    return suggested


@dataclass
class Prepared:
    """A job, ready to search."""

    spec: JobSpec
    space: SearchSpace
    objective: Objective
    controller: Any
    latency_model: Any
    metric_name: str
    estimator_factory: Callable[[], Estimator]
    budget_ms: float  # the user's budget; the objective's is smaller by the spec's margin
    skip_infeasible: bool = True
    _estimator: Estimator | None = field(default=None, repr=False)

    @property
    def spec_hash(self) -> str:
        return hashlib.sha256(self.spec.to_json().encode()).hexdigest()[:12]

    @property
    def work_dir(self) -> str:
        """Per-spec scratch space (Ray Tune's experiment files)."""
        return str(autoprune_home() / "work" / self.spec_hash)

    def predict_latency(self, architecture: Architecture) -> float:
        return float(self.latency_model.predict(architecture))

    def make_estimator(self) -> Estimator:
        if self._estimator is None:
            self._estimator = self.estimator_factory()
        return self._estimator

    def make_result(self, number: int, architecture: Architecture, state: str,
                    metric: float | None, latency_ms: float, batch: int) -> TrialResult:
        return TrialResult(trial_id=number, architecture=architecture, metric=metric,
                           latency_ms=latency_ms, state=state, predicted=True,  # type: ignore[arg-type]
                           batch=batch)


def controller_options(cls: Any, spec: JobSpec) -> dict[str, Any]:
    options = dict(spec.controller.options)
    if cls.accepts("population"):
        options.setdefault("population", spec.controller.population)
    return options


def prepare(spec: JobSpec, *, store: Any = None, quiet: bool = False,
            estimator_factory: Callable[[], Estimator] | None = None,
            latency_model: Any = None, resuming: bool = False) -> Prepared:
    """Build a :class:`Prepared` job; trains the teacher now if it is not cached yet.
    ``resuming``: the job has trials already, so its latency model is not profiled again
    for speed alone (see :func:`load_or_profile_latency_model`)."""
    from autoprune.data import load_task
    from autoprune.latency.factory import base_shape

    task = load_task(spec.task, seed=spec.estimate.seed)
    num_labels = len(task.task.labels) if task.task.labels else 1
    shape = base_shape(spec.model, num_labels)
    space = SearchSpace.load(spec.space, shape)
    model = latency_model or load_or_profile_latency_model(spec, store=store, quiet=quiet,
                                                           check_speed=not resuming)
    dense_ms = float(model.dense_ms)
    budget = float(spec.latency.budget_ms or spec.latency.budget_ratio * dense_ms)  # type: ignore[operator]
    objective = Objective(kind=spec.objective.kind, budget_ms=budget * (1.0 - resolve_margin(spec, model)),
                          w=spec.objective.w, dense_ms=dense_ms)
    if estimator_factory is None:
        from autoprune.estimate import build_estimator

        def estimator_factory() -> Estimator:
            return build_estimator(spec, progress=not quiet)

    def scores() -> LayerScores | None:
        # Late-bound: ``prepared`` exists by the time a controller first asks for scores, and
        # the estimator it builds (teacher and importance) is the one the trials use.
        finetuner = prepared.make_estimator().finetuner
        importance = None if finetuner is None else finetuner.importance
        return None if importance is None else LayerScores.from_importance(importance)

    cls = get_controller(spec.controller.name)
    controller = cls(space, objective, seed=spec.controller.seed, latency_fn=model.predict,
                     scores_fn=scores, **controller_options(cls, spec))

    prepared = Prepared(
        spec=spec, space=space, objective=objective, controller=controller,
        latency_model=model, metric_name=task.task.main_metric,
        estimator_factory=estimator_factory, budget_ms=budget, skip_infeasible=objective.hard,
    )
    Path(prepared.work_dir).mkdir(parents=True, exist_ok=True)
    return prepared


def build_estimator_from_json(spec_json: str, threads: int | None) -> Any:
    """What a Ray worker calls: the same estimator, its teacher loaded from the disk cache."""
    from autoprune.estimate import build_estimator

    return build_estimator(JobSpec.from_json(spec_json), threads=threads, progress=False)
