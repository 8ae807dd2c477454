"""The Pareto front of a job's trials: extraction, `autoprune pareto` and `autoprune trials` output.

Trials are written straight into a SQLite store in ``tmp_path``: no model is trained.
"""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from autoprune.cli import app
from autoprune.front import (
    FRONT_FIELDS,
    TRIAL_EXTRA_FIELDS,
    closest_to_budget,
    front_report,
    front_rows,
    latency_axis_label,
    trial_rows,
)
from autoprune.space import Architecture, LayerConfig
from autoprune.store import Store, TrialRecord

runner = CliRunner()
SPEC = {"latency": {"budget_ms": 10.0, "batch": 1, "seq_len": 128}}


def arch_json(index: int) -> str:
    """A valid 2-layer architecture; distinct indices give distinct summaries up to 8."""
    heads, ffn = 1 + index % 4, (1 + index // 4 % 2) / 2
    return Architecture.uniform(2, LayerConfig(heads=heads, ffn=ffn)).to_json()


def add(store: Store, job_id: int, number: int, state: str = "complete", metric: float | None = None,
        predicted: float | None = None, **fields: Any) -> TrialRecord:
    if metric is not None:
        fields.setdefault("metric_name", "accuracy")
    return store.add_trial(job_id, arch_json(number), f"hash{number}", state=state,
                           predicted_latency_ms=predicted, metric_value=metric, **fields)


def make_job(db: str, spec: dict[str, Any] | None = None, name: str = "small") -> int:
    """Budget 10 ms. Front by latency: #4 (pruned), #0, #1 (re-measured 8.5), #3 (over budget)."""
    with Store(db) as store:
        job_id = store.create_job(json.dumps(SPEC if spec is None else spec), name)
        add(store, job_id, 0, metric=0.80, predicted=6.0, size_bytes=20_000_000, fidelity=60,
            extra={"budget_ms": 10.0})
        add(store, job_id, 1, metric=0.85, predicted=9.0, measured_latency_ms=8.5, size_bytes=30_000_000,
            fidelity=60)
        add(store, job_id, 2, metric=0.78, predicted=9.5, fidelity=60)
        add(store, job_id, 3, metric=0.90, predicted=14.0, fidelity=60)
        add(store, job_id, 4, state="pruned", metric=0.70, predicted=4.0, fidelity=20)
        add(store, job_id, 5, state="failed", predicted=5.0, error="out of memory")
        add(store, job_id, 6, state="pruned", predicted=20.0, fidelity=0,
            error="infeasible: predicted latency over budget", extra={"infeasible": True, "budget_ms": 10.0})
    return job_id


@pytest.fixture()
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'front.db'}"


def _one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and "Traceback" not in stderr
    return lines[0]


