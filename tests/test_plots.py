"""`autoprune pareto --plot`: a PNG (matplotlib) or a self-contained HTML (plotly) of the trials."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from autoprune.cli import app
from autoprune.errors import UserInputError
from autoprune.front import front_report
from autoprune.plots import plot_front
from autoprune.store import Store
from test_front import make_job

runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'plots.db'}"


def test_pareto_plot_png(db: str, tmp_path: Path) -> None:
    job_id = make_job(db)
    path = tmp_path / "front.png"
    result = runner.invoke(app, ["pareto", str(job_id), "--plot", str(path), "--db", db])
    assert result.exit_code == 0, result.output
    assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5_000
    assert "Pareto front" in result.stdout  # the table is still printed


def test_pareto_plot_html_hovers_with_the_trial(db: str, tmp_path: Path) -> None:
    job_id = make_job(db)
    path = tmp_path / "front.html"
    result = runner.invoke(app, ["pareto", str(job_id), "--plot", str(path), "--format", "json",
                                 "--db", db])
    assert result.exit_code == 0, result.output
    html = path.read_text()
    assert "plotly" in html and "<script" in html
    assert "trial %{customdata[0]}" in html
    # Trial 1's hover data: number, architecture, state, predicted and measured latency (plotly
    # escapes "/" in its embedded JSON).
    assert '[1,"h2/f0.5 h2/f0.5","complete","9.00 ms","8.50 ms"]' in html.replace("\\u002f", "/")
    assert "latency (ms, batch 1, seq 128)" in html and "budget 10.00 ms" in html


def test_plot_front_draws_without_a_budget_or_a_front(tmp_path: Path, db: str) -> None:
    job_id = make_job(db, spec={})
    with Store(db) as store:
        report = front_report(store.get_job(job_id), store.trials(job_id))
    assert report.budget_ms == 10.0  # from the trials' extra, the spec has none
    for suffix in (".png", ".html"):
        path = plot_front(report.rows[:1], None, "accuracy", tmp_path / f"one{suffix}")
        assert path.stat().st_size > 0


@pytest.mark.parametrize("name", ["front.svg", "front", "front.png.txt"])
def test_pareto_plot_with_a_bad_suffix_exits_2_naming_the_file(db: str, tmp_path: Path, name: str) -> None:
    job_id = make_job(db)
    path = tmp_path / name
    result = runner.invoke(app, ["pareto", str(job_id), "--plot", str(path), "--db", db])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0], result.stderr
    assert ".png or .html" in lines[0] and not path.exists()
    with pytest.raises(UserInputError, match="expected a .png or .html"):
        plot_front([], None, "accuracy", path)


def test_pareto_plot_into_a_missing_directory_exits_2(db: str, tmp_path: Path) -> None:
    job_id = make_job(db)
    path = tmp_path / "absent" / "front.png"
    result = runner.invoke(app, ["pareto", str(job_id), "--plot", str(path), "--db", db])
    assert result.exit_code == 2
    assert str(path) in result.stderr and len(result.stderr.splitlines()) == 1


def test_pareto_plot_of_an_unknown_job_exits_2(db: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["pareto", "42", "--plot", str(tmp_path / "x.png"), "--db", db])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: no job 42") and len(result.stderr.splitlines()) == 1


def test_nothing_to_plot_without_a_metric(db: str, tmp_path: Path) -> None:
    with Store(db) as store:
        job_id = store.create_job("{}", "empty")
    path = tmp_path / "x.png"
    result = runner.invoke(app, ["pareto", str(job_id), "--plot", str(path), "--db", db])
    assert result.exit_code == 0 and not path.exists()
    assert "nothing to plot" in result.stderr
