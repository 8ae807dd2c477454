"""The latency models committed in ``latency_models/`` (this machine's and other CPUs'), which
the examples, ``make demo`` and the end-to-end benchmark load: each must load, describe the
MiniLM shape it was profiled on, and predict in the order its own measurements imply."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from autoprune.latency.predictor import LatencyModel
from autoprune.space import Architecture

REPO = Path(__file__).resolve().parent.parent
COMMITTED = sorted((REPO / "latency_models").rglob("*.json"))


def load_quietly(path: Path) -> LatencyModel:
    # Profiled on other machines: the device-mismatch warning is expected here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LatencyModel.load(path)


def summary(layer: str, kept: int = 6) -> Architecture:
    return Architecture.from_summary(" ".join([layer] * kept + ["-"] * (6 - kept)))


def test_every_cpu_in_other_cpus_has_a_batch_1_model() -> None:
    assert any(path.name.endswith("-b1-s128.json") for path in COMMITTED if path.parent.name == "other-cpus")
    assert (REPO / "latency_models" / "this-cpu-torch-b1-s128.json") in COMMITTED


@pytest.mark.parametrize("path", COMMITTED, ids=lambda path: path.relative_to(REPO / "latency_models").as_posix())
def test_committed_latency_model_predicts_in_the_order_it_measured(path: Path) -> None:
    model = load_quietly(path)
    assert (model.batch, model.seq_len, model.backend) == (int(path.name.split("-b")[1].split("-")[0]), 128, "torch")
    assert model.document.validation is not None, "a committed model carries its held-out validation"
    dense = model.predict(Architecture.dense(6, 12))
    # The fitted correction is least squares over random architectures, so the dense corner
    # is extrapolated; the committed models land 3-9% above their measured dense_ms.
    assert dense == pytest.approx(model.dense_ms, rel=0.10)
    half_heads = model.predict(summary("h6/f1"))
    half_ffn = model.predict(summary("h12/f0.5"))
    half_both = model.predict(summary("h6/f0.5"))
    three_layers = model.predict(summary("h12/f1", kept=3))
    int8 = model.predict(summary("h12/f1/b8"))
    assert half_both < min(half_heads, half_ffn) <= max(half_heads, half_ffn) < dense
    assert 0.3 * dense < three_layers < 0.7 * dense
    assert int8 < dense
