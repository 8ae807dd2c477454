"""Latency timed in a new process: the helper, and verify's measurement through it (export's is
tested in ``test_export.py``, beside its searched job)."""

from __future__ import annotations

import os
from pathlib import Path
import pytest
from tinybert import write_model

from autoprune.errors import AutopruneError, ExportError
from autoprune.fresh_process import run_in_fresh_process
from autoprune.latency import QUICK
from autoprune.space import Architecture, LayerConfig
from autoprune.verify import measure_candidates


def _pid_and_sum(a: int, b: int = 0) -> tuple[int, int]:
    return os.getpid(), a + b


def _refuse(name: str) -> None:
    raise ExportError(f"{name}: refused in the child")


def _die() -> None:
    os._exit(3)  # as the kernel's out-of-memory killer would leave it: no exception


def test_the_function_runs_in_another_process_with_its_arguments() -> None:
    pid, total = run_in_fresh_process(_pid_and_sum, 2, b=3)
    assert total == 5 and pid != os.getpid()


def test_an_exception_in_the_child_is_raised_here_with_its_type_and_message() -> None:
    with pytest.raises(ExportError, match="trial 7: refused in the child"):
        run_in_fresh_process(_refuse, "trial 7")


def test_a_child_that_dies_is_an_autoprune_error_naming_the_function() -> None:
    with pytest.raises(AutopruneError, match="_die.*died before it returned"):
        run_in_fresh_process(_die)


def test_verify_builds_and_times_candidates_and_dense_in_a_fresh_process(tmp_path: Path) -> None:
    model = str(write_model(tmp_path / "model"))
    dense = Architecture.dense(2, 4)
    small = Architecture.uniform(2, LayerConfig(heads=1, ffn=0.25))
    int8 = Architecture.uniform(2, LayerConfig(heads=2, ffn=0.5, bits=8))
    figures = run_in_fresh_process(measure_candidates, model, "torch", 1, 16, 1,
                                   [small, int8], dense, QUICK)
    assert set(figures) == {dense.hash, small.hash, int8.hash}
    for figure in figures.values():
        assert 0 < figure.p10_ms <= figure.median_ms <= figure.p90_ms
        assert figure.rounds >= QUICK.rounds
