"""benchmarks/end_to_end.py's options: its defaults are the settings of the Intel 24-candidate
runs (the 0.3x run met every target), and moving the defaults did not rename the jobs of the
runs before."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
from benchmark_scripts import BENCHMARKS, load_benchmark

# Settings that say which runs, where they go and how: not what a run is.
NOT_SETTINGS = {"budgets", "seeds", "merge", "phase", "threads", "results", "quiet_wait"}


@pytest.fixture(scope="module")
def end_to_end() -> ModuleType:
    return load_benchmark("end_to_end")


@pytest.mark.parametrize("results", ["end_to_end_intel_e24.json", "end_to_end_intel_e24_half.json"])
def test_the_defaults_are_the_settings_of_the_intel_24_candidate_runs(end_to_end: ModuleType, results: str) -> None:
    defaults = vars(end_to_end.build_parser().parse_args([]))
    recorded = json.loads((BENCHMARKS / "results" / results).read_text())["settings"]
    for key, value in defaults.items():
        if key in NOT_SETTINGS:
            continue
        ran = recorded.get(key, end_to_end.FIRST_SETTINGS.get(key))
        if key == "latency_model":  # under the home of the machine that ran it
            assert Path(ran).name == Path(value).name == end_to_end.HERE_LATENCY_MODEL.name
        else:
            assert ran == value, key


def test_the_default_runs_have_the_job_names_of_the_intel_24_candidate_runs(end_to_end: ModuleType) -> None:
    defaults = end_to_end.build_parser().parse_args([])
    tag, options = end_to_end.search_tag("bert-structured", 0.5, 0, defaults)
    assert tag == "bert-structured-0.5-s0-e24-mauto-r400-fs-here-g2-i-s4"
    assert options == {"warm_start": 4, "guided_start": 2, "guided_pick": "importance", "start_min_layers": 4}


def test_the_first_settings_name_a_run_by_budget_and_seed_alone(end_to_end: ModuleType) -> None:
    first = end_to_end.FIRST_SETTINGS
    args = end_to_end.build_parser().parse_args([
        "--evaluations", str(first["evaluations"]), "--margin", str(first["margin"]),
        "--latency-model", first["latency_model"], "--guided-start", "0",
        "--start-min-layers", "0", "--rungs", "25,100", "--verify", "0", "--confirm", "0",
        "--no-finetune-seeds"])
    tag, options = end_to_end.search_tag("bert-int8", 0.3, 1, args)
    assert tag == "bert-int8-0.3-s1" and options == {"warm_start": 4}


def test_a_merge_keeps_the_profiles_that_budgeted_the_runs_it_kept(end_to_end: ModuleType) -> None:
    first = {"cpu_id": "25/1/1", "dense_ms": 33.723, "suggested_margin": 0.0667,
             "path": "latency_models/other-cpus/first-run.json"}
    second = {"cpu_id": "25/1/1", "dense_ms": 49.633, "suggested_margin": 0.0902,
              "path": "/root/.autoprune/benchmarks/here.json"}
    assert end_to_end.earlier_latency_models({"latency_model": first}, second, kept_earlier=True) == [first]
    # the same profile, its path changed when it was kept in the repository: not another one
    assert end_to_end.earlier_latency_models({"latency_model": first}, {**first, "path": "/x.json"}, True) == []
    # no earlier run kept: none was budgeted with the earlier profile
    assert end_to_end.earlier_latency_models({"latency_model": first}, second, kept_earlier=False) == []
    # a third session's merge keeps both earlier profiles, oldest first
    merged = {"latency_model": second, "earlier_latency_models": [first]}
    assert end_to_end.earlier_latency_models(merged, {**second, "dense_ms": 39.2}, True) == [first, second]
    # one invocation whose later search found the host faster and profiled again: its
    # earlier searches' profile is kept beside the earlier results', the last is the file's own
    third = {**second, "dense_ms": 39.2}
    assert end_to_end.earlier_latency_models({"latency_model": first}, third, True, [second, third]) == [first, second]
    assert end_to_end.earlier_latency_models(None, third, False, [second, third]) == [second]


def test_a_merge_or_a_report_keeps_the_notes_of_the_runs_it_keeps(end_to_end: ModuleType) -> None:
    earlier = {"runs": [], "notes": "seed 0: dense ran 20% faster in the export's process"}
    assert end_to_end.kept_notes(earlier, kept_earlier=True, phase="all") == earlier["notes"]
    assert end_to_end.kept_notes(earlier, kept_earlier=False, phase="report") == earlier["notes"]
    # the earlier runs replaced: their notes would describe runs no longer in the file
    assert end_to_end.kept_notes(earlier, kept_earlier=False, phase="all") is None
    assert end_to_end.kept_notes(None, kept_earlier=False, phase="report") is None
    assert end_to_end.kept_notes({"runs": []}, kept_earlier=True, phase="all") is None


def test_the_baseline_is_budgeted_at_the_kept_models_share_of_dense(end_to_end: ModuleType) -> None:
    # Seed 1 on a Zen 3: searched on a profile of dense 49.63 ms (budget 24.82 ms at 0.5x), the
    # kept model predicted at 21.07 ms; the baseline's job then profiled afresh at 34.29 ms, on
    # whose scale 21.07 ms would have been 0.61 of dense.
    share = end_to_end.matched_share_of_dense(21.0686, 24.8163, 0.5)
    assert share == pytest.approx(21.0686 / 49.6326)
    assert share * 34.29 == pytest.approx(14.556, abs=1e-3)


def test_the_plot_places_a_baseline_at_its_recorded_share_of_dense(end_to_end: ModuleType) -> None:
    # Seed 1 of end_to_end_zen3_e24.json: the search profiled dense at 49.6 ms, its baseline
    # re-profiled at 34.3 ms, so the baseline's milliseconds over the search's dense read 0.281.
    reprofiled = {"measured_latency_ms": 20.681, "measured_ratio": 0.4167,
                  "uniform_measured_latency_ms": 13.922, "uniform_measured_ratio": 0.406}
    assert end_to_end.uniform_share_of_dense(reprofiled) == 0.406
    earlier = {key: value for key, value in reprofiled.items() if key != "uniform_measured_ratio"}
    assert end_to_end.uniform_share_of_dense(earlier) == pytest.approx(13.922 * 0.4167 / 20.681)
