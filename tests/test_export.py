"""``autoprune export``: a searched trial out as a real compressed model, measured and scored.

One tiny job (the tiny BERT of ``tinybert.py``, a real teacher and real distilled fine-tunes,
a stand-in latency model) is searched once per module with the local executor; each test then
exports from its store into its own directory.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from tinybert import write_model, write_sst2_dir
from typer.testing import CliRunner

import autoprune
from autoprune.cli import app
from autoprune.errors import ExportError, NotFoundError
from autoprune.export import DriftGuard, LatencyFigure, export_trial, measure_steadily
from autoprune.latency import QUICK
from autoprune.space import Architecture, LayerConfig
from autoprune.spec import JobSpec
from autoprune.store import Store

runner = CliRunner()

SPACE = {
    "name": "tiny-full",
    "per_layer": {"keep": [True], "heads": [2, 4], "ffn": [0.5, 1.0], "sparsity": [0.0, 0.5],
                  "pattern": ["dense", "unstructured"], "bits": [32, 8]},
}
# Every kind of layer the engine makes: pruned heads and neurons, sparsity, int8 and int4
# (int4 is outside the searched space: the search covers fp32 and int8).
MIXED = Architecture((LayerConfig(heads=2, ffn=0.5, sparsity=0.5, pattern="unstructured", bits=8),
                      LayerConfig(heads=4, ffn=0.5, bits=4)))


class TinyLatency:
    """A stand-in latency model: kept capacity, dense = 9 ms."""

    dense_ms = 9.0

    def predict(self, arch: Architecture) -> float:
        return 1.0 + 2.0 * sum(layer.heads / 4 + layer.ffn for layer in arch if layer.keep)


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from autoprune.runner.local import LocalExecutor
    from autoprune.runner.prepare import prepare
    from autoprune.runner.session import SearchSession

    root = tmp_path_factory.mktemp("export")
    (root / "space.yaml").write_text(yaml.safe_dump(SPACE))
    spec = JobSpec.from_dict({
        "name": "export-test",
        "model": str(write_model(root / "model", num_layers=2)),
        "task": {"name": "sst2", "data_dir": str(write_sst2_dir(root / "SST-2", n_dev=60)),
                 "max_seq_len": 32},
        "latency": {"model": str(root / "absent.json"), "profile": "auto", "budget_ratio": 1.0,
                    "batch": 1, "seq_len": 16, "threads": 1},
        "space": str(root / "space.yaml"),
        "controller": {"name": "evolution", "evaluations": 4, "population": 4, "seed": 1},
        "estimate": {"steps": 12, "rungs": [4, 12], "batch_size": 16, "lr": 2e-3,
                     "max_seq_len": 32, "teacher_steps": 40, "teacher_lr": 2e-3,
                     "freeze_embeddings": False, "eval_samples": 20},
        "executor": {"kind": "local", "workers": 1},
    }, base_dir=root)
    db = f"sqlite:///{root / 'trials.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUTOPRUNE_CACHE", str(root / "cache"))
        patch.setenv("AUTOPRUNE_HOME", str(root / "home"))
        with Store(db) as store:
            job_id = store.create_job(spec.to_json(), spec.name)
            prepared = prepare(spec, latency_model=TinyLatency(), quiet=True)
            LocalExecutor().run(SearchSession(store, job_id, prepared, batch_size=2))
            # Trials the search did not make: one of every kind of layer, and refusals.
            fields = {"predicted_latency_ms": 5.0, "metric_name": "accuracy", "finished": True}
            mixed = store.add_trial(job_id, MIXED.to_json(), MIXED.hash, state="complete",
                                    fidelity=12, metric_value=0.5, **fields).number
            others = {}
            for ffn, (state, extra) in zip((0.25, 0.375, 0.625), [
                ("failed", {"error": "RuntimeError: simulated out-of-memory"}),
                ("running", {}),
                ("pruned", {"fidelity": 0, "extra": {"infeasible": True}}),
            ]):  # FFN fractions outside the space: never one of the searched architectures
                arch = Architecture.uniform(2, LayerConfig(heads=2, ffn=ffn))
                others[state] = store.add_trial(job_id, arch.to_json(), arch.hash, state=state,
                                                **extra).number
            store.finish_job(job_id, "completed")
            complete = [t for t in store.trials(job_id, states=["complete"])
                        if t.number != mixed]
        assert complete, "the search finished no trial"
        # The searched trial with the most quantized layers: the real int8 path gets exercised.
        best = max(complete, key=lambda t: sum(layer.bits == 8 for layer in
                                               Architecture.from_json(t.architecture_json)))
        yield {"db": db, "job": job_id, "spec": spec, "trial": best.number, "mixed": mixed,
               **others}


def _store(searched: dict[str, Any]) -> Store:
    return Store(searched["db"])


def _dev_batch(directory: Path, spec: JobSpec, n: int = 16) -> dict[str, torch.Tensor]:
    from autoprune.data import collate, encode, load_task
    from autoprune.estimate.training import model_inputs
    from autoprune.models import load_tokenizer

    data = load_task(spec.task)
    dev = encode(data.dev, load_tokenizer(str(directory)), spec.task.max_seq_len)
    return model_inputs(collate(dev, np.arange(n)))


def test_export_writes_the_real_compressed_model_and_reports_it(
        searched: dict[str, Any], tmp_path: Path) -> None:
    from autoprune.compress import count_parameters, finalize
    from autoprune.compress import quantize as q
    from autoprune.estimate import build_estimator
    from autoprune.space import ModelShape, architecture_stats

    out = tmp_path / "exported"
    with _store(searched) as store:
        trial = store.get_trial(searched["job"], searched["trial"])
        report = export_trial(store, searched["job"], trial.number, out, progress=False,
                              protocol=QUICK)
        updated = store.get_trial(searched["job"], trial.number)
        artifacts = store.artifacts(searched["job"], kind="export")

    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "autoprune.json", "report.json", "tokenizer_config.json"} <= names
    assert "model.onnx" not in names and ".work" not in names
    assert [p.name for p in tmp_path.iterdir()] == ["exported"]  # no staging left beside it

    # The directory holds the finalized model: no masks or fake quantization, real int8.
    loaded = autoprune.load(out)
    arch = Architecture.from_json(trial.architecture_json)
    assert not any(hasattr(m, "parametrizations") for m in loaded.modules())
    int8 = sum(q.is_int8_linear(m) for m in loaded.modules())
    assert int8 == 6 * sum(layer.bits == 8 for layer in arch) > 0

    # ... and it is the model the search scored: rebuilt here through the same rungs.
    estimator = build_estimator(searched["spec"], checkpoint_dir=tmp_path / "ck", progress=False)
    _, first = estimator.train(arch, 4)
    student, result = estimator.train(arch, 12, resume_from=first.checkpoint)
    assert result.value == pytest.approx(trial.metric_value)
    rebuilt = finalize(student).eval()
    batch = _dev_batch(out, searched["spec"])
    with torch.inference_mode():
        assert torch.equal(loaded(**batch).logits, rebuilt(**batch).logits)

    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(report.to_dict()))
    assert on_disk["architecture"] == arch.to_list()
    assert on_disk["architecture_summary"] == arch.summary()
    assert (report.job, report.trial, report.directory) == (searched["job"], trial.number, str(out))
    assert report.steps == report.search_steps == trial.fidelity == 12
    assert report.replayed_steps == [4, 12]
    assert report.search_metric == trial.metric_value
    assert report.search_metric_replayed == pytest.approx(trial.metric_value)
    assert (report.dev_samples, report.search_eval_samples) == (60, 20)  # the whole dev split
    assert report.metric_name == "accuracy" and 0.0 <= report.metric <= 1.0
    assert report.metrics["accuracy"] == report.metric
    assert report.metric_vs_teacher == pytest.approx(report.metric - report.teacher_metric)
    assert report.predicted_latency_ms == trial.predicted_latency_ms
    assert report.measured_latency_p10_ms <= report.measured_latency_ms <= report.measured_latency_p90_ms
    assert report.dense_latency_ms > 0 and report.latency_rounds >= QUICK.rounds
    assert report.speedup == pytest.approx(report.dense_latency_ms / report.measured_latency_ms)
    assert (report.latency_batch, report.latency_seq_len, report.latency_threads) == (1, 16, 1)
    assert report.profiled_dense_ms is None  # this job's latency model is a stand-in
    assert (report.dense_drifts, report.dense_drift, report.drift_exceeded) == ([], None, False)
    shape = ModelShape.from_config(loaded.config, num_labels=2)
    assert report.parameters == count_parameters(loaded) == architecture_stats(arch, shape).parameters
    assert report.files == {p.name: p.stat().st_size for p in out.iterdir() if p.name != "report.json"}
    assert report.weights_bytes == (out / "model.safetensors").stat().st_size
    assert report.total_bytes == sum(report.files.values())
    assert report.onnx is None

    assert updated.measured_latency_ms == report.stored_latency_ms == on_disk["stored_latency_ms"]
    assert updated.state == trial.state and updated.metric_value == trial.metric_value
    assert [(a.uri, a.trial_number) for a in artifacts] == [(str(out), trial.number)]
    assert artifacts[0].content_hash and artifacts[0].extra["metric"] == report.metric


def test_onnx_export_matches_pytorch_on_every_kind_of_layer(
        searched: dict[str, Any], tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    out = tmp_path / "onnx"
    with _store(searched) as store:
        report = export_trial(store, searched["job"], searched["mixed"], out, onnx=True,
                              progress=False, protocol=QUICK)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onnx"]  # no side files outside DIR
    assert (out / "model.onnx").is_file() and not (out / ".work").exists()
    result = report.onnx
    assert result is not None and result.file == "model.onnx"
    assert result.bytes == (out / "model.onnx").stat().st_size == report.files["model.onnx"]
    assert result.max_abs_diff <= result.tolerance
    assert result.fp32_graph_max_abs_diff <= 1e-4
    assert "int8" in result.quantization and "int4" in result.quantization
    assert result.latency.median_ms > 0 and result.torch_over_onnx > 0
    assert json.loads((out / "report.json").read_text())["onnx"]["max_abs_diff"] == result.max_abs_diff
    ops = {node.op_type for node in onnx.load(str(out / "model.onnx")).graph.node}
    assert {"MatMulInteger", "MatMulNBits"} <= ops

    # A batch and a length the graph was not traced with (its dimensions are dynamic).
    batch = _dev_batch(out, searched["spec"], n=5)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = {i.name: batch[i.name].numpy() for i in session.get_inputs()}
    onnx_logits = session.run(None, feeds)[0]
    with torch.inference_mode():
        torch_logits = autoprune.load(out)(**batch).logits.numpy()
    assert np.abs(onnx_logits - torch_logits).max() <= result.tolerance


def test_steps_trains_further_and_force_replaces_a_previous_export(
        searched: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "model"
    out.mkdir()  # an empty directory is fine
    with _store(searched) as store:
        first = export_trial(store, searched["job"], searched["trial"], out, progress=False,
                             protocol=QUICK)
        with pytest.raises(ExportError, match="not empty"):
            export_trial(store, searched["job"], searched["trial"], out, steps=20,
                         progress=False, protocol=QUICK)
        with pytest.raises(ExportError, match="already trained for 12 steps"):
            export_trial(store, searched["job"], searched["trial"], out, steps=8, force=True,
                         progress=False, protocol=QUICK)
        second = export_trial(store, searched["job"], searched["trial"], out, steps=20,
                              force=True, progress=False, protocol=QUICK)
        assert len(store.artifacts(searched["job"], trial_number=searched["trial"])) >= 2
    assert (first.steps, second.steps, second.search_steps) == (12, 20, 12)
    assert second.replayed_steps == [4, 12, 20]
    assert second.search_metric_replayed == first.search_metric_replayed
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["steps"] == 20
    # Only the steps past the search's fidelity train in the final phase, and the report says so.
    assert first.final_phase is None
    assert second.final_phase == on_disk["final_phase"] == {
        "lr": 1e-4, "hidden_weight": 1.0, "label_weight": 0.0, "last_to_last": False}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_the_cli_exports_and_prints_a_summary(searched: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "cli"
    result = runner.invoke(app, ["export", str(searched["job"]), "--trial",
                                 str(searched["trial"]), "--out", str(out), "--db", searched["db"]])
    assert result.exit_code == 0, result.stderr
    assert f"exported job {searched['job']} trial {searched['trial']}" in result.stdout
    assert "faster" in result.stdout and "teacher" in result.stdout
    assert autoprune.load(out) is not None
    report = json.loads((out / "report.json").read_text())
    with _store(searched) as store:
        trial = store.get_trial(searched["job"], searched["trial"])
        assert trial.measured_latency_ms == report["stored_latency_ms"]


def test_trial_best_exports_the_best_feasible_trial(searched: dict[str, Any], tmp_path: Path) -> None:
    from autoprune.front import front_report

    with _store(searched) as store:
        best = front_report(store.get_job(searched["job"]), store.trials(searched["job"])).best
    assert best is not None
    out = tmp_path / "best"
    result = runner.invoke(app, ["export", str(searched["job"]), "--trial", "best", "--out", str(out),
                                 "--db", searched["db"]])
    assert result.exit_code == 0, result.stderr
    assert json.loads((out / "report.json").read_text())["trial"] == best.number


@pytest.mark.parametrize("case, expected", [
    ("non-empty", "not empty"),
    ("not-an-export", "not an autoprune export"),
    ("failed", "failed (RuntimeError: simulated out-of-memory)"),
    ("running", "is running"),
    ("infeasible", "never trained"),
    ("unknown-trial", "has no trial 999"),
    ("unknown-job", "no job 999"),
    ("fewer-steps", "already trained for 12 steps"),
    ("bad-trial", "expected a trial number or `best`"),
    ("confirm-not-best", "needs --trial best"),
    ("confirm-non-empty", "exists and is not empty"),
])
def test_refusals_exit_2_with_one_line_and_leave_dir_untouched(
        searched: dict[str, Any], tmp_path: Path, case: str, expected: str) -> None:
    out = tmp_path / "out"
    job, trial = str(searched["job"]), str(searched["trial"])
    extra: list[str] = []
    if case in ("non-empty", "not-an-export", "confirm-non-empty"):
        out.mkdir()
        (out / "keep.txt").write_text("mine\n")
        extra = ["--force"] if case in ("not-an-export", "confirm-non-empty") else []
    if case.startswith("confirm"):
        extra += ["--confirm", "2"]
        trial = "best" if case == "confirm-non-empty" else trial
    trial = {"failed": str(searched["failed"]), "running": str(searched["running"]),
             "infeasible": str(searched["pruned"]), "unknown-trial": "999",
             "bad-trial": "first"}.get(case, trial)
    job = "999" if case == "unknown-job" else job
    extra += ["--steps", "8"] if case == "fewer-steps" else []
    before = sorted((p.name, p.read_text()) for p in tmp_path.rglob("*") if p.is_file())

    result = runner.invoke(app, ["export", job, "--trial", trial, "--out", str(out), "--onnx",
                                 "--db", searched["db"], *extra])

    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
    assert sorted((p.name, p.read_text()) for p in tmp_path.rglob("*") if p.is_file()) == before
    assert [p.name for p in tmp_path.iterdir()] == (["out"] if out.exists() else [])


def test_confirm_exports_the_best_candidates_and_keeps_the_best_export(
        searched: dict[str, Any], tmp_path: Path) -> None:
    from autoprune.confirm import ConfirmReport, confirm
    from autoprune.front import best_within_budget, job_budget_ms

    out = tmp_path / "confirmed"
    with _store(searched) as store:
        job, trials = store.get_job(searched["job"]), store.trials(searched["job"])
        expected = best_within_budget(trials, job_budget_ms(job, trials), 2, measured=True)
        report = confirm(store, searched["job"], 2, out, progress=False, protocol=QUICK)
        recorded = {n: store.get_trial(searched["job"], n).measured_latency_ms
                    for n in (row.number for row in expected)}
        with pytest.raises(ExportError, match="exists and is not empty .--force replaces"):
            confirm(store, searched["job"], 1, out, progress=False, protocol=QUICK)
        with pytest.raises(ExportError, match="--confirm 0: must be >= 1"):
            confirm(store, searched["job"], 0, tmp_path / "none", progress=False)
        before = sorted((p.relative_to(out), p.read_bytes()) for p in out.rglob("*")
                        if p.is_file())
        # A confirmation that fails leaves nothing of its own, and the earlier one intact.
        for where in (out, tmp_path / "fresh"):
            with pytest.raises(ExportError, match="already trained for 12 steps"):
                confirm(store, searched["job"], 2, where, steps=8, force=True,
                        progress=False, protocol=QUICK)
        assert not (tmp_path / "fresh").exists()
        assert sorted((p.relative_to(out), p.read_bytes()) for p in out.rglob("*")
                      if p.is_file()) == before

    assert len(expected) == 2 and expected[0].metric >= expected[1].metric
    assert [c.trial for c in report.candidates] == [row.number for row in expected]
    assert [c.search_metric for c in report.candidates] == [row.metric for row in expected]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["best", "confirm.json", *(f"trial-{row.number}" for row in expected)])
    for candidate in report.candidates:  # each a full export, re-measured on its trial
        exported = json.loads((Path(candidate.directory) / "report.json").read_text())
        assert exported["trial"] == candidate.trial and exported["metric"] == candidate.metric
        assert recorded[candidate.trial] == candidate.measured_latency_ms
    best = report.best
    assert best is not None
    assert best.metric == max(c.metric for c in report.candidates if c.within_budget is not False)
    assert (out / "best").resolve() == Path(best.directory)
    assert autoprune.load(out / "best") is not None
    on_disk = json.loads((out / "confirm.json").read_text())
    assert on_disk["best_trial"] == best.trial and ConfirmReport.from_dict(on_disk) == report
    assert [p.name for p in tmp_path.iterdir()] == ["confirmed"]


def test_confirm_keeps_the_best_export_within_the_budget() -> None:
    from autoprune.confirm import ConfirmedCandidate, ConfirmReport

    def candidate(trial: int, metric: float, within: bool | None) -> ConfirmedCandidate:
        return ConfirmedCandidate(trial, "h2/f1", 0.8, metric, 1.0, within, f"/x/trial-{trial}")

    over = ConfirmReport(1, 100, 2.0, [candidate(0, 0.9, False), candidate(1, 0.8, True)])
    assert over.best is not None and over.best.trial == 1
    assert "over budget" in over.summary_lines()[0] and "kept trial 1" in over.summary_lines()[-1]
    assert ConfirmReport(1, None, 2.0, [candidate(0, 0.9, False)]).best is None
    unbudgeted = ConfirmReport(1, None, None, [candidate(0, 0.7, None), candidate(1, 0.75, None)])
    assert unbudgeted.best is not None and unbudgeted.best.trial == 1


def test_unknown_job_and_trial_are_not_found_errors(searched: dict[str, Any],
                                                    tmp_path: Path) -> None:
    with _store(searched) as store:
        with pytest.raises(NotFoundError):
            export_trial(store, 999, 0, tmp_path / "x", progress=False)
        with pytest.raises(NotFoundError):
            export_trial(store, searched["job"], 999, tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()


# ---- slow periods --------------------------------------------------------------------------
def _figures(dense_ms: float) -> dict[str, LatencyFigure]:
    return {"dense": LatencyFigure(dense_ms, dense_ms, dense_ms, 9),
            "model": LatencyFigure(dense_ms / 2, dense_ms / 2, dense_ms / 2, 9)}


@pytest.mark.parametrize(("dense_runs", "attempts", "kept"), [
    ([10.5], 1, 10.5),               # within 15% of the profiled 10 ms at once
    ([13.0, 10.9], 2, 10.9),         # a slow period, then quiet again
    ([14.0, 12.0, 13.0], 3, 12.0),   # slow throughout: the closest of all attempts is kept
    ([7.0, 9.2], 1, 7.0),            # faster than profiled: waiting will not slow it down
    ([13.0, 8.0, 10.0], 2, 8.0),     # slow, then fast: stop there, keep the closer one
])
def test_measurement_is_taken_again_while_dense_runs_slower_than_its_profile(
        dense_runs: list[float], attempts: int, kept: float) -> None:
    runs = iter(dense_runs)
    slept: list[float] = []
    waits: list[tuple[int, float]] = []
    figures, drifts = measure_steadily(lambda: _figures(next(runs)), "dense", 10.0,
                                       DriftGuard(max_drift=0.15, attempts=3, wait_s=42.0),
                                       sleep=slept.append,
                                       on_wait=lambda a, d: waits.append((a, d)))
    assert figures["dense"].median_ms == kept
    assert drifts == pytest.approx([d / 10.0 - 1 for d in dense_runs[:attempts]], abs=1e-4)
    assert slept == [42.0] * (attempts - 1)
    assert [a for a, _ in waits] == list(range(1, attempts))
    assert [d for _, d in waits] == pytest.approx(drifts[:-1])


def test_without_a_profile_of_this_machine_the_latency_is_measured_once() -> None:
    calls: list[int] = []

    def once() -> dict[str, LatencyFigure]:
        calls.append(1)
        return _figures(50.0)

    figures, drifts = measure_steadily(once, "dense", None, DriftGuard(), sleep=pytest.fail)
    assert (len(calls), drifts, figures["dense"].median_ms) == (1, [], 50.0)


@pytest.mark.parametrize(("fields", "expected"), [
    ({"max_drift": 0.0}, "--max-drift"), ({"attempts": 0}, "--drift-attempts"),
    ({"wait_s": -1.0}, "wait"),
])
def test_drift_guard_refuses_nonsense(fields: dict[str, float], expected: str) -> None:
    with pytest.raises(ExportError, match=expected):
        DriftGuard(**fields)  # type: ignore[arg-type]


def test_cli_refuses_a_bad_max_drift_before_touching_anything(searched: dict[str, Any],
                                                             tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", str(searched["job"]), "--trial", str(searched["trial"]),
                                 "--out", str(tmp_path / "out"), "--max-drift", "-0.1",
                                 "--db", searched["db"]])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "--max-drift" in lines[0]
    assert not (tmp_path / "out").exists()


def test_export_warns_when_the_machine_is_off_its_profile(
        searched: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A profile of "this machine" whose dense ran at 1000 s: every measurement is far off it.
    monkeypatch.setattr("autoprune.export._latency_profile", lambda spec: (1, 1e6, True))
    out = tmp_path / "out"
    with _store(searched) as store:
        report = export_trial(store, searched["job"], searched["trial"], out, progress=False,
                              protocol=QUICK, drift_guard=DriftGuard(attempts=2, wait_s=0.0))
    # Dense ran faster than profiled: measured once, not waited out.
    assert len(report.dense_drifts) == 1 and report.dense_drifts[0] < -0.99
    assert report.dense_drift == pytest.approx(report.dense_latency_ms / 1e6 - 1)
    assert report.drift_exceeded
    warning = next(line for line in report.summary() if line.startswith("warning: dense ran"))
    assert "runs faster than the one profiled: profile it" in warning  # waiting will not help
    assert "in the one measurement" in warning
    slower = dataclasses.replace(report, dense_drifts=[0.3, 0.2], dense_drift=0.2)
    warning = next(line for line in slower.summary() if line.startswith("warning: dense ran"))
    assert "+20% off" in warning and "in all 2 measurements" in warning
    assert "export again when it is quiet" in warning
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["dense_drifts"] == report.dense_drifts and on_disk["drift_exceeded"] is True


def test_export_measures_its_latency_in_a_fresh_process(
        searched: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autoprune import export
    from autoprune.fresh_process import run_in_fresh_process

    calls: list[str] = []

    def recording(function: Any, *args: Any) -> Any:
        calls.append(function.__name__)
        result = run_in_fresh_process(function, *args)
        calls.append("returned")
        return result

    monkeypatch.setattr(export, "run_in_fresh_process", recording)
    with _store(searched) as store:
        report = export.export_trial(store, searched["job"], searched["trial"], tmp_path / "out",
                                     progress=False, protocol=QUICK)
    assert calls == ["measure_saved", "returned"]
    assert report.measured_latency_ms > 0 and report.dense_latency_ms > 0
    assert report.latency_rounds >= QUICK.rounds
