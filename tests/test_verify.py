"""``autoprune verify``: a job's best candidates measured here before one is exported.

On the synthetic device of ``test_latency_predictor`` (a fake clock, no real timing): the
job's latency model is profiled there, then the device changes under it (int8 layers run
slower than profiled, as on a host whose profile was taken in a fast period), so the best
candidate by prediction measures over the budget and verify must pass it over.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_latency_predictor import CLOCK, SHAPE, SPACE, _NoFactory, _profile, synthetic_backend, table_truth
from typer.testing import CliRunner

from autoprune.cli import app
from autoprune.drift import DriftGuard
from autoprune.errors import VerifyError
from autoprune.latency import backends
from autoprune.latency import protocol as proto
from autoprune.latency.protocol import Protocol
from autoprune.space import Architecture, LayerConfig
from autoprune.spec import JobSpec
from autoprune.store import Store
from autoprune.verify import VerifyReport, candidates_to_verify, verify

runner = CliRunner()
FAST = Protocol(rounds=3, min_repeats=1, max_repeats=1, warmup=1, extra_rounds=0)
NO_WAIT = DriftGuard(attempts=1)


def slow_int8_truth(arch: Architecture) -> float:
    """The device now: every int8 layer 1 ms slower than when it was profiled."""
    return table_truth(arch) + sum(1.0 for layer in arch if layer.keep and layer.bits == 8)


def _arch(heads: int, ffn: float, bits: int = 32) -> Architecture:
    return Architecture.uniform(SHAPE.num_layers, LayerConfig(heads=heads, ffn=ffn, bits=bits))


@pytest.fixture()
def device(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[Architecture], float]], None]:
    monkeypatch.setattr(proto.time, "perf_counter_ns", lambda: CLOCK["ns"])

    def install(truth: Callable[[Architecture], float]) -> None:
        monkeypatch.setitem(backends.BACKENDS, "torch", synthetic_backend(truth))
    return install


@pytest.fixture()
def job(tmp_path: Path, device: Any) -> Iterator[dict[str, Any]]:
    """A finished job on the synthetic device: four complete candidates within a budget of
    0.7x dense (the best by metric int8), one over it, one failed."""
    device(table_truth)
    model = _profile(tmp_path)
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(
        {"name": "synthetic", "per_layer": {"keep": [True, False], "heads": [0, 1, 2, 4],
                                            "ffn": [0.25, 0.5, 0.75, 1.0], "bits": [32, 8]}}))
    spec = JobSpec.from_dict({
        "name": "verify-test", "model": "synthetic",
        "task": {"name": "sst2", "data_dir": str(tmp_path)},
        "latency": {"model": str(tmp_path / "lm.json"), "budget_ratio": 0.7, "batch": 1,
                    "seq_len": 16, "threads": 1},
        "space": str(tmp_path / "space.yaml"),
        "controller": {"name": "random", "evaluations": 6},
    }, base_dir=tmp_path)
    budget = 0.7 * model.dense_ms
    int8 = _arch(4, 0.75, bits=8)
    candidates = {  # metric by architecture; the int8 one is best and fits as profiled
        int8: 0.90, _arch(2, 0.75): 0.88, _arch(2, 0.5): 0.86, _arch(1, 0.5): 0.80,
        _arch(4, 1.0): 0.95}
    assert model.predict(int8) <= budget < model.predict(_arch(4, 1.0))
    assert slow_int8_truth(int8) > budget  # but not on the device as it is now
    db = f"sqlite:///{tmp_path / 'trials.db'}"
    with Store(db) as store:
        job_id = store.create_job(spec.to_json(), spec.name)
        numbers = {}
        for arch, metric in candidates.items():
            numbers[arch.hash] = store.add_trial(
                job_id, arch.to_json(), arch.hash, state="complete", fidelity=10,
                metric_value=metric, metric_name="accuracy", finished=True,
                predicted_latency_ms=model.predict(arch), extra={"budget_ms": budget}).number
        failed = _arch(1, 0.25)
        store.add_trial(job_id, failed.to_json(), failed.hash, state="failed")
        store.finish_job(job_id, "completed")
        yield {"db": db, "job": job_id, "model": model, "budget": budget, "int8": int8,
               "numbers": numbers, "archs": list(candidates), "next": numbers[_arch(2, 0.75).hash], "device": device}


def _verify(job: dict[str, Any], top: int = 5, **kwargs: Any) -> VerifyReport:
    with Store(job["db"]) as store:
        return verify(store, job["job"], top, protocol=FAST, drift_guard=NO_WAIT,
                      factory=_NoFactory(), **kwargs)


def test_candidates_are_the_best_within_the_budget_by_prediction(job: dict[str, Any]) -> None:
    with Store(job["db"]) as store:
        trials = store.trials(job["job"])
    rows = candidates_to_verify(trials, job["budget"], 3)
    assert [row.metric for row in rows] == [0.90, 0.88, 0.86]  # not the 0.95 over the budget


def test_as_profiled_the_best_candidate_is_confirmed(job: dict[str, Any]) -> None:
    report = _verify(job)
    assert [c.metric for c in report.candidates] == [0.90, 0.88, 0.86, 0.80]
    for c in report.candidates:  # the device is as profiled: measured = true end-to-end time
        arch = next(a for a in job["archs"] if job["numbers"][a.hash] == c.trial)
        assert c.measured_latency_ms == pytest.approx(table_truth(arch), rel=1e-3)
        assert c.within_budget is (c.measured_latency_ms <= job["budget"])
    assert report.best is not None and report.best.trial == job["numbers"][job["int8"].hash]
    assert report.dense_drifts == [pytest.approx(0.0, abs=1e-3)]


def test_a_candidate_that_measures_over_the_budget_is_passed_over_and_recorded(
        job: dict[str, Any]) -> None:
    job["device"](slow_int8_truth)
    report = _verify(job)
    first = report.predicted_best
    assert first is not None and first.trial == job["numbers"][job["int8"].hash]
    assert first.within_budget is False and first.error > 0
    assert report.best is not None and report.best.trial == job["next"]
    assert any("export trial" in line and str(job["next"]) in line for line in report.summary_lines())
    with Store(job["db"]) as store:
        measured = {t.number: t.measured_latency_ms for t in store.trials(job["job"])}
        from autoprune.front import front_report
        best = front_report(store.get_job(job["job"]), store.trials(job["job"])).best
    assert measured[first.trial] == pytest.approx(first.measured_latency_ms)
    assert sum(v is not None for v in measured.values()) == 4  # the four candidates only
    # `export --trial best` goes by the re-measured latency where there is one.
    assert best is not None and best.number == job["next"]


def test_top_limits_the_candidates_and_record_false_stores_nothing(job: dict[str, Any]) -> None:
    report = _verify(job, top=2, record=False)
    assert len(report.candidates) == 2
    with Store(job["db"]) as store:
        assert all(t.measured_latency_ms is None for t in store.trials(job["job"]))
    again = VerifyReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report


def test_no_candidate_within_the_budget_is_said(job: dict[str, Any]) -> None:
    job["device"](lambda arch: 10 * table_truth(arch))  # dense too: ratios unchanged
    report = _verify(job)
    assert report.best is not None  # a uniform slow-down cancels in the ratio to dense
    job["device"](lambda arch: table_truth(arch) + (0 if arch.hash == _dense_hash() else job["budget"]))
    report = _verify(job)
    assert report.best is None
    assert "none of the 4 candidates" in report.summary_lines()[-1]


def _dense_hash() -> str:
    return SPACE.dense().hash


def test_refusals(job: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(VerifyError, match="--top 0"):
        _verify(job, top=0)
    with Store(job["db"]) as store:
        spec = json.loads(store.get_job(job["job"]).spec_json)
        spec["latency"].update(model=str(tmp_path / "absent.json"), profile="auto")
        other = store.create_job(json.dumps(spec), "no-model")
        with pytest.raises(VerifyError, match="no latency-model file"):
            verify(store, other, factory=_NoFactory())
        spec["latency"].update(model=str(tmp_path / "lm.json"), profile=False)
        empty = store.create_job(json.dumps(spec), "empty")
        with pytest.raises(VerifyError, match="nothing to verify"):
            verify(store, empty, factory=_NoFactory())


def test_cli_refuses_with_exit_2_and_one_line(job: dict[str, Any]) -> None:
    result = runner.invoke(app, ["verify", str(job["job"]), "--top", "0", "--db", job["db"]])
    assert result.exit_code == 2
    assert "--top 0" in result.output and len(result.output.strip().splitlines()) == 1
    result = runner.invoke(app, ["verify", "999", "--db", job["db"]])
    assert result.exit_code == 2 and "999" in result.output


def test_cli_prints_the_table_and_the_pick_or_json(job: dict[str, Any],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("autoprune.latency.factory.base_shape", lambda model: SHAPE)
    monkeypatch.setattr("autoprune.latency.factory.CompressFactory", lambda model: _NoFactory())
    # The synthetic device lives in this process: measure here, not in a fresh one.
    monkeypatch.setattr("autoprune.verify.run_in_fresh_process",
                        lambda function, *args: function(*args))
    job["device"](slow_int8_truth)
    result = runner.invoke(app, ["verify", str(job["job"]), "--drift-attempts", "1", "--db", job["db"]])
    assert result.exit_code == 0, result.output
    assert "4 candidates measured here" in result.output
    assert f"export trial {job['next']} instead" in result.output
    result = runner.invoke(app, ["verify", str(job["job"]), "--top", "2", "--format", "json",
                                 "--drift-attempts", "1", "--db", job["db"]])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["best_trial"] == job["next"] and len(data["candidates"]) == 2
    assert data["candidates"][0]["within_budget"] is False and data["candidates"][0]["error"] > 0


def test_margin_holds_candidates_under_the_budget_less_a_fraction(job: dict[str, Any]) -> None:
    plain = _verify(job, record=False)
    fits = [c for c in plain.candidates if c.within_budget]
    tightest = max(c.measured_latency_ms for c in fits) / job["budget"]
    report = _verify(job, record=False, margin=1 - tightest + 1e-3)  # the slowest fit no longer does
    assert [c.within_budget for c in report.candidates] == [
        c.within_budget and c.measured_latency_ms / job["budget"] < tightest for c in plain.candidates]
    assert report.margin == pytest.approx(1 - tightest + 1e-3)
    with pytest.raises(VerifyError, match="--margin 1"):
        _verify(job, margin=1.0)
