"""The search loop on the real store with cheap estimators: results, failures, resume, cancel."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import pytest

from autoprune.errors import LatencyModelError
from autoprune.estimate.base import EstimateResult, NullEstimator
from autoprune.runner.local import LocalExecutor
from autoprune.runner.prepare import load_or_profile_latency_model, prepare
from autoprune.runner.session import FINISHED, JobCancelled, SearchSession
from autoprune.space import Architecture
from autoprune.spec import JobSpec
from autoprune.store import Store


def write_tiny_sst2(directory: Path, n_train: int = 24, n_dev: int = 8) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    words = ["good", "bad", "fine", "awful", "great", "poor"]
    for name, n in (("train.tsv", n_train), ("dev.tsv", n_dev)):
        rows = ["sentence\tlabel"] + [f"a {words[i % 6]} film \t{int(i % 6 in (0, 2, 4))}"
                                      for i in range(n)]
        (directory / name).write_text("\n".join(rows) + "\n")
    return directory


class FlopsLatency:
    """A stand-in latency model: dense = 10 ms, scaled by analytic FLOPs."""

    dense_ms = 10.0

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, arch: Architecture) -> float:
        from autoprune.space import MINILM_L6, architecture_stats

        self.calls += 1
        dense = architecture_stats(Architecture.dense(6, 12), MINILM_L6).flops
        return 0.5 + 9.5 * architecture_stats(arch, MINILM_L6).flops / dense


class ScriptedEstimator(NullEstimator):
    """The null estimator, except for architectures it is told to fail or return NaN on."""

    def __init__(self) -> None:
        super().__init__()
        self.fail: set[str] = set()
        self.nan: set[str] = set()
        self.evaluated: list[tuple[str, int]] = []

    def evaluate(self, arch: Architecture, steps: int, resume_from: Any = None) -> EstimateResult:
        self.evaluated.append((arch.hash, steps))
        if arch.hash in self.fail:
            raise RuntimeError("simulated out-of-memory")
        result = super().evaluate(arch, steps, resume_from)
        if arch.hash in self.nan:
            return EstimateResult(result.metric_name, math.nan, steps, 0.0, 0)
        # More steps, slightly better: lets ASHA rungs matter.
        return EstimateResult(result.metric_name, result.value + steps / 1e4, steps, 0.0, steps * 4)


@pytest.fixture()
def job_spec(tmp_path: Path) -> Any:
    def make(**overrides: Any) -> JobSpec:
        data = {
            "name": "runner-test",
            "model": "minilm-l6",
            "task": {"name": "sst2", "data_dir": str(write_tiny_sst2(tmp_path / "SST-2"))},
            "latency": {"model": str(tmp_path / "lat.json"), "profile": "auto", "budget_ratio": 0.6},
            "space": "bert-structured",
            "controller": {"name": "evolution", "evaluations": 10, "population": 4, "seed": 3},
            "estimate": {"steps": 30, "rungs": [10, 30], "kind": "null"},
            "executor": {"kind": "local", "workers": 1},
        }
        for key, value in overrides.items():
            data[key] = {**data[key], **value} if isinstance(value, dict) else value
        return JobSpec.from_dict(data, base_dir=tmp_path)

    return make


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    with Store(f"sqlite:///{tmp_path / 'trials.db'}") as store:
        yield store


def run(store: Store, spec: JobSpec, estimator: Any, job_id: int | None = None,
        stop_after: int | None = None) -> SearchSession:
    job_id = job_id if job_id is not None else store.create_job(spec.to_json(), spec.name)
    prepared = prepare(spec, estimator_factory=lambda: estimator, latency_model=FlopsLatency(),
                       quiet=True)
    session = SearchSession(store, job_id, prepared, batch_size=2)
    if stop_after is None:
        LocalExecutor().run(session)
        return session
    # Run part of the job, then "crash" with the next candidate marked running.
    from autoprune.runner.asha import SuccessiveHalving
    from autoprune.runner.local import evaluate_with_rungs

    halving = SuccessiveHalving(spec.estimate.fidelities, spec.estimate.reduction_factor)
    for _ in range(stop_after):
        candidate = session.next_candidate()
        assert candidate not in (None, FINISHED)
        session.mark_running(candidate)
        session.record(candidate, evaluate_with_rungs(estimator, candidate, spec.estimate.fidelities,
                                                      halving, "w"))
    candidate = session.next_candidate()
    session.mark_running(candidate)
    return session


def test_a_job_spends_its_budget_and_records_everything(store: Store, job_spec) -> None:
    spec = job_spec()
    session = run(store, spec, ScriptedEstimator())
    trials = store.trials(session.job_id)
    evaluated = [t for t in trials if not t.extra.get("infeasible")]
    infeasible = [t for t in trials if t.extra.get("infeasible")]
    assert len(evaluated) == spec.controller.evaluations == session.progress.evaluated
    assert all(t.state in ("complete", "pruned") for t in evaluated)
    assert all(t.metric_value is not None and t.fidelity in (10, 30) for t in evaluated)
    assert any(t.state == "pruned" for t in evaluated)  # ASHA stopped someone at rung 10
    budget = session.prepared.budget_ms
    for trial in infeasible:  # told back at once, never fine-tuned
        assert trial.state == "pruned" and trial.predicted_latency_ms > budget and trial.fidelity == 0
    for trial in evaluated:
        assert trial.predicted_latency_ms <= budget
        assert trial.reward == pytest.approx(trial.metric_value)  # within budget: reward = metric
    assert len({t.architecture_hash for t in trials}) == len(trials)
    assert [t.number for t in trials] == list(range(len(trials)))


def test_a_margin_searches_under_the_budget_and_records_the_budget(store: Store, job_spec) -> None:
    spec = job_spec(latency={"margin": 0.2})
    session = run(store, spec, ScriptedEstimator())
    budget = session.prepared.budget_ms
    assert session.prepared.objective.budget_ms == pytest.approx(0.8 * budget)
    trials = store.trials(session.job_id)
    assert {t.extra["budget_ms"] for t in trials} == {round(budget, 4)}  # what pareto checks
    evaluated = [t for t in trials if not t.extra.get("infeasible")]
    assert evaluated and all(t.predicted_latency_ms <= 0.8 * budget for t in evaluated)


class ValidatedFlopsLatency(FlopsLatency):
    """The stand-in, with the held-out error a validated latency model reports."""

    path = Path("lat.json")

    def __init__(self, margin: float | None) -> None:
        super().__init__()
        self.margin = margin

    def suggested_margin(self) -> float | None:
        return self.margin


def test_margin_auto_holds_back_the_latency_models_held_out_error(job_spec) -> None:
    spec = job_spec(latency={"margin": "auto"})
    prepared = prepare(spec, estimator_factory=NullEstimator, latency_model=ValidatedFlopsLatency(0.125),
                       quiet=True)
    assert prepared.objective.budget_ms == pytest.approx(0.875 * prepared.budget_ms)
    assert prepared.budget_ms == pytest.approx(0.6 * FlopsLatency.dense_ms)  # the budget itself stays
    with pytest.raises(LatencyModelError, match=r"latency.margin: auto needs held-out validation in lat.json; "
                                                r"run `autoprune latency validate lat.json --save`"):
        prepare(spec, estimator_factory=NullEstimator, latency_model=ValidatedFlopsLatency(None), quiet=True)


def test_a_job_that_profiles_for_margin_auto_validates_the_new_model(job_spec, monkeypatch, tmp_path) -> None:
    import autoprune.latency as latency

    calls: list[tuple[str, bool]] = []
    committed = Path(__file__).resolve().parent.parent / "latency_models" / "this-cpu-torch-b1-s128.json"

    def fake_profile(model, backend, batch, seq_len, threads, out, **kwargs):
        calls.append(("profile", False))
        Path(out).write_text(committed.read_text())
        return latency.LatencyModel.load(out)

    def fake_validate(model, *args, save=False, **kwargs):
        calls.append(("validate", save))
        return model.document.validation

    monkeypatch.setattr(latency, "profile", fake_profile)
    monkeypatch.setattr(latency, "validate", fake_validate)
    for margin, expected in ((0.03, [("profile", False)]), ("auto", [("profile", False), ("validate", True)])):
        calls.clear()
        spec = job_spec(latency={"profile": True, "margin": margin})
        with warnings.catch_warnings():  # the committed model may come from another CPU
            warnings.simplefilter("ignore")
            model = load_or_profile_latency_model(spec, quiet=True)
        assert calls == expected and model.path == tmp_path / "lat.json"


def test_profiling_over_another_devices_model_keeps_that_file(job_spec, monkeypatch, tmp_path) -> None:
    import autoprune.latency as latency

    committed = Path(__file__).resolve().parent.parent / "latency_models" / "this-cpu-torch-b1-s128.json"
    foreign = json.loads(committed.read_text())
    foreign["fingerprint"] = {**foreign["fingerprint"], "cpu_id": "0/0/0"}  # never this machine
    foreign["created"] = "2026-01-02T03:04:05+00:00"
    (tmp_path / "lat.json").write_text(json.dumps(foreign))
    fresh = committed.read_text()

    def fake_profile(model, backend, batch, seq_len, threads, out, **kwargs):
        Path(out).write_text(fresh)
        return latency.LatencyModel.load(out)

    monkeypatch.setattr(latency, "profile", fake_profile)
    with warnings.catch_warnings():  # the committed model may come from another CPU
        warnings.simplefilter("ignore")
        load_or_profile_latency_model(job_spec(), quiet=True)
        load_or_profile_latency_model(job_spec(latency={"profile": True}), quiet=True)
    kept = tmp_path / "lat.replaced-20260102T030405.json"
    assert json.loads(kept.read_text()) == foreign  # kept under its own creation time
    assert (tmp_path / "lat.json").read_text() == fresh
    created = json.loads(fresh)["created"][:19].replace("-", "").replace(":", "")
    assert {p.name for p in tmp_path.glob("lat*.json")} == {
        "lat.json", f"lat.replaced-{created}.json", kept.name}


@pytest.mark.parametrize(("speed", "resuming", "profiles"), [
    (0.78, False, True),    # this machine outruns the profile of its CPU model
    (0.95, False, False),   # within the noise
    (1.40, False, False),   # slower: a busy moment, not a reason to profile
    (0.78, True, False),    # a resumed job keeps the model its trials were budgeted with
])
def test_profile_auto_profiles_again_when_this_machine_runs_dense_faster(
        job_spec, monkeypatch, tmp_path, speed: float, resuming: bool, profiles: bool) -> None:
    import autoprune.latency as latency
    from autoprune.latency import fingerprint as fingerprint_module

    committed = Path(__file__).resolve().parent.parent / "latency_models" / "this-cpu-torch-b1-s128.json"
    (tmp_path / "lat.json").write_text(committed.read_text())
    own = json.loads(committed.read_text())["fingerprint"]  # the file is this device's
    monkeypatch.setattr(fingerprint_module, "device_fingerprint", lambda *args, **kwargs: own)
    calls: list[str] = []
    reuse: list[bool] = []

    def fake_profile(model, backend, batch, seq_len, threads, out, **kwargs):
        calls.append("profile")
        reuse.append(kwargs["reuse_measurements"])
        return latency.LatencyModel.load(out)

    monkeypatch.setattr(latency, "profile", fake_profile)
    monkeypatch.setattr(latency, "dense_speed", lambda model: calls.append("speed") or speed)
    load_or_profile_latency_model(job_spec(), quiet=True, check_speed=not resuming)
    assert calls == (["speed", "profile"] if profiles else [] if resuming else ["speed"])
    # The store's figures of this device are as slow as the file: measured again, not reused.
    assert reuse == ([False] if profiles else [])


def test_run_job_tells_prepare_whether_the_job_resumes(store: Store, job_spec, monkeypatch) -> None:
    from autoprune.runner import prepare as prepare_module
    from autoprune.runner.service import run_job

    seen: list[bool] = []

    def stop_in_prepare(spec: JobSpec, **kwargs: Any) -> Any:
        seen.append(kwargs["resuming"])
        raise RuntimeError("stopped in prepare")

    monkeypatch.setattr(prepare_module, "prepare", stop_in_prepare)
    spec = job_spec()
    job_id = store.create_job(spec.to_json(), spec.name)
    for trials in ([], ["a"]):  # a fresh job, then the same job with a trial stored
        for architecture_hash in trials:
            store.add_trial(job_id, "[1]", architecture_hash, state="complete", metric_value=0.8,
                            metric_name="accuracy")
        store.claim_job("tester", heartbeat_timeout_s=0.0, job_id=job_id)
        with pytest.raises(RuntimeError, match="stopped in prepare"):
            run_job(store, job_id, "tester", heartbeat_interval=3600.0)
    assert seen == [False, True]


def test_failing_and_nan_candidates_become_failed_trials(store: Store, job_spec) -> None:
    spec = job_spec()
    probe = run(store, spec, ScriptedEstimator())
    order = [t for t in store.trials(probe.job_id) if not t.extra.get("infeasible")]
    estimator = ScriptedEstimator()
    estimator.fail.add(order[0].architecture_hash)
    estimator.nan.add(order[1].architecture_hash)
    session = run(store, spec, estimator)
    trials = {t.architecture_hash: t for t in store.trials(session.job_id)}
    failed = trials[order[0].architecture_hash]
    assert failed.state == "failed" and "simulated out-of-memory" in failed.error
    nan = trials[order[1].architecture_hash]
    assert nan.state == "failed" and "non-finite" in nan.error
    assert session.progress.evaluated == spec.controller.evaluations
    assert session.progress.failed == 2


def test_resume_keeps_finished_trials_and_reruns_the_running_one(store: Store, job_spec) -> None:
    spec = job_spec()
    reference = run(store, spec, ScriptedEstimator())
    reference_trials = [(t.architecture_hash, t.state, t.metric_value)
                        for t in store.trials(reference.job_id)]

    job_id = store.create_job(spec.to_json(), spec.name)
    crashed = run(store, spec, ScriptedEstimator(), job_id=job_id, stop_after=3)
    before = {t.number: t for t in store.trials(job_id)}
    running = [t for t in before.values() if t.state == "running"]
    assert len(running) == 1

    assert store.reset_running_trials(job_id) == 1
    estimator = ScriptedEstimator()
    resumed = run(store, spec, estimator, job_id=job_id)
    after = {t.number: t for t in store.trials(job_id)}
    for number, trial in before.items():  # finished trials: same numbers, same values
        if trial.state in ("complete", "pruned", "failed"):
            assert after[number].metric_value == trial.metric_value
            assert after[number].architecture_hash == trial.architecture_hash
    rerun = after[running[0].number]
    assert rerun.state in ("complete", "pruned") and rerun.attempt == 1
    evaluated_now = {h for h, _ in estimator.evaluated}
    finished_before = {t.architecture_hash for t in before.values()
                       if t.state in ("complete", "pruned", "failed")}
    assert not evaluated_now & finished_before  # nothing finished was fine-tuned again
    assert running[0].architecture_hash in evaluated_now
    # The replay reproduced the uninterrupted job exactly.
    assert [(t.architecture_hash, t.state, t.metric_value) for t in after.values()] == reference_trials
    assert resumed.progress.replayed >= 3 and crashed.progress.evaluated == 3


def test_cancel_stops_within_one_trial(store: Store, job_spec) -> None:
    spec = job_spec()
    job_id = store.create_job(spec.to_json(), spec.name)
    store.claim_job("me", heartbeat_timeout_s=60)
    estimator = ScriptedEstimator()
    prepared = prepare(spec, estimator_factory=lambda: estimator, latency_model=FlopsLatency(),
                       quiet=True)
    session = SearchSession(store, job_id, prepared, batch_size=1, owner="me")
    original = session.record

    def record_then_cancel(candidate, outcome):
        original(candidate, outcome)
        if session.progress.evaluated == 2:
            store.request_cancel(job_id)

    session.record = record_then_cancel  # type: ignore[method-assign]
    with pytest.raises(JobCancelled):
        LocalExecutor().run(session)
    assert session.progress.evaluated == 2


def test_same_seed_same_trials(store: Store, job_spec) -> None:
    spec = job_spec()
    a = run(store, spec, ScriptedEstimator())
    b = run(store, spec, ScriptedEstimator())
    assert [t.architecture_hash for t in store.trials(a.job_id)] == [
        t.architecture_hash for t in store.trials(b.job_id)]


def test_an_unreachable_budget_fails_clearly(store: Store, job_spec) -> None:
    from autoprune.errors import InfeasibleError

    spec = job_spec(latency={"budget_ratio": 0.01})
    with pytest.raises(InfeasibleError, match="budget"):
        run(store, spec, ScriptedEstimator())
