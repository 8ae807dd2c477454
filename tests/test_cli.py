"""The command line against the store: submit, status, trials, cancel, db upgrade.

Commands run in-process through Typer's runner (stderr kept apart from stdout), plus one
real ``autoprune`` subprocess for the console script, its exit codes and the absence of
tracebacks. Every database is a temporary SQLite file.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from autoprune import __version__
from autoprune.cli import app
from autoprune.store import Store, TrialRecord
from autoprune.store.engine import ENV_VAR

runner = CliRunner()


@pytest.fixture()
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


@pytest.fixture()
def example(repo_root: Path) -> Path:
    return repo_root / "examples" / "sst2-minilm.yaml"


@pytest.fixture()
def portable_spec(example: Path) -> dict[str, Any]:
    """The example spec with its paths made absolute and no data directory needed."""
    data = yaml.safe_load(example.read_text())
    del data["task"]["data_dir"]
    data["latency"]["model"] = str((example.parent / data["latency"]["model"]).resolve())
    return data


def _write(tmp_path: Path, data: Any, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def _rows(db: str) -> list[tuple[Any, ...]]:
    with Store(db) as store:
        jobs = [(j.id, j.name, j.state, j.spec_json) for j in store.list_jobs()]
        trials = [(t.job_id, t.number, t.state) for j in store.list_jobs() for t in store.trials(j.id)]
    return jobs + trials


def _one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and "Traceback" not in stderr
    return lines[0]


def test_submit_then_status_shows_the_queued_job(example: Path, db: str, glue_dir: Path) -> None:
    result = runner.invoke(app, ["submit", str(example), "--db", db])
    assert result.exit_code == 0, result.output
    job_id = int(result.stdout.strip())  # stdout is just the id, for scripts
    assert "queued job" in result.stderr

    status = runner.invoke(app, ["status", "--db", db])
    assert status.exit_code == 0, status.output
    row = next(line for line in status.stdout.splitlines() if f" {job_id} " in line)
    assert "queued" in row and "0/0/0" in row and "sst2-minilm" in row

    detail = runner.invoke(app, ["status", str(job_id), "--db", db])
    assert detail.exit_code == 0, detail.output
    for expected in ("queued", "minilm-l6", "sst2", "evolution, 16 evaluations", "0.5 x dense"):
        assert expected in detail.stdout
    with Store(db) as store:
        assert json.loads(store.get_job(job_id).spec_json)["name"] == "sst2-minilm-half-latency"


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        (("controller", "evaluations", 0), "controller.evaluations: must be >= 1"),
        (("latency", "budget_ratio", 1.5), "latency.budget_ratio: must be <= 1"),
        ((None, "colour", "red"), "colour: unknown key"),
        (("estimate", "stepz", 10), "estimate.stepz: unknown key"),
        ((None, "name", None), "name:"),
    ],
)
def test_a_malformed_spec_exits_2_with_one_line_and_leaves_the_database_alone(
    mutation: tuple[str | None, str, Any], expected: str, portable_spec: dict[str, Any],
    tmp_path: Path, db: str,
) -> None:
    good = runner.invoke(app, ["submit", str(_write(tmp_path, portable_spec, "good.yaml")), "--db", db])
    assert good.exit_code == 0, good.output
    before = _rows(db)

    data = copy.deepcopy(portable_spec)
    section, key, value = mutation
    (data[section] if section else data)[key] = value
    result = runner.invoke(app, ["submit", str(_write(tmp_path, data)), "--db", db])
    assert result.exit_code == 2
    assert expected in _one_error_line(result.stderr)
    assert result.stdout == ""
    assert _rows(db) == before


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such spec file"),
        ("name: [unclosed\nmodel: x\n", "not valid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
    ],
)
def test_a_missing_or_unreadable_spec_exits_2(content: str | None, expected: str,
                                              tmp_path: Path, db: str) -> None:
    path = tmp_path / "job.yaml" if content is None else _write(tmp_path, content)
    result = runner.invoke(app, ["submit", str(path), "--db", db])
    assert result.exit_code == 2
    line = _one_error_line(result.stderr)
    assert expected in line and "job.yaml" in line


def test_unknown_jobs_exit_2(db: str) -> None:
    for command in (["status", "42"], ["trials", "42"], ["cancel", "42"]):
        result = runner.invoke(app, [*command, "--db", db])
        assert result.exit_code == 2, command
        assert "no job 42" in _one_error_line(result.stderr)


@pytest.mark.parametrize("url", ["nonsense", "mysql://u@h/x", "postgresql://postgres@127.0.0.1:1/x"])
def test_a_bad_database_url_exits_2_naming_it(url: str, portable_spec: dict[str, Any],
                                              tmp_path: Path) -> None:
    spec = _write(tmp_path, portable_spec)
    for command in (["status"], ["submit", str(spec)], ["db", "upgrade"]):
        result = runner.invoke(app, [*command, "--db", url])
        assert result.exit_code == 2, command
        line = _one_error_line(result.stderr)
        assert url.split("://")[-1] in line


def test_trials_in_every_format(db: str) -> None:
    with Store(db) as store:
        job_id = store.create_job("{}", "with-trials")
        store.add_trial(job_id, "[1]", "aaa", state="running", predicted_latency_ms=5.25,
                        metric_name="accuracy")
        store.update_trial(job_id, 0, state="complete", metric_value=0.875, fidelity=60,
                           extra={"seconds": 12.5})
        store.add_trial(job_id, "[2]", "bbb", state="failed", error="boom, with a comma")

    as_json = runner.invoke(app, ["trials", str(job_id), "--format", "json", "--db", db])
    assert as_json.exit_code == 0, as_json.output
    rows = json.loads(as_json.stdout)
    assert [r["number"] for r in rows] == [0, 1]
    assert set(rows[0]) >= set(TrialRecord.__dataclass_fields__)
    assert rows[0]["metric_value"] == 0.875 and rows[0]["extra"] == {"seconds": 12.5}
    assert rows[0]["predicted_latency_ms"] == 5.25 and rows[0]["finished_at"]

    as_csv = runner.invoke(app, ["trials", str(job_id), "--format", "csv", "--db", db])
    assert as_csv.exit_code == 0, as_csv.output
    records = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    fields = list(TrialRecord.__dataclass_fields__)
    assert list(records[0])[: len(fields)] == fields  # stored columns first, derived ones after
    assert records[1]["error"] == "boom, with a comma"
    assert json.loads(records[0]["extra"]) == {"seconds": 12.5}

    table = runner.invoke(app, ["trials", str(job_id), "--db", db])
    assert table.exit_code == 0, table.output
    assert "complete" in table.stdout and "0.8750" in table.stdout and "5.25" in table.stdout

    bad = runner.invoke(app, ["trials", str(job_id), "--format", "xml", "--db", db])
    assert bad.exit_code == 2


def test_status_shows_counts_and_the_best_metric(db: str) -> None:
    with Store(db) as store:
        job_id = store.create_job('{"model": "m"}', "counted")
        store.add_trial(job_id, "[1]", "a", state="complete", metric_value=0.8, metric_name="accuracy")
        store.add_trial(job_id, "[2]", "b", state="complete", metric_value=0.9, metric_name="accuracy",
                        predicted_latency_ms=4.0)
        store.add_trial(job_id, "[3]", "c", state="failed")
    status = runner.invoke(app, ["status", "--db", db])
    assert "2/1/3" in status.stdout and "0.9000 accuracy" in status.stdout
    detail = runner.invoke(app, ["status", str(job_id), "--db", db])
    assert "trial 1: accuracy 0.9000" in detail.stdout and "2 complete" in detail.stdout


def test_cancel_queued_and_running_jobs(db: str) -> None:
    with Store(db) as store:
        running = store.create_job("{}", "running")
        store.claim_job("svc", heartbeat_timeout_s=60)
        queued = store.create_job("{}", "queued")
    result = runner.invoke(app, ["cancel", str(queued), "--db", db])
    assert result.exit_code == 0 and f"job {queued} cancelled" in result.stdout
    result = runner.invoke(app, ["cancel", str(running), "--db", db])
    assert result.exit_code == 0 and "cancel requested" in result.stdout
    with Store(db) as store:
        assert store.get_job(queued).state == "cancelled"
        assert store.get_job(running).cancel_requested
    status = runner.invoke(app, ["status", "--db", db])
    assert "running (cancelling)" in status.stdout


def test_db_upgrade_is_idempotent(db: str) -> None:
    first = runner.invoke(app, ["db", "upgrade", "--db", db])
    assert first.exit_code == 0, first.output
    assert "revision 0001" in first.stdout and "upgraded from empty" in first.stdout
    second = runner.invoke(app, ["db", "upgrade", "--db", db])
    assert second.exit_code == 0 and "already current" in second.stdout


def test_the_database_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 portable_spec: dict[str, Any]) -> None:
    path = tmp_path / "env.db"
    monkeypatch.setenv(ENV_VAR, f"sqlite:///{path}")
    result = runner.invoke(app, ["submit", str(_write(tmp_path, portable_spec))])
    assert result.exit_code == 0, result.output
    with Store(f"sqlite:///{path}") as store:
        assert [j.name for j in store.list_jobs()] == ["sst2-minilm-half-latency"]


def test_search_with_a_missing_spec_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["search", str(tmp_path / "absent.yaml"), "--db",
                                 f"sqlite:///{tmp_path / 'x.db'}"])
    assert result.exit_code == 2
    assert "no such spec file" in _one_error_line(result.stderr)


def test_profile_with_an_unknown_backend_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["profile", "--model", "minilm-l6", "--backend", "tensorrt",
                                 "--out", str(tmp_path / "x.json")])
    assert result.exit_code == 2
    assert "tensorrt" in _one_error_line(result.stderr)
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize(("flags", "reuse"), [([], True), (["--remeasure"], False)])
def test_profile_reuses_the_databases_measurements_unless_told_to_remeasure(
        tmp_path: Path, db: str, monkeypatch: pytest.MonkeyPatch, flags: list[str], reuse: bool) -> None:
    import autoprune.latency as latency

    seen: dict[str, Any] = {}

    class Stop(Exception):
        pass

    def fake_profile(*args: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(latency, "profile", fake_profile)
    result = runner.invoke(app, ["profile", "--model", "minilm-l6", "--out", str(tmp_path / "x.json"),
                                 "--db", db, *flags])
    assert seen, result.output  # reached profile(), which stopped the command there
    assert seen["reuse_measurements"] is reuse and seen["store"] is not None


@pytest.mark.parametrize("content", ["{not json", '{"format": "something-else"}', "[]"])
def test_latency_validate_rejects_corrupt_or_foreign_files(tmp_path: Path, content: str) -> None:
    path = tmp_path / "model.json"
    path.write_text(content)
    result = runner.invoke(app, ["latency", "validate", str(path), "--n", "2"])
    assert result.exit_code == 2
    assert str(path.name) in _one_error_line(result.stderr)


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"autoprune {__version__}"


def _console_script() -> list[str]:
    """The installed ``autoprune`` script, else the module it runs."""
    script = Path(sys.executable).with_name("autoprune")
    return [str(script)] if script.exists() else [sys.executable, "-m", "autoprune.cli"]


def test_console_script_exit_codes_and_no_traceback(tmp_path: Path, portable_spec: dict[str, Any]) -> None:
    command = _console_script()
    db = f"sqlite:///{tmp_path / 'sub.db'}"
    ok = subprocess.run([*command, "submit", str(_write(tmp_path, portable_spec)), "--db", db],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and ok.stdout.strip() == "1", ok.stderr
    bad = subprocess.run([*command, "status", "--db", "nonsense"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2
    assert "nonsense" in _one_error_line(bad.stderr)


def test_console_script_shows_a_warning_as_one_line(tmp_path: Path,
                                                    portable_spec: dict[str, Any]) -> None:
    command = _console_script()
    data = copy.deepcopy(portable_spec)
    data["controller"] = {"name": "evolution", "evaluations": 4,
                          "options": {"guided_min_layers": 2}}  # the floor's old name
    result = subprocess.run([*command, "submit", str(_write(tmp_path, data)), "--db",
                             f"sqlite:///{tmp_path / 'warn.db'}"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if "guided_min_layers" in line]
    assert warning == ["warning: controller option guided_min_layers is now start_min_layers "
                       "and floors the whole initial population (FutureWarning)"]
    assert "pydantic" not in result.stderr


def test_search_refuses_a_bad_drift_guard_before_queueing_anything(
        portable_spec: dict[str, Any], tmp_path: Path, db: str) -> None:
    spec = _write(tmp_path, portable_spec)
    result = runner.invoke(app, ["search", str(spec), "--drift-attempts", "0", "--db", db])
    assert result.exit_code == 2, result.output
    assert "--drift-attempts" in _one_error_line(result.stderr)
    assert not (tmp_path / "cli.db").exists() or _rows(db) == []


@pytest.mark.parametrize("command", ["submit", "search"])
@pytest.mark.parametrize(("options", "named"), [
    ({"guided_pick": "nearest"}, "controller.options.guided_pick"),
    ({"populaton": 8}, "controller.options.populaton: unknown option"),
])
def test_bad_controller_options_exit_2_before_anything_is_stored(
        command: str, options: dict[str, Any], named: str, portable_spec: dict[str, Any],
        tmp_path: Path, db: str) -> None:
    data = copy.deepcopy(portable_spec)
    data["controller"]["options"] = {**data["controller"]["options"], **options}
    before = _rows(db)
    result = runner.invoke(app, [command, str(_write(tmp_path, data)), "--db", db])
    assert result.exit_code == 2, result.output
    assert named in _one_error_line(result.stderr)
    assert _rows(db) == before


def test_the_cli_loads_without_torch_and_shows_the_drift_guards_own_defaults() -> None:
    # The export options' defaults come from autoprune.drift, which must not pull torch into
    # every CLI call (status, trials and pareto answer in well under a second without it).
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, autoprune.cli; print('torch' in sys.modules)"],
        capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0 and probe.stdout.strip() == "False", probe.stderr
    from autoprune.drift import DEFAULT_DRIFT_GUARD

    help_text = runner.invoke(app, ["export", "--help"], env={"COLUMNS": "200"}).output
    assert f"[default: {DEFAULT_DRIFT_GUARD.max_drift}]" in help_text
    assert f"[default: {DEFAULT_DRIFT_GUARD.attempts}]" in help_text


def _without_validation(portable_spec: dict[str, Any], tmp_path: Path) -> Path:
    from autoprune.latency import LatencyModel

    model = LatencyModel.load(portable_spec["latency"]["model"])
    return model.with_document(validation=None).save(tmp_path / "unvalidated.json")


@pytest.mark.parametrize("command", ["submit", "search"])
@pytest.mark.parametrize("profile", [False, "auto"])
def test_submit_and_search_refuse_margin_auto_with_a_latency_model_without_validation(
    command: str, profile: bool | str, portable_spec: dict[str, Any], tmp_path: Path, db: str,
    monkeypatch,
) -> None:
    from autoprune.latency import LatencyModel
    from autoprune.latency import fingerprint as fingerprint_module

    unvalidated = _without_validation(portable_spec, tmp_path)
    # profile: auto profiles (and so validates) on another device: make this one the model's own.
    own = LatencyModel.load(unvalidated).fingerprint
    monkeypatch.setattr(fingerprint_module, "device_fingerprint", lambda *args, **kwargs: own)
    data = copy.deepcopy(portable_spec)
    data["latency"].update(model=str(unvalidated), margin="auto", profile=profile)
    before = _rows(db)

    result = runner.invoke(app, [command, str(_write(tmp_path, data)), "--db", db])
    assert result.exit_code == 2, result.output
    line = _one_error_line(result.stderr)
    assert "latency.margin: auto needs held-out validation" in line
    assert f"autoprune latency validate {unvalidated} --save" in line
    assert result.stdout == "" and _rows(db) == before


def test_submit_accepts_margin_auto_when_the_job_validates_or_the_model_has_validation(
    portable_spec: dict[str, Any], tmp_path: Path, db: str, monkeypatch,
) -> None:
    from autoprune.latency import fingerprint as fingerprint_module

    unvalidated = _without_validation(portable_spec, tmp_path)
    # This device is not the model's, so profile: auto profiles (and validates) it.
    monkeypatch.setattr(fingerprint_module, "device_fingerprint",
                        lambda *args, **kwargs: {"cpu_model": "another CPU"})
    validated = {**portable_spec["latency"], "margin": "auto", "profile": False}
    profiles = {**portable_spec["latency"], "model": str(unvalidated), "margin": "auto", "profile": True}
    foreign = {**profiles, "profile": "auto"}
    for number, latency in enumerate((validated, profiles, foreign)):
        data = {**copy.deepcopy(portable_spec), "latency": latency}
        result = runner.invoke(app, ["submit", str(_write(tmp_path, data, f"job{number}.yaml")), "--db", db])
        assert result.exit_code == 0, result.output
    with Store(db) as store:
        margins = [json.loads(job.spec_json)["latency"]["margin"] for job in store.list_jobs()]
    assert margins == ["auto", "auto", "auto"]
