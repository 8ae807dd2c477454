"""``autoprune export``: one trial of a job out of the store as a real, deployable model.

The trial's candidate is rebuilt from the job's stored spec rather than from checkpoints (the
search may have deleted them): the same cached teacher and importance scores, the same
seeded distillation fine-tune, replayed through the same ASHA rungs the search trained it
through (each rung resuming the previous one's checkpoint, as the executors do), so the
weights are the ones the search scored; ``steps`` trains further from there, in the
:class:`~autoprune.estimate.FinalPhase` (the learning rate decaying to 0, hidden-state
distillation added) rather than at the search's constant rate. The student is
then finalized (masks baked into the weights, int8 layers real int8, int4 layers packed),
saved in the :func:`autoprune.load` format with the tokenizer, loaded back, and everything
reported is measured on what was loaded:

* latency with the job's protocol, at the job's batch and sequence length and thread count,
  in interleaved rounds with the dense teacher as the reference model (the speedup), in a
  fresh process that loads both from disk (:mod:`autoprune.fresh_process`); when
  the job's latency model was profiled on this machine and the dense model now runs far from
  its profiled figure, the machine is in a slow (or fast) period that the ratio to dense does
  not fully cancel, so the measurement waits and is repeated (see :class:`DriftGuard`);
* the task metric on the whole dev split (the search scored an ``eval_samples`` subset),
  next to the teacher's on the same split;
* with ``onnx``, ``model.onnx``, run by ONNX Runtime on real dev batches and compared with
  PyTorch (see :func:`_write_onnx`).

``DIR/report.json`` holds the figures; the store gets the measured latency on the trial and
an ``export`` artifact row. Everything is built in a hidden directory beside ``DIR`` and
moved into place at the end, so a refusal or a failure leaves ``DIR`` as it was.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autoprune import __version__
from autoprune.drift import DEFAULT_DRIFT_GUARD, DriftGuard, measure_steadily
from autoprune.errors import AutopruneError, ExportError, LatencyModelError
from autoprune.estimate.finetune import FinalPhase
from autoprune.fresh_process import run_in_fresh_process
from autoprune.space import Architecture

REPORT_FILE = "report.json"
ONNX_FILE = "model.onnx"
ARTIFACT_KIND = "export"
DEFAULT_FINAL_PHASE = FinalPhase()
ONNX_CHECK_BATCHES = 4
# ONNX Runtime against PyTorch on the same fp32 graph: only the order of float operations
# differs (measured ~1e-8 on the tiny BERT), so this bound catches any wrong weight or op.
FP32_TOLERANCE = 1e-4
# int8 layers quantize activations on the fly, and the two runtimes do it differently
# (PyTorch's fbgemm kernels in 7 bits, ONNX Runtime in 8), so their outputs may differ by
# about as much as PyTorch's own int8 model differs from exact fp32 arithmetic on the same
# weights; measured on MiniLM with five quantized layers: 0.23 apart, PyTorch 0.22 from fp32.
QUANTIZED_NOISE_FACTOR = 3.0


class OnnxMismatchError(AutopruneError):
    """ONNX Runtime's outputs do not match PyTorch's: the ONNX model is not written."""




@dataclass(frozen=True)
class LatencyFigure:
    """One measured latency: the median of per-round minima and its p10-p90 spread (ms)."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    rounds: int


@dataclass(frozen=True)
class OnnxResult:
    """``model.onnx`` as checked against PyTorch and timed."""

    file: str
    bytes: int
    quantization: str
    batches_checked: int
    examples_checked: int
    max_abs_diff: float               # ONNX Runtime against the exported PyTorch model
    tolerance: float
    fp32_graph_max_abs_diff: float    # the graph before ONNX Runtime quantized it
    torch_quantization_noise: float   # PyTorch int8 against exact fp32 on the same weights
    prediction_agreement: float | None
    latency: LatencyFigure
    torch_over_onnx: float            # PyTorch latency / ONNX Runtime latency, same inputs


