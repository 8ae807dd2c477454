"""Profile -> fit -> predict -> file, on a synthetic device with a fake clock (no real timing).

The synthetic backend's operators and end-to-end models "take" a known time by advancing a
fake ``perf_counter_ns``, so every figure the pipeline produces can be checked exactly.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from autoprune.errors import FingerprintMismatch, LatencyModelError
from autoprune.latency import backends
from autoprune.latency import protocol as proto
from autoprune.latency.backends import Backend
from autoprune.latency.factory import ModelFactory, Quantize
from autoprune.latency.fitting import (
    TABLE_FEATURES,
    agreement,
    cross_validated_mape,
    fit_bounded,
    fitter_for,
    kendall_tau,
    mape,
    within,
)
from autoprune.latency.operators import OperatorKey, layer_keys
from autoprune.latency.predictor import MAX_MARGIN, LatencyModel, LatencyModelWarning, flops_features
from autoprune.latency.profile import profile
from autoprune.latency.protocol import Protocol, Runnable
from autoprune.latency.schema import ValidationPoint, ValidationRecord
from autoprune.latency.validate import dense_speed, validate
from autoprune.space import Architecture, LayerConfig, ModelShape, SearchSpace

SHAPE = ModelShape(num_layers=4, hidden=64, num_heads=4, intermediate=128, vocab_size=100, max_position=64)
SPACE = SearchSpace.from_dict({
    "name": "synthetic",
    "per_layer": {"keep": [True, False], "heads": [0, 1, 2, 4], "ffn": [0.25, 0.5, 0.75, 1.0],
                  "sparsity": [0.5, 0.9], "pattern": ["dense", "unstructured", "2:4"], "bits": [32, 8]},
}, SHAPE)
FAST = Protocol(rounds=3, min_repeats=1, max_repeats=1, warmup=1, extra_rounds=0)
CLOCK = {"ns": 0}


def op_ms(key: OperatorKey) -> float:
    """The synthetic device's operator times (int8 is 40% cheaper)."""
    scale = 0.6 if key.bits == 8 else 1.0
    if key.kind == "attention":
        return scale * (0.2 + 0.5 * key.size) if key.size else 0.05
    if key.kind == "ffn":
        return scale * (0.1 + 0.02 * key.size) if key.size else 0.05
    return 0.7 if key.kind == "embeddings" else 0.1


def table_truth(arch: Architecture) -> float:
    """End to end = 1.15 x the operator sum + 0.2 ms glue per layer + 0.4 ms fixed."""
    total = op_ms(OperatorKey("embeddings")) + op_ms(OperatorKey("classifier")) + 0.4
    for layer in arch:
        if layer.keep:
            total += 1.15 * sum(op_ms(k) for k in layer_keys(layer, SHAPE)) + 0.2
    return total


def flops_truth(arch: Architecture) -> float:
    return 0.5 + 400.0 * float(flops_features(arch, SHAPE, 1, 16)[0])


class _NoFactory(ModelFactory):
    name = "synthetic"
    shape = SHAPE

    def build(self, arch: Architecture, quantize: Quantize) -> nn.Module:  # pragma: no cover
        raise AssertionError("the synthetic backend builds nothing")


def _advance(ms: float) -> Runnable:
    def run() -> None:
        CLOCK["ns"] += int(ms * 1e6)
    return run


def synthetic_backend(truth, speed: float = 1.0):
    """A backend whose models and operators take ``speed`` times their ``truth`` / ``op_ms``."""
    class Synthetic(Backend):
        name = "torch"

        def model(self, arch: Architecture) -> Runnable:
            return _advance(speed * truth(arch))

        def operators(self, arch: Architecture) -> dict[OperatorKey, Runnable]:
            keys = {k for i in arch.kept_layers for k in layer_keys(arch[i], SHAPE)}
            keys |= {OperatorKey("embeddings"), OperatorKey("classifier")}
            return {k: _advance(speed * op_ms(k)) for k in keys}
    return Synthetic


@pytest.fixture()
def device(monkeypatch: pytest.MonkeyPatch):
    """Install the fake clock and return a function that installs a synthetic backend."""
    monkeypatch.setattr(proto.time, "perf_counter_ns", lambda: CLOCK["ns"])

    def install(truth) -> None:
        monkeypatch.setitem(backends.BACKENDS, "torch", synthetic_backend(truth))
    return install