# ---- extraction ----------------------------------------------------------------------------
def brute_force_front(points: list[tuple[float, float]]) -> set[int]:
    """(metric maximised, latency minimised): i is on the front unless some j is no worse on
    both and strictly better on one. Equal points do not dominate each other."""
    front = set()
    for i, (metric_i, latency_i) in enumerate(points):
        dominated = any(
            metric_j >= metric_i and latency_j <= latency_i and (metric_j > metric_i or latency_j < latency_i)
            for j, (metric_j, latency_j) in enumerate(points) if j != i
        )
        if not dominated:
            front.add(i)
    return front


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_front_matches_a_brute_force_dominance_check(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    # A coarse grid makes ties on metric, on latency and on both frequent.
    points = [(rng.randint(0, 8) / 8, float(rng.randint(1, 10))) for _ in range(40)]
    with Store(f"sqlite:///{tmp_path / 'random.db'}") as store:
        job_id = store.create_job("{}", "random")
        store.add_trials(job_id, [
            {"architecture_json": arch_json(i), "architecture_hash": f"h{i}", "state": "complete",
             "predicted_latency_ms": latency, "metric_value": metric, "metric_name": "accuracy"}
            for i, (metric, latency) in enumerate(points)
        ])
        trials = store.trials(job_id)
    rows = front_rows(trials, budget_ms=5.0)
    assert {row.number for row in rows if row.on_front} == brute_force_front(points)
    assert len(rows) == len(points)
    assert [row.latency_ms for row in rows] == sorted(row.latency_ms for row in rows)
    assert all(row.feasible == (row.latency_ms <= 5.0) for row in rows)


def test_rows_use_the_measured_latency_and_skip_trials_without_a_metric(db: str) -> None:
    job_id = make_job(db)
    with Store(db) as store:
        report = front_report(store.get_job(job_id), store.trials(job_id))
    assert report.budget_ms == 10.0 and report.metric_name == "accuracy"
    assert [row.number for row in report.rows] == [4, 0, 1, 2, 3]  # by latency; #5, #6 have no metric
    assert [row.number for row in report.front] == [4, 0, 1, 3]
    by_number = {row.number: row for row in report.rows}
    assert by_number[1].latency_ms == 8.5 and by_number[1].predicted_latency_ms == 9.0
    assert not by_number[3].feasible and by_number[0].feasible
    assert report.best is not None and report.best.number == 1  # #4 is pruned, not complete
    assert by_number[0].architecture == "h1/f0.5 h1/f0.5"
    assert report.latency_label == "latency (ms, batch 1, seq 128)"


def test_rows_as_the_search_saw_them_ignore_measurements(db: str) -> None:
    job_id = make_job(db)
    with Store(db) as store:
        rows = front_rows(store.trials(job_id), 10.0, measured=False)
    by_number = {row.number: row for row in rows}
    assert by_number[1].latency_ms == 9.0 and by_number[1].measured_latency_ms == 8.5
    assert all(row.latency_ms == row.predicted_latency_ms for row in rows)


def test_closest_to_budget_are_the_fastest(db: str) -> None:
    job_id = make_job(db)
    with Store(db) as store:
        rows = front_rows(store.trials(job_id), budget_ms=1.0)
    assert not any(row.feasible for row in rows)
    assert [row.number for row in closest_to_budget(rows, 3)] == [4, 0, 1]
    assert closest_to_budget([]) == []


def test_latency_label_without_a_shape() -> None:
    class Job:
        spec_json = "{}"

    assert latency_axis_label(Job()) == "latency (ms)"


def test_trial_rows_add_the_plotting_fields(db: str) -> None:
    job_id = make_job(db)
    with Store(db) as store:
        rows = trial_rows(store.get_job(job_id), store.trials(job_id))
    assert list(rows[0]) == [*TrialRecord.__dataclass_fields__, *TRIAL_EXTRA_FIELDS]
    assert [row["on_front"] for row in rows] == [True, True, False, True, True, False, False]
    assert [row["infeasible"] for row in rows] == [False] * 6 + [True]
    assert rows[1]["latency_ms"] == 8.5 and all(row["budget_ms"] == 10.0 for row in rows)


# ---- autoprune pareto ----------------------------------------------------------------------
def test_pareto_json(db: str) -> None:
    job_id = make_job(db)
    result = runner.invoke(app, ["pareto", str(job_id), "--format", "json", "--db", db])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["number"] for row in rows] == [4, 0, 1, 3]
    assert set(rows[0]) == set(FRONT_FIELDS)
    measured = rows[2]
    assert measured["latency_ms"] == 8.5 and measured["predicted_latency_ms"] == 9.0
    assert measured["measured_latency_ms"] == 8.5 and measured["size_mb"] == 30.0
    assert measured["fidelity"] == 60 and measured["feasible"] is True
    assert rows[3]["feasible"] is False and rows[3]["metric_name"] == "accuracy"


def test_pareto_csv(db: str) -> None:
    job_id = make_job(db)
    result = runner.invoke(app, ["pareto", str(job_id), "--format", "csv", "--db", db])
    assert result.exit_code == 0, result.output
    records = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(records[0]) == list(FRONT_FIELDS)
    assert [int(r["number"]) for r in records] == [4, 0, 1, 3]
    assert float(records[2]["measured_latency_ms"]) == 8.5 and records[2]["architecture"]


def test_pareto_table(db: str) -> None:
    job_id = make_job(db)
    result = runner.invoke(app, ["pareto", str(job_id), "--db", db])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Pareto front (4 of 5 trials)" in out and "budget 10.00 ms" in out
    for text in ("accuracy", "pred ms", "meas ms", "size MB", "8.50", "9.00", "30.0", "h1/f0.5"):
        assert text in out, text
    assert "best feasible: trial 1, accuracy 0.8500 at 8.50 ms (measured)" in out