@dataclass(frozen=True)
class ExportReport:
    """Everything ``report.json`` holds (see :meth:`to_dict`)."""

    job: int
    trial: int
    directory: str
    trial_state: str
    architecture: list[dict[str, Any]]
    architecture_summary: str
    architecture_hash: str
    search_steps: int                 # the fidelity the search trained the trial to
    steps: int                        # fine-tune steps of the exported model
    replayed_steps: list[int]         # the fine-tune calls that rebuilt it (rungs, then --steps)
    final_phase: dict[str, float | bool] | None  # how the steps past search_steps trained
    metric_name: str
    metric: float                     # on the whole dev split
    metrics: dict[str, float]
    dev_samples: int
    search_metric: float              # what the search recorded (dev subset, fake quantization)
    search_metric_replayed: float | None
    search_eval_samples: int
    teacher_metric: float
    metric_vs_teacher: float
    latency_backend: str
    latency_batch: int
    latency_seq_len: int
    latency_threads: int
    predicted_latency_ms: float | None
    measured_latency_ms: float
    measured_latency_p10_ms: float
    measured_latency_p90_ms: float
    dense_latency_ms: float
    dense_latency_p10_ms: float
    dense_latency_p90_ms: float
    latency_rounds: int
    speedup: float                    # dense / measured, same rounds
    profiled_dense_ms: float | None   # the latency model's dense figure, when it is at hand
    measured_profile_scale_ms: float | None
    # dense measured / profiled - 1 for every measurement taken (see DriftGuard); empty when
    # the latency model is not at hand or was profiled on another machine
    dense_drifts: list[float]
    dense_drift: float | None         # of the measurement kept
    drift_exceeded: bool              # even the kept measurement is over the guard's max_drift
    parameters: int
    weights_bytes: int
    total_bytes: int
    files: dict[str, int]
    onnx: OnnxResult | None
    seconds: float
    created_at: str
    autoprune_version: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stored_latency_ms": self.stored_latency_ms}

    @property
    def stored_latency_ms(self) -> float:
        """What the trial's row records as measured: on the latency model's scale when there
        is one (measured relative to dense in the same rounds, times the profiled dense
        figure), so that it compares with predictions and the budget however loaded the
        machine is today; else the raw median."""
        if self.measured_profile_scale_ms is not None:
            return self.measured_profile_scale_ms
        return self.measured_latency_ms

    def summary(self) -> list[str]:
        """A few lines for the command line."""
        predicted = ("" if self.predicted_latency_ms is None
                     else f" (predicted {self.predicted_latency_ms:.2f} ms)")
        lines = [
            f"exported job {self.job} trial {self.trial} ({self.architecture_summary}) "
            f"to {self.directory}",
            f"latency: {self.measured_latency_ms:.2f} ms measured{predicted}, "
            f"p10-p90 {self.measured_latency_p10_ms:.2f}-{self.measured_latency_p90_ms:.2f}; "
            f"dense {self.dense_latency_ms:.2f} ms: {self.speedup:.2f}x faster "
            f"({self.latency_backend}, batch {self.latency_batch}, "
            f"seq_len {self.latency_seq_len}, threads {self.latency_threads})",
            f"{self.metric_name}: {self.metric:.4f} on the whole dev split "
            f"({self.dev_samples} examples), teacher {self.teacher_metric:.4f} "
            f"({self.metric_vs_teacher:+.4f}); the search recorded {self.search_metric:.4f} "
            f"on {self.search_eval_samples} examples after {self.search_steps} steps",
            f"model: {self.steps} fine-tune steps, {self.parameters:,} parameters, "
            f"{self.weights_bytes / 1e6:.2f} MB of weights",
        ]
        if self.drift_exceeded and self.dense_drift is not None:
            # A busy machine only runs slower; faster every time means the profile came from
            # a slower machine (or a slow period), which waiting will not mend.
            advice = ("this machine runs faster than the one profiled: profile it "
                      "(`autoprune profile --out FILE`, or a job with `latency.profile: true`)"
                      if all(d < 0 for d in self.dense_drifts)
                      else "export again when it is quiet, or profile it again if it stays so")
            taken = len(self.dense_drifts)
            lines.append(
                f"warning: dense ran {self.dense_drift:+.0%} off its profiled "
                f"{self.profiled_dense_ms:.2f} ms in "
                f"{'the one measurement' if taken == 1 else f'all {taken} measurements'}; "
                "the machine is not as it was when profiled, so the measured latency may not "
                f"compare with the prediction (int8 models above all): {advice}")
        if self.onnx is not None:
            lines.append(
                f"onnx: {self.onnx.file} ({self.onnx.quantization}), max |diff| "
                f"{self.onnx.max_abs_diff:.2e} vs PyTorch (tolerance {self.onnx.tolerance:.2e}), "
                f"{self.onnx.latency.median_ms:.2f} ms")
        return lines