@pytest.fixture(scope="module")
def table_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One profile of the table-like synthetic device, shared (read-only) by several tests."""
    directory = tmp_path_factory.mktemp("shared")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(proto.time, "perf_counter_ns", lambda: CLOCK["ns"])
        patch.setitem(backends.BACKENDS, "torch", synthetic_backend(table_truth))
        _profile(directory)
    return directory / "lm.json"


@pytest.fixture()
def table_model(table_file: Path, tmp_path: Path) -> LatencyModel:
    """A private copy of the shared profile (tests may edit or re-save it)."""
    copy = tmp_path / "lm.json"
    copy.write_text(table_file.read_text())
    return LatencyModel.load(copy)


def _profile(tmp_path: Path, **kwargs) -> LatencyModel:
    options = {"space": SPACE, "n_fit": 40, "protocol": FAST, "factory": _NoFactory(),
               "time_budget_s": None, "group_size": 8}
    options.update(kwargs)
    return profile("synthetic", "torch", 1, 16, 1, tmp_path / "lm.json", **options)


def test_table_device_selects_table_and_predicts_held_out_exactly(table_model: LatencyModel) -> None:
    model = table_model
    assert model.selected == "table"
    rng = np.random.default_rng(7)
    archs = [SPACE.sample(rng) for _ in range(30)]
    errors = [abs(model.predict(a) / table_truth(a) - 1) for a in archs]
    assert max(errors) < 0.01
    assert model.dense_ms == pytest.approx(table_truth(SPACE.dense()), rel=1e-3)
    assert model.document.fits["table"].cv_mape < model.document.fits["flops"].cv_mape


def test_flops_device_selects_the_flops_baseline(device, tmp_path: Path) -> None:
    device(flops_truth)
    model = _profile(tmp_path)
    assert model.selected == "flops"
    arch = SPACE.sample(np.random.default_rng(3))
    assert model.predict(arch) == pytest.approx(flops_truth(arch), rel=0.01)


def test_validate_reports_the_figures_and_writes_them(device, tmp_path: Path) -> None:
    device(table_truth)
    model = _profile(tmp_path)
    record = validate(model, n=12, space=SPACE, protocol=FAST, factory=_NoFactory(), save=True)
    assert record.n_heldout == 12
    assert record.within_10pct == 1.0 and record.kendall_tau > 0.95 and record.mape < 0.01
    assert record.repeatability_within_10pct == 1.0
    assert record.flops_baseline_mape > record.mape
    fitted = {r.architecture_hash for r in model.document.end_to_end}
    assert not fitted & {p.architecture_hash for p in record.points}  # held out for real
    reloaded = LatencyModel.load(tmp_path / "lm.json")
    assert reloaded.document.validation == record


def _with_errors(model: LatencyModel, errors: list[float]) -> LatencyModel:
    """The model with a validation record whose passes measured predicted x (1 + error)."""
    points = [ValidationPoint(architecture_hash=f"a{i}", predicted_ms=10.0, flops_predicted_ms=10.0,
                              first_ms=10.0 * (1 + error), second_ms=10.0 * (1 + error))
              for i, error in enumerate(errors)]
    record = ValidationRecord(n_heldout=len(points), within_10pct=1.0, kendall_tau=1.0, mape=0.0,
                              flops_baseline_mape=0.0, table_mape=0.0, repeatability_within_10pct=1.0,
                              selected="table", space="test", seconds=0.0, points=points)
    return model.with_document(validation=record)


def test_suggested_margin_covers_the_held_out_under_predictions(table_model: LatencyModel) -> None:
    assert table_model.suggested_margin() is None  # never validated
    # 100 passes, measured 0%..9.9% over their predictions: the 95% quantile is 9.405%, and a
    # model predicted at budget x (1 - m) with m = q / (1 + q) then measures at the budget.
    model = _with_errors(table_model, [i / 1000 for i in range(100)])
    q = float(np.quantile([i / 1000 for i in range(100)], 0.95))
    assert model.suggested_margin() == pytest.approx(q / (1 + q))
    assert (1 - model.suggested_margin()) * (1 + q) == pytest.approx(1.0)
    assert model.suggested_margin(coverage=0.5) < model.suggested_margin()
    assert model.describe()["validation"]["suggested_margin"] == model.suggested_margin()
    # A model that over-predicts everywhere needs no margin; a hopeless one is capped.
    assert _with_errors(table_model, [-0.05] * 10).suggested_margin() == 0.0
    assert _with_errors(table_model, [3.0] * 10).suggested_margin() == MAX_MARGIN


def test_sparsity_only_changes_predict_the_dense_latency(table_model: LatencyModel) -> None:
    model = table_model
    dense = SPACE.dense()
    for pattern, sparsity in (("unstructured", 0.5), ("unstructured", 0.9), ("2:4", 0.0)):
        sparse = Architecture(tuple(LayerConfig(heads=4, pattern=pattern, sparsity=sparsity) for _ in range(4)))
        assert abs(model.predict(sparse) / model.predict(dense) - 1) <= 0.05
        assert model.predict(sparse) == pytest.approx(model.predict(dense))


def test_file_round_trip_keeps_every_prediction(device, tmp_path: Path) -> None:
    device(table_truth)
    model = _profile(tmp_path)
    data = json.loads((tmp_path / "lm.json").read_text())
    assert data["format"] == "autoprune-latency-model" and data["selected"] in ("table", "flops")
    assert {"median_ms", "p10_ms", "p90_ms", "rounds"} <= set(data["operators"][0])
    assert len(data["end_to_end"]) == 40 and data["fingerprint"]["backend"] == "torch"
    loaded = LatencyModel.load(tmp_path / "lm.json")
    rng = np.random.default_rng(11)
    for arch in (SPACE.sample(rng) for _ in range(10)):
        assert loaded.predict(arch) == pytest.approx(model.predict(arch))
        assert loaded.predict_with("flops", arch) == pytest.approx(model.predict_with("flops", arch))


def test_uncovered_shape_or_architecture_is_a_one_line_error(table_model: LatencyModel) -> None:
    model = table_model
    with pytest.raises(LatencyModelError, match="covers batch 1, seq_len 16 only"):
        model.predict(SPACE.dense(), batch=8)
    with pytest.raises(LatencyModelError, match="layers"):
        model.predict(Architecture.dense(6, 4))
    with pytest.raises(LatencyModelError, match="4-bit"):
        model.predict(Architecture.uniform(4, LayerConfig(heads=4, bits=4)))


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"hello": 1}', "not an autoprune latency model"),
    ('[1, 2]', "not an autoprune latency model"),
    ('{"format": "autoprune-latency-model", "version": 99}', "version 99"),
    ('{"format": "autoprune-latency-model", "version": 1, "model": "x"}', "shape"),
])
def test_corrupt_or_foreign_files_are_rejected(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(LatencyModelError, match=message) as info:
        LatencyModel.load(path)
    assert "\n" not in str(info.value)
    with pytest.raises(LatencyModelError, match="no such file"):
        LatencyModel.load(tmp_path / "missing.json")


def test_a_tampered_field_is_named(table_model: LatencyModel, tmp_path: Path) -> None:
    data = json.loads((tmp_path / "lm.json").read_text())
    data["operators"][0]["median_ms"] = -1
    (tmp_path / "lm.json").write_text(json.dumps(data))
    with pytest.raises(LatencyModelError, match=r"operators\.0\.median_ms"):
        LatencyModel.load(tmp_path / "lm.json")


def test_another_device_warns_and_strict_refuses(table_model: LatencyModel, tmp_path: Path) -> None:
    data = json.loads((tmp_path / "lm.json").read_text())
    data["fingerprint"]["cpu_model"] = "Some Other CPU 9000"
    (tmp_path / "lm.json").write_text(json.dumps(data))
    with pytest.warns(LatencyModelWarning, match="cpu_model"):
        LatencyModel.load(tmp_path / "lm.json")
    with pytest.raises(FingerprintMismatch, match="another device"):
        LatencyModel.load(tmp_path / "lm.json", strict=True)


def test_same_device_loads_silently(table_model: LatencyModel, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", LatencyModelWarning)
        assert LatencyModel.load(tmp_path / "lm.json", strict=True).device_differences() == []


def test_unknown_backend_and_too_small_budget_are_errors(device, tmp_path: Path) -> None:
    device(table_truth)
    with pytest.raises(LatencyModelError, match="backend 'tensorrt'"):
        profile("synthetic", "tensorrt", 1, 16, 1, None, space=SPACE, factory=_NoFactory())
    with pytest.raises(LatencyModelError, match="seq_len 128"):
        profile("synthetic", "torch", 1, 128, 1, None, space=SPACE, factory=_NoFactory())
    with pytest.raises(LatencyModelError, match="n_fit"):
        _profile(tmp_path, n_fit=3)


def test_agreement_figures() -> None:
    measured = np.array([10.0, 20.0, 30.0, 40.0])
    assert within(measured * 1.09, measured) == 1.0
    assert within(measured * [1.0, 1.2, 1.0, 0.85], measured) == 0.5
    assert mape(measured * 1.1, measured) == pytest.approx(0.1)
    assert kendall_tau(measured, measured) == pytest.approx(1.0)
    assert kendall_tau(measured[::-1], measured) == pytest.approx(-1.0)
    assert agreement([10.0, 10.0], [10.9, 12.0]) == 0.5


def test_table_fit_recovers_a_linear_truth_and_cross_validates() -> None:
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.uniform(1, 10, 50), rng.uniform(1, 10, 50), rng.integers(1, 7, 50), np.ones(50)])
    y = x @ np.array([1.2, 0.8, 0.3, 2.0])
    fit = fit_bounded(x, y, TABLE_FEATURES)
    assert fit.coefficients == pytest.approx((1.2, 0.8, 0.3, 2.0), rel=1e-4)
    assert cross_validated_mape(x, y, fitter_for(TABLE_FEATURES)) < 1e-4
    # Bounds hold: a truth with a negative operator scale is clipped to 0, not followed.
    clipped = fit_bounded(x, x @ np.array([-1.0, 0.8, 0.3, 20.0]), TABLE_FEATURES)
    assert clipped.coefficients[0] >= 0.0


def per_bits_truth(arch: Architecture) -> float:
    """In context int8 blocks cost 0.8x their isolated time, fp32 blocks 1.3x."""
    total = 1.0
    for layer in arch:
        if layer.keep:
            total += (1.3 if layer.bits == 32 else 0.8) * sum(op_ms(k) for k in layer_keys(layer, SHAPE))
    return total


def test_bit_dependent_correction_is_fitted_per_bit_width(device, tmp_path: Path) -> None:
    device(per_bits_truth)
    model = _profile(tmp_path)
    names = model.document.fits["table"].names
    assert "attention_ms@8" in names and "ffn_ms@32" in names
    assert model.selected == "table"
    rng = np.random.default_rng(5)
    for arch in (SPACE.sample(rng) for _ in range(20)):
        assert model.predict(arch) == pytest.approx(per_bits_truth(arch), rel=0.01)
    assert LatencyModel.load(tmp_path / "lm.json").predict(SPACE.dense()) == pytest.approx(model.predict(SPACE.dense()))


def test_groups_measured_under_different_load_are_put_on_one_scale(device) -> None:
    """Every other group runs 3x slower (a neighbour's job); the dense reference in every
    round and the rescaling to its overall median give every architecture its quiet figure."""
    from autoprune.latency.profile import measure_architectures

    state = {"builds": 0, "load": 1.0}

    def build(arch: Architecture) -> Runnable:
        state["builds"] += 1
        state["load"] = 3.0 if (state["builds"] // 5) % 2 else 1.0  # changes with each group
        ms = table_truth(arch)

        def run() -> None:
            CLOCK["ns"] += int(ms * state["load"] * 1e6)
        return run

    device(table_truth)
    rng = np.random.default_rng(2)
    archs = [SPACE.dense()] + [SPACE.sample(rng) for _ in range(16)]
    figures = measure_architectures(build, archs, FAST, threads=1, group_size=4, reference=SPACE.dense())
    ratios = [figures[a.hash].median_ms / table_truth(a) for a in archs]
    assert max(ratios) / min(ratios) == pytest.approx(1.0, abs=1e-6)  # one common scale
    plain = measure_architectures(build, archs, FAST, threads=1, group_size=4)
    spread = [plain[a.hash].median_ms / table_truth(a) for a in archs]
    assert max(spread) / min(spread) > 2.0  # without the reference, the load shows


def test_validation_is_on_the_profile_scale_when_the_machine_slows_down(device, table_model) -> None:
    """Pass 2 runs on a machine 1.5x slower throughout: the passes still agree (relative
    latencies), and the slowdown is reported as drift rather than hidden."""
    load = {"factor": 1.0}

    def slowed(arch: Architecture) -> float:
        return table_truth(arch) * load["factor"]

    class Switch:
        def start(self, stage: str, total: int) -> None:
            load["factor"] = 1.5 if stage == "pass 2" else 1.0

        def advance(self, steps: int = 1) -> None:
            pass

    class Dynamic(synthetic_backend(table_truth)):
        def model(self, arch: Architecture) -> Runnable:
            def run() -> None:
                CLOCK["ns"] += int(slowed(arch) * 1e6)
            return run

    device(table_truth)
    backends.BACKENDS["torch"] = Dynamic  # the fixture's monkeypatch restores it
    record = validate(table_model, n=10, space=SPACE, protocol=FAST, factory=_NoFactory(), progress=Switch())
    assert record.repeatability_within_10pct == 1.0 and record.within_10pct == 1.0
    assert record.dense_drift == pytest.approx([1.0, 1.5], rel=1e-3)
    assert record.absolute_mape == pytest.approx(0.2, rel=0.02)  # raw scale: 1.25x on average


def test_dense_speed_is_dense_now_over_its_profiled_figure(device, table_model) -> None:
    device(table_truth)
    assert dense_speed(table_model, protocol=FAST, space=SPACE, factory=_NoFactory()) == pytest.approx(1.0, rel=1e-3)
    device(lambda arch: 0.78 * table_truth(arch))  # the same CPU model, a faster machine
    assert dense_speed(table_model, protocol=FAST, space=SPACE, factory=_NoFactory()) == pytest.approx(0.78, rel=1e-3)


def test_profile_writes_to_the_store_and_a_second_profile_reuses_it(device, tmp_path: Path) -> None:
    store_module = pytest.importorskip("autoprune.store")
    store = store_module.Store(f"sqlite:///{tmp_path / 'trials.db'}")
    device(table_truth)
    first = _profile(tmp_path, store=store, n_fit=12)
    device_id = store.add_device(first.fingerprint)
    rows = store.latency_measurements(device_id, backend="torch", batch=1, seq_len=16, threads=1)
    assert sum(r.operator is not None for r in rows) == len(first.document.operators)
    assert sum(r.architecture_hash is not None for r in rows) == 12

    class Reused(synthetic_backend(table_truth)):
        def operators(self, arch: Architecture) -> dict[OperatorKey, Runnable]:
            raise AssertionError("stored operator measurements were measured again")

        def model(self, arch: Architecture) -> Runnable:
            # dense only, once: the check that this machine still runs at the stored speed
            if arch != SPACE.dense() or built:
                raise AssertionError("a stored architecture was measured again")
            built.append(arch)
            return super().model(arch)

    built: list[Architecture] = []

    backends.BACKENDS["torch"] = Reused
    second = _profile(tmp_path / "again", store=store, n_fit=12)
    assert [o.median_ms for o in second.document.operators] == [o.median_ms for o in first.document.operators]
    assert second.predict(SPACE.dense()) == pytest.approx(first.predict(SPACE.dense()))


def test_profile_measures_a_faster_machine_again_told_or_not(device, tmp_path: Path) -> None:
    store_module = pytest.importorskip("autoprune.store")
    store = store_module.Store(f"sqlite:///{tmp_path / 'trials.db'}")
    device(table_truth)
    first = _profile(tmp_path, store=store, n_fit=12)

    backends.BACKENDS["torch"] = synthetic_backend(table_truth, speed=0.95)  # within the noise
    reused = _profile(tmp_path / "reused", store=store, n_fit=12)
    assert reused.dense_ms == pytest.approx(first.dense_ms)  # the stored figures, not this machine
    backends.BACKENDS["torch"] = synthetic_backend(table_truth, speed=0.8)  # a fifth faster now
    # reuse asked for and refused by the speed check (first: the store holds only stale
    # figures), then reuse not asked for
    for name, options in (("checked", {}), ("fresh", {"reuse_measurements": False})):
        fresh = _profile(tmp_path / name, store=store, n_fit=12, **options)
        assert fresh.dense_ms == pytest.approx(0.8 * first.dense_ms, rel=0.02)
        assert fresh.predict(SPACE.dense()) == pytest.approx(0.8 * first.predict(SPACE.dense()), rel=0.02)
