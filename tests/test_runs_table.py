"""benchmarks/runs_table.py: the README's table of end-to-end runs, checked against each file's own verdicts."""

from __future__ import annotations

import json
import re
from types import ModuleType

from benchmark_scripts import BENCHMARKS, load_benchmark


def load_runs_table() -> ModuleType:
    return load_benchmark("runs_table")


def test_every_results_file_has_a_row_in_the_readme() -> None:
    runs_table = load_runs_table()
    rows = runs_table.table()
    files = sorted(path.name for path in (BENCHMARKS / "results").glob("end_to_end*.json"))
    assert sorted(row["results file"].strip("`") for row in rows) == files
    readme = (BENCHMARKS.parent / "README.md").read_text()
    for line in runs_table.markdown(rows).splitlines()[2:]:
        assert line in readme, f"README's run table is stale; regenerate it: {line[:80]}"


def test_met_counts_and_median_agree_with_each_files_targets() -> None:
    runs_table = load_runs_table()
    from e2e_targets import TOLERANCE  # importable once load_runs_table put benchmarks/ on the path

    for row in runs_table.table():
        result = json.loads((BENCHMARKS / "results" / row["results file"].strip("`")).read_text())
        targets = result["targets"]
        for ratio, tolerance in TOLERANCE.items():
            verdict = targets.get(f"within_{tolerance * 100:g}_points_of_teacher_at_{ratio:g}")
            cell = row[f"{ratio:g}× vs teacher"]
            if verdict is None:
                assert cell == "—"
                continue
            met, seeds = map(int, re.search(r"\((\d+) of (\d+)\)$", cell).groups())
            assert (met == seeds) == verdict, (row["results file"], ratio, cell)
        # None: the gains cover fewer than the 3 seeds the target's median is over
        assert row["searched − uniform: median (0.5× / 0.3×)"].startswith("**") == \
            bool(targets["beats_uniform_by_1_point_median"])


def test_points_are_signed_and_zero_is_unsigned() -> None:
    runs_table = load_runs_table()
    assert runs_table.points(0.0126) == "+1.26"
    assert runs_table.points(-0.0057) == "−0.57"
    assert runs_table.points(-0.00001) == "0.00"


def test_unconfirmed_gains_are_the_first_picks_exports() -> None:
    """--confirm runs also record the gain without confirmation: the search's verified pick
    against the baseline's best by its estimate, both taken from the confirmed exports."""
    checked = 0
    for path in sorted((BENCHMARKS / "results").glob("end_to_end*.json")):
        for run in json.loads(path.read_text())["runs"]:
            if run.get("searched_minus_uniform_unconfirmed") is None:
                continue
            searched = {c["trial"]: c for c in run["confirmed"]["candidates"]}
            first_pick = searched[run["verified"]["best_trial"]]
            uniform = max(run["uniform_confirmed"]["candidates"], key=lambda c: c["search_metric"])
            expected = first_pick["metric"] - uniform["metric"]
            assert abs(run["searched_minus_uniform_unconfirmed"] - expected) < 1e-4, (path.name, run["seed"])
            # each side keeps its best export (the search's among those within the budget), so
            # confirmation can only raise what the first pick scored
            if first_pick["within_budget"]:
                assert run["metric"] >= first_pick["metric"] - 1e-9
            assert run["uniform_metric_at_matched_latency"] >= uniform["metric"] - 1e-9
            checked += 1
    assert checked >= 3


def test_every_benchmark_with_results_is_in_the_readme_with_its_command() -> None:
    # A benchmark's figures go into the README with the command that made them; the runs log
    # (benchmarks/END_TO_END_RUNS.md) holds detail, not the only copy of a script's results.
    readme = (BENCHMARKS.parent / "README.md").read_text()
    results = [path.stem for path in (BENCHMARKS / "results").glob("*.json")]
    scripts = [path.stem for path in BENCHMARKS.glob("*.py")
               if any(stem == path.stem or stem.startswith(path.stem + "_") for stem in results)]
    assert "end_to_end" in scripts and "remeasure_noise" in scripts
    missing = [name for name in scripts if f"benchmarks/{name}.py" not in readme]
    assert not missing, f"benchmarks with results but no command in the README: {missing}"


def test_a_merged_files_row_shows_every_profile_its_runs_were_budgeted_with() -> None:
    runs_table = load_runs_table()
    label = runs_table.RunLabel("12-07", "Zen 3", "two sessions")
    result = {"settings": {"margin": "auto"},
              "latency_model": {"cpu_id": "25/1/1", "dense_ms": 49.633, "suggested_margin": 0.0902},
              "earlier_latency_models": [{"cpu_id": "25/1/1", "dense_ms": 33.723, "suggested_margin": 0.0667}]}
    assert runs_table.cpu_cell(result, label) == "Zen 3 (33.7, 49.6)"
    assert runs_table.margin_cell(result, label) == "auto 6.7%, 9.0%"
    unvalidated = {**result, "latency_model": {**result["latency_model"], "suggested_margin": None}}
    assert runs_table.margin_cell(unvalidated, label) == "auto 6.7%, unmeasured"