def export_trial(store: Any, job_id: int, number: int, out_dir: str | Path, *,
                 onnx: bool = False, steps: int | None = None, force: bool = False,
                 progress: bool = True, protocol: Any = None,
                 final: FinalPhase | None = DEFAULT_FINAL_PHASE,
                 drift_guard: DriftGuard = DEFAULT_DRIFT_GUARD) -> ExportReport:
    """Export trial ``number`` of job ``job_id`` to ``out_dir`` (see the module docstring).

    Refuses (:class:`~autoprune.errors.UserInputError`, nothing written) an unknown job or
    trial, a trial without a trained model, ``steps`` below the trial's, and a non-empty
    ``out_dir`` unless ``force`` and it holds a previous export. ``protocol``: the latency
    protocol (``autoprune.latency.DEFAULT_PROTOCOL`` by default). When the job's latency
    backend is ONNX Runtime, the ONNX model is the one measured, so ``onnx`` is implied.
    ``progress``: Rich bars on stderr for the fine-tune, the checks and the measurement.
    ``final``: how the steps past the trial's fidelity train (``None``: on at the search's
    constant learning rate, logits only). ``drift_guard``: when the latency is measured again
    because dense runs far from its profiled figure.
    """
    from autoprune.latency import DEFAULT_PROTOCOL
    from autoprune.spec import JobSpec

    started = time.monotonic()
    job = store.get_job(job_id)
    trial = store.get_trial(job_id, number)
    _check_trial(trial)
    spec = JobSpec.from_json(job.spec_json)
    if spec.estimate.kind == "null":
        raise ExportError(f"job {job_id} scored its trials with the null estimator: "
                          "there is no trained model to export")
    schedule = _schedule(spec.estimate.fidelities, int(trial.fidelity), steps, number)
    out = Path(out_dir).expanduser().resolve()
    replacing = _check_destination(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.export-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        with _Stages(progress) as stages:
            report = _build(spec, trial, staging, out, schedule, stages,
                            onnx=onnx or spec.latency.backend == "onnxruntime",
                            protocol=protocol or DEFAULT_PROTOCOL, progress=progress,
                            started=started, final=final, drift_guard=drift_guard)
        _install(staging, out, replacing)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    store.update_trial(job_id, number, measured_latency_ms=report.stored_latency_ms)
    store.add_artifact(job_id, ARTIFACT_KIND, str(out), trial_number=number,
                       content_hash=_digest(out / "model.safetensors"),
                       extra={"steps": report.steps, "metric_name": report.metric_name,
                              "metric": report.metric, "dev_samples": report.dev_samples,
                              "measured_latency_ms": report.measured_latency_ms,
                              "speedup": report.speedup, "onnx": report.onnx is not None})
    return report


# ---- refusals ------------------------------------------------------------------------------
def _check_trial(trial: Any) -> None:
    where = f"job {trial.job_id} trial {trial.number}"
    if trial.state == "failed":
        reason = (trial.error or "").strip().splitlines()
        raise ExportError(f"{where} failed{f' ({reason[0][:120]})' if reason else ''}: "
                          "there is no model to export")
    if trial.state in ("waiting", "running"):
        state = "queued" if trial.state == "waiting" else "running"
        raise ExportError(f"{where} is {state}: export it once it is complete")
    if (trial.extra or {}).get("infeasible"):
        raise ExportError(f"{where} was never trained: its predicted latency was over the "
                          "job's budget")
    if trial.metric_value is None or trial.fidelity is None:
        raise ExportError(f"{where} has no metric: there is no trained model to export")


def _schedule(rungs: tuple[int, ...], fidelity: int, steps: int | None,
              number: int) -> list[int]:
    """The fine-tune calls that rebuild the trial: the rungs it went through, then ``steps``.

    A checkpoint carries dropout's random state, so the rungs replay as one run to the same
    step would. Jobs searched before the state was saved resumed each rung from the seed:
    their trials now replay with the stream continued, and ``search_metric_replayed`` differs
    from the stored metric by the noise of the path (about a point at 100 steps on MiniLM)."""
    path = [rung for rung in rungs if rung < fidelity] + [fidelity]
    if steps is not None:
        if steps < fidelity:
            raise ExportError(f"--steps {steps}: trial {number} was already trained for "
                              f"{fidelity} steps (ask for more, or leave --steps out)")
        if steps > fidelity:
            path.append(steps)
    return path


def _check_destination(out: Path, force: bool) -> bool:
    """Whether ``out`` holds a previous export to replace; refuses anything else non-empty."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise ExportError(f"{out}: exists and is not a directory")
    if not any(out.iterdir()):
        return False
    if not force:
        raise ExportError(f"{out}: directory is not empty (--force replaces a previous export)")
    from autoprune.compress.serialization import METADATA_FILE

    if not (out / METADATA_FILE).is_file() and not (out / REPORT_FILE).is_file():
        # --force deletes the directory: only ever one that an export wrote.
        raise ExportError(f"{out}: not empty and not an autoprune export; --force only "
                          "replaces a previous export")
    return True


def _install(staging: Path, out: Path, replacing: bool) -> None:
    if not replacing:
        staging.replace(out)  # also onto an empty directory
        return
    # Rename the old export aside first: there is never a moment with neither in place.
    old = out.parent / f".{out.name}.replaced-{uuid.uuid4().hex[:8]}"
    out.replace(old)
    staging.replace(out)
    shutil.rmtree(old, ignore_errors=True)


# ---- building ------------------------------------------------------------------------------
def _build(spec: Any, trial: Any, staging: Path, out: Path, schedule: list[int],
           stages: _Stages, *, onnx: bool, protocol: Any, progress: bool,
           started: float, final: FinalPhase | None, drift_guard: DriftGuard) -> ExportReport:
    from autoprune.compress import count_parameters, finalize, load, save
    from autoprune.data import encode, load_task
    from autoprune.estimate import build_estimator
    from autoprune.estimate.training import evaluate, torch_threads

    work = staging / ".work"  # checkpoints and scratch models; deleted before the move
    arch = Architecture.from_json(trial.architecture_json)
    estimator = build_estimator(spec, checkpoint_dir=work / "checkpoints", progress=progress)
    finetune = estimator.finetuner
    if finetune is None:  # the null estimator is refused earlier; this guards new kinds
        raise ExportError(f"the job's estimator ({spec.estimate.kind}) has no fine-tuner to train trial {trial.number} with")
    student, replayed = _train(finetune, arch, schedule, int(trial.fidelity), stages, final)
    if estimator.metric_name != finetune.metric_name:  # a proxy scoring a distillation loss
        replayed = None
    teacher = finetune.teacher

    stages.start("save and reload", 1)
    model = finalize(student).eval()
    save(model, staging, tokenizer=teacher.tokenizer)
    exported = load(staging)
    data = load_task(spec.task, seed=spec.estimate.seed)
    dev = encode(data.dev, teacher.tokenizer, finetune.recipe.eval_max_seq_len)
    batch_size = finetune.recipe.eval_batch_size
    _check_reload(model, exported, dev, batch_size)
    del model, student
    stages.advance()

    stages.start("dev set", 1)
    with torch_threads(finetune.threads):
        metrics = evaluate(exported, data.task, dev, batch_size)
    stages.advance()

    threads, profiled_dense, profiled_here = _latency_profile(spec)
    onnx_files: dict[str, Path] = {}
    onnx_check: dict[str, Any] | None = None
    if onnx:
        stages.start("onnx", 3)
        with _tempdir(work):
            onnx_files, onnx_check = _write_onnx(exported, teacher.model, dev, batch_size,
                                                 staging / ONNX_FILE, work, threads, stages,
                                                 dense_onnx=spec.latency.backend == "onnxruntime")
    backend = spec.latency.backend
    reference = "dense_onnx" if backend == "onnxruntime" else "dense"
    # Only a profile of this machine says how fast dense should run here.
    drift_base = profiled_dense if profiled_here else None
    # Timed in a new process each attempt, from the files just written (see fresh_process).
    def measure_once() -> dict[str, LatencyFigure]:
        stages.start("latency (in a fresh process)", 1)
        figures = run_in_fresh_process(
            measure_saved, str(staging), str(teacher.directory),
            {name: str(path) for name, path in onnx_files.items()}, spec.latency, threads,
            protocol)
        stages.advance()
        return figures

    figures, drifts = measure_steadily(
        measure_once, reference, drift_base, drift_guard,
        on_wait=lambda attempt, drift: stages.start(
            f"latency: dense {drift:+.0%} off its profile, waiting {drift_guard.wait_s:.0f} s "
            f"(attempt {attempt + 1} of {drift_guard.attempts})", 1))
    shutil.rmtree(work, ignore_errors=True)

    measured = figures["onnx" if backend == "onnxruntime" else "model"]
    dense = figures[reference]
    kept_drift = None if drift_base is None else dense.median_ms / drift_base - 1
    onnx_result = None
    if onnx_check is not None:
        onnx_result = OnnxResult(**onnx_check, bytes=(staging / ONNX_FILE).stat().st_size,
                                 latency=figures["onnx"],
                                 torch_over_onnx=figures["model"].median_ms
                                 / figures["onnx"].median_ms)
    files = {p.relative_to(staging).as_posix(): p.stat().st_size
             for p in sorted(staging.rglob("*")) if p.is_file()}
    metric_name = data.task.main_metric
    report = ExportReport(
        job=trial.job_id, trial=trial.number, directory=str(out), trial_state=trial.state,
        architecture=arch.to_list(), architecture_summary=arch.summary(),
        architecture_hash=arch.hash, search_steps=int(trial.fidelity), steps=schedule[-1],
        replayed_steps=schedule,
        final_phase=asdict(final) if final is not None and schedule[-1] > trial.fidelity else None,
        metric_name=metric_name, metric=metrics[metric_name],
        metrics=metrics, dev_samples=len(dev), search_metric=float(trial.metric_value),
        search_metric_replayed=replayed, search_eval_samples=len(finetune.shared.dev),
        teacher_metric=teacher.metric, metric_vs_teacher=metrics[metric_name] - teacher.metric,
        latency_backend=backend, latency_batch=spec.latency.batch,
        latency_seq_len=spec.latency.seq_len, latency_threads=threads,
        predicted_latency_ms=trial.predicted_latency_ms,
        measured_latency_ms=measured.median_ms, measured_latency_p10_ms=measured.p10_ms,
        measured_latency_p90_ms=measured.p90_ms, dense_latency_ms=dense.median_ms,
        dense_latency_p10_ms=dense.p10_ms, dense_latency_p90_ms=dense.p90_ms,
        latency_rounds=measured.rounds, speedup=dense.median_ms / measured.median_ms,
        profiled_dense_ms=profiled_dense,
        # The prediction is on the scale of the machine when it was profiled; this puts the
        # measurement on it too (relative to the dense model measured in the same rounds).
        measured_profile_scale_ms=(None if profiled_dense is None
                                   else measured.median_ms / dense.median_ms * profiled_dense),
        dense_drifts=drifts, dense_drift=kept_drift,
        drift_exceeded=kept_drift is not None and abs(kept_drift) > drift_guard.max_drift,
        parameters=count_parameters(exported), weights_bytes=files["model.safetensors"],
        total_bytes=sum(files.values()), files=files, onnx=onnx_result,
        seconds=round(time.monotonic() - started, 2),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        autoprune_version=__version__,
    )
    (staging / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def _train(finetune: Any, arch: Architecture, schedule: list[int], fidelity: int,
           stages: _Stages, final: FinalPhase | None) -> tuple[nn.Module, float | None]:
    """The student after the last call of ``schedule``, and its metric at ``fidelity``
    (the steps past it train as ``final`` says)."""
    stages.start("fine-tune", schedule[-1])
    checkpoint = None
    replayed = None
    student: nn.Module | None = None
    for steps in schedule:
        student, result = finetune.train(arch, steps, resume_from=checkpoint,
                                         on_step=stages.update,
                                         final=final if steps > fidelity else None,
                                         score=steps == fidelity)
        checkpoint = result.checkpoint
        if steps == fidelity:
            replayed = float(result.value)
    stages.update(schedule[-1])
    assert student is not None
    return student, replayed


def _check_reload(model: nn.Module, loaded: nn.Module, dev: Any, batch_size: int) -> None:
    """The directory must give back exactly the model that was saved."""
    from autoprune.data import collate, evaluation_batches
    from autoprune.estimate.training import model_inputs

    index = next(iter(evaluation_batches(dev, batch_size)))
    inputs = model_inputs(collate(dev, index))
    with torch.inference_mode():
        if not torch.equal(model(**inputs).logits, loaded(**inputs).logits):
            raise AutopruneError("export: the saved model does not reload to the same outputs")


# ---- latency -------------------------------------------------------------------------------
def _latency_profile(spec: Any) -> tuple[int, float | None, bool]:
    """The thread count the job's latency model was measured with, its dense figure, and
    whether it was measured on this machine."""
    from autoprune.latency import LatencyModel
    from autoprune.latency.profile import default_threads

    path = spec.latency.model
    if path is not None and path.is_file():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # another device: still the job's settings
                model = LatencyModel.load(path)
            return int(model.threads), float(model.dense_ms), not model.device_differences()
        except LatencyModelError:
            pass
    return int(spec.latency.threads or default_threads()), None, False


def _latency_inputs(latency: Any, vocab_size: int) -> dict[str, torch.Tensor]:
    # What the latency backends time: random ids, a full attention mask.
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, vocab_size, (latency.batch, latency.seq_len), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def measure_saved(model_dir: str, dense_dir: str, onnx_files: Mapping[str, str], latency: Any,
                  threads: int, protocol: Any) -> dict[str, LatencyFigure]:
    """Latency of the model saved in ``model_dir`` (the :func:`autoprune.load` format), of
    the dense model saved in ``dense_dir`` (Hugging Face format: the teacher) as the
    reference, and of each ONNX file, in interleaved rounds with the job's ``latency``
    settings. Run by :func:`run_in_fresh_process`, so it loads everything from disk."""
    from transformers import BertForSequenceClassification

    from autoprune.compress import load
    from autoprune.latency import measure

    model = load(Path(model_dir)).eval()
    dense = BertForSequenceClassification.from_pretrained(dense_dir).eval()
    inputs = _latency_inputs(latency, int(dense.config.vocab_size))
    runners: dict[str, Any] = {"model": model, "dense": dense}
    feeds = {**inputs, "token_type_ids": torch.zeros_like(inputs["input_ids"])}
    for name, path in onnx_files.items():
        runners[name] = _ort_runnable(_ort_session(Path(path), threads), feeds)
    reference = "dense_onnx" if latency.backend == "onnxruntime" else "dense"
    figures = measure(runners, protocol, threads=threads, inputs=inputs, reference=reference)
    return {name: LatencyFigure(m.median_ms, m.p10_ms, m.p90_ms, m.rounds)
            for name, m in figures.items()}


# ---- ONNX ----------------------------------------------------------------------------------
class _Logits(nn.Module):
    """Logits only, from the three BERT inputs: the exported graph's one output."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).logits


ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _fp32_twin(model: nn.Module) -> tuple[nn.Module, dict[str, nn.Module]]:
    """A copy whose quantized linears are fp32 ``nn.Linear`` with the same (dequantized)
    weights, and those quantized modules by name.

    Neither exporter takes PyTorch's dynamic int8 Linear (``quantized::linear_dynamic``), so
    the graph is exported in fp32 and its layers are quantized again in ONNX, with the same
    codes (:func:`_quantize_onnx`)."""
    from autoprune.compress import quantize as q
    from autoprune.compress.modules import set_submodule

    twin = copy.deepcopy(model)
    quantized: dict[str, nn.Module] = {}
    for name, module in list(twin.named_modules()):
        if q.is_int8_linear(module):
            parts = q.int8_parts(module)
            weight = parts["weight_int8"].float() * parts["weight_scales"].reshape(-1, 1)
            bias = parts.get("bias")
        elif isinstance(module, q.Int4Linear):
            weight, bias = module.dequantized_weight(), module.bias
        else:
            continue
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        with torch.no_grad():
            linear.weight.copy_(weight)
            if bias is not None:
                linear.bias.copy_(bias.detach())
        set_submodule(twin, name, linear)
        quantized[name] = module
    return twin.eval(), quantized


def _write_onnx(model: nn.Module, dense: nn.Module, dev: Any, batch_size: int, path: Path,
                work: Path, threads: int, stages: _Stages, *,
                dense_onnx: bool = False) -> tuple[dict[str, Path], dict[str, Any]]:
    """Export ``model`` to ``path`` and check it against PyTorch on real dev batches.

    The fp32 graph is checked first, strictly (:data:`FP32_TOLERANCE`): that proves the
    graph. Then int8 layers are quantized by ONNX Runtime (dynamic, per output channel,
    which reproduces our int8 codes and scales exactly) and int4 layers become
    ``MatMulNBits`` nodes holding our packed codes and scales; the quantized model must
    stay within :data:`QUANTIZED_NOISE_FACTOR` times PyTorch's own quantization noise."""
    from autoprune.compress import quantize as q
    from autoprune.data import collate, evaluation_batches
    from autoprune.estimate.training import model_inputs

    twin, quantized = _fp32_twin(model)
    all_batches = list(evaluation_batches(dev, batch_size))
    picks = sorted({int(i) for i in np.linspace(0, len(all_batches) - 1, ONNX_CHECK_BATCHES)})
    batches = [model_inputs(collate(dev, all_batches[i])) for i in picks]
    fp32 = work / "fp32.onnx"
    _export_graph(twin, max(batches, key=lambda b: b["input_ids"].numel()), fp32)
    stages.advance()
    int8 = sorted(n for n, m in quantized.items() if q.is_int8_linear(m))
    int4 = {n: m for n, m in quantized.items() if isinstance(m, q.Int4Linear)}
    _quantize_onnx(fp32, path, int8, int4)
    stages.advance()

    reference = _ort_session(fp32, threads)
    final = _ort_session(path, threads)
    fp32_diff = final_diff = noise = scale = 0.0
    agree = examples = classes = 0
    with torch.inference_mode():
        for batch in batches:
            torch_out = model(**batch).logits.float().numpy()
            twin_out = twin(**batch).logits.float().numpy()
            feeds = {name: batch[name].numpy() for name in ONNX_INPUTS}
            fp32_diff = max(fp32_diff, _max_diff(_run(reference, feeds), twin_out))
            onnx_out = _run(final, feeds)
            final_diff = max(final_diff, _max_diff(onnx_out, torch_out))
            noise = max(noise, _max_diff(torch_out, twin_out))
            scale = max(scale, float(np.abs(torch_out).max()))
            agree += int((onnx_out.argmax(-1) == torch_out.argmax(-1)).sum())
            examples += len(torch_out)
            classes = torch_out.shape[-1]
    floor = FP32_TOLERANCE * max(1.0, scale)
    if fp32_diff > floor:
        raise OnnxMismatchError(f"ONNX export: the fp32 graph differs from PyTorch by "
                                f"{fp32_diff:.3g} (tolerance {floor:.3g})")
    tolerance = QUANTIZED_NOISE_FACTOR * noise + floor
    if final_diff > tolerance:
        raise OnnxMismatchError(f"ONNX export: ONNX Runtime differs from PyTorch by "
                                f"{final_diff:.3g} (tolerance {tolerance:.3g})")
    stages.advance()
    files = {"onnx": path}
    if dense_onnx:  # the job's latency backend: the dense model is timed in ONNX Runtime too
        dense_path = work / "dense.onnx"
        _export_graph(dense.eval(), batches[0], dense_path)
        files["dense_onnx"] = dense_path
    parts = [f"int8 dynamic per-channel on {len(int8)} linears"] if int8 else []
    parts += [f"int4 MatMulNBits on {len(int4)} linears"] if int4 else []
    check = {
        "file": path.name, "quantization": ", ".join(parts) or "fp32",
        "batches_checked": len(batches), "examples_checked": examples,
        "max_abs_diff": final_diff, "tolerance": tolerance, "fp32_graph_max_abs_diff": fp32_diff,
        "torch_quantization_noise": noise,
        "prediction_agreement": agree / examples if classes > 1 else None,
    }
    return files, check


def _export_graph(module: nn.Module, sample: Mapping[str, torch.Tensor], path: Path) -> None:
    """The dynamo exporter (the default of torch 2.13), batch and sequence length dynamic."""
    from autoprune.latency.backends import _quiet

    inputs = {name: sample[name] for name in ONNX_INPUTS}
    if len(inputs["input_ids"]) < 2:  # a size-1 dimension would be specialised to 1
        inputs = {name: torch.cat([t, t]) for name, t in inputs.items()}
    dims = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings(), torch.no_grad(), _quiet():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            _Logits(module).eval(), tuple(inputs.values()), dynamo=True,
            input_names=list(ONNX_INPUTS), output_names=["logits"],
            dynamic_shapes={name: dims for name in ONNX_INPUTS}, external_data=False,
            verbose=False, artifacts_dir=str(path.parent))  # reports, if any, stay in scratch
    if program is None:  # pragma: no cover - the dynamo exporter always returns a program
        raise AutopruneError("ONNX export returned nothing")
    program.save(str(path), external_data=False)