def test_pareto_without_a_feasible_trial_shows_the_closest(db: str) -> None:
    with Store(db) as store:
        job_id = store.create_job(json.dumps({"latency": {"budget_ms": 5.0}}), "too-tight")
        for number in range(7):  # slower ones are more accurate: all on the front, none feasible
            add(store, job_id, number, metric=0.5 + number / 20, predicted=6.0 + number)
    table = runner.invoke(app, ["pareto", str(job_id), "--db", db])
    assert table.exit_code == 0, table.output
    assert "no trial of job 1 meets the 5.00 ms budget" in table.stdout
    assert "5 trials closest to the budget" in table.stdout
    assert "no complete trial meets the budget" in table.stdout

    as_json = runner.invoke(app, ["pareto", str(job_id), "--format", "json", "--db", db])
    assert as_json.exit_code == 0, as_json.output
    rows = json.loads(as_json.stdout)
    assert [row["number"] for row in rows] == [0, 1, 2, 3, 4]
    assert not any(row["feasible"] for row in rows)
    assert "meets the 5.00 ms budget" in as_json.stderr

    as_csv = runner.invoke(app, ["pareto", str(job_id), "--format", "csv", "--db", db])
    records = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r["feasible"] for r in records] == ["False"] * 5


def test_pareto_without_any_metric_says_so(db: str) -> None:
    with Store(db) as store:
        job_id = store.create_job(json.dumps({"latency": {"budget_ms": 5.0}}), "nothing-yet")
        add(store, job_id, 0, state="pruned", predicted=9.0, extra={"infeasible": True})
        add(store, job_id, 1, state="pruned", predicted=7.0, extra={"infeasible": True})
        add(store, job_id, 2, state="failed", predicted=4.0, error="boom")
    table = runner.invoke(app, ["pareto", str(job_id), "--db", db])
    assert table.exit_code == 0, table.output
    assert "no trial of job 1 has a metric yet" in table.stdout
    assert "2 skipped as predicted over the 5.00 ms budget" in table.stdout
    assert "trial 1 at 7.00 ms" in table.stdout and "1 failed" in table.stdout

    as_json = runner.invoke(app, ["pareto", str(job_id), "--format", "json", "--db", db])
    assert as_json.exit_code == 0 and json.loads(as_json.stdout) == []
    assert "has a metric" in as_json.stderr

    with Store(db) as store:
        empty = store.create_job("{}", "empty")
    result = runner.invoke(app, ["pareto", str(empty), "--db", db])
    assert result.exit_code == 0 and f"job {empty} has no trials yet" in result.stdout


def test_pareto_of_an_unknown_job_exits_2(db: str) -> None:
    result = runner.invoke(app, ["pareto", "42", "--db", db])
    assert result.exit_code == 2
    assert "no job 42" in _one_error_line(result.stderr)


# ---- autoprune trials ----------------------------------------------------------------------
def test_trials_json_and_csv_carry_what_a_plot_needs(db: str) -> None:
    job_id = make_job(db)
    as_json = runner.invoke(app, ["trials", str(job_id), "--format", "json", "--db", db])
    assert as_json.exit_code == 0, as_json.output
    rows = json.loads(as_json.stdout)
    assert len(rows) == 7 and list(rows[0]) == [*TrialRecord.__dataclass_fields__, *TRIAL_EXTRA_FIELDS]
    first = rows[0]
    assert first["architecture_summary"] == "h1/f0.5 h1/f0.5"
    assert Architecture.from_json(first["architecture_json"]).summary() == first["architecture_summary"]
    assert first["metric_name"] == "accuracy" and first["metric_value"] == 0.8
    assert first["budget_ms"] == 10.0 and first["on_front"] is True and first["created_at"]
    assert rows[6]["infeasible"] is True and rows[6]["extra"]["infeasible"] is True
    assert rows[5]["error"] == "out of memory" and rows[5]["latency_ms"] == 5.0

    as_csv = runner.invoke(app, ["trials", str(job_id), "--format", "csv", "--db", db])
    assert as_csv.exit_code == 0, as_csv.output
    records = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert len(records) == 7 and list(records[0]) == list(rows[0])
    assert float(records[1]["measured_latency_ms"]) == 8.5 and float(records[1]["latency_ms"]) == 8.5
    assert json.loads(records[6]["extra"]) == {"budget_ms": 10.0, "infeasible": True}
    assert records[6]["infeasible"] == "True" and records[2]["on_front"] == "False"
    assert float(records[0]["budget_ms"]) == 10.0 and records[0]["finished_at"]