def _quantize_onnx(source: Path, target: Path, int8: list[str],
                   int4: Mapping[str, nn.Module]) -> None:
    """``source`` (fp32) with the named linears quantized, written to ``target``."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from autoprune.latency.backends import _quiet

    nodes = _matmul_nodes(source, [*int8, *int4])
    if int8:
        with _quiet():
            quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=True,
                             nodes_to_quantize=[nodes[name] for name in int8])
    else:
        shutil.copyfile(source, target)
    if int4:
        proto = onnx.load(str(target))
        _int4_nodes(proto, {nodes[name]: module for name, module in int4.items()})
        onnx.save(proto, str(target))


def _matmul_nodes(path: Path, modules: list[str]) -> dict[str, str]:
    """The MatMul node of each named linear (from the scopes the exporter records)."""
    from autoprune.latency.backends import _in_scope, _weight_matmuls

    found = _weight_matmuls(path)
    nodes: dict[str, str] = {}
    for name in modules:
        matches = [node for node, scopes in found if scopes and _in_scope(name, scopes)]
        if len(matches) != 1:
            raise AutopruneError(f"ONNX export: {len(matches)} MatMul nodes for {name}, "
                                 "expected one")
        nodes[name] = matches[0]
    return nodes


def _int4_nodes(proto: Any, modules: Mapping[str, nn.Module]) -> None:
    """Replace MatMul nodes by ``MatMulNBits`` holding the modules' own packed int4 codes.

    ONNX Runtime's 4-bit quantizer would pick other scales (max/8 where ours are max/7),
    moving weights by up to a scale step; our layout is already its layout: per output row,
    blocks of :data:`~autoprune.compress.quantize.INT4_GROUP` inputs, two codes per byte
    (low nibble first), stored offset by 8 = its default zero point."""
    from onnx import helper, numpy_helper

    from autoprune.compress.quantize import INT4_GROUP

    graph = proto.graph
    replaced: list[Any] = []
    dropped: set[str] = set()
    for node in graph.node:
        module = modules.get(node.name)
        if module is None:
            replaced.append(node)
            continue
        if node.op_type != "MatMul":  # a Gemm would carry a transposition and a bias
            raise AutopruneError(f"ONNX export: {node.name} is a {node.op_type}, not a MatMul")
        rows, cols = int(module.out_features), int(module.in_features)
        packed = module.packed.numpy()
        blocks = packed.shape[1] * 2 // INT4_GROUP
        codes, scales = f"{node.name}.int4_codes", f"{node.name}.int4_scales"
        graph.initializer.extend([
            numpy_helper.from_array(packed.reshape(rows, blocks, INT4_GROUP // 2), codes),
            numpy_helper.from_array(module.scales.numpy().astype(np.float32).reshape(-1),
                                    scales),
        ])
        dropped.add(node.input[1])
        replaced.append(helper.make_node(
            "MatMulNBits", [node.input[0], codes, scales], list(node.output), name=node.name,
            domain="com.microsoft", K=cols, N=rows, bits=4, block_size=INT4_GROUP))
    del graph.node[:]
    graph.node.extend(replaced)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name not in dropped or init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    if not any(opset.domain == "com.microsoft" for opset in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid("com.microsoft", 1))


def _ort_session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run(session: Any, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
    wanted = {i.name for i in session.get_inputs()}  # the exporter drops unused inputs
    return np.asarray(session.run(None, {k: v for k, v in feeds.items() if k in wanted})[0])


def _ort_runnable(session: Any, feeds: Mapping[str, torch.Tensor]) -> Callable[[], Any]:
    wanted = {i.name for i in session.get_inputs()}
    arrays = {name: tensor.numpy() for name, tensor in feeds.items() if name in wanted}
    return lambda: session.run(None, arrays)


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


@contextmanager
def _tempdir(path: Path) -> Iterator[None]:
    """Point ``tempfile`` into ``path`` for a while: ONNX Runtime's quantizer writes its
    scratch models there, and nothing may be written outside the export directory."""
    path.mkdir(parents=True, exist_ok=True)
    previous = tempfile.tempdir
    tempfile.tempdir = str(path)
    try:
        yield
    finally:
        tempfile.tempdir = previous


def _digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


# ---- progress ------------------------------------------------------------------------------
class _Stages:
    """One Rich bar per stage on stderr (stdout keeps the summary); nothing when disabled.

    Started at the first stage, so the teacher's own bar (when it is not cached yet) runs
    before this display rather than through it."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> _Stages:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def start(self, stage: str, total: int) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(),
                                 console=Console(stderr=True))
            self._bar.start()
        elif self._task is not None:
            task = self._bar.tasks[-1]
            self._bar.update(self._task, completed=task.total)
        self._task = self._bar.add_task(stage, total=max(total, 1))

    def advance(self, steps: int = 1) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, steps)

    def update(self, completed: int, total: int | None = None) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=completed,
                             **({"total": total} if total is not None else {}))
