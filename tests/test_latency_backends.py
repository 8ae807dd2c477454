"""Real backends on a tiny random BERT: models and operator blocks run and are what they claim."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx
import pytest
import torch
from torch.nn.utils import parametrize

from autoprune.compress.quantize import is_int8_linear
from autoprune.errors import AutopruneError, LatencyModelError
from autoprune.latency import QUICK, CompressFactory, LatencyModel, profile, validate
from autoprune.latency import backends as onnx_backend
from autoprune.latency.backends import OnnxRuntimeBackend, TorchBackend, get_backend
from autoprune.latency.operators import OperatorKey, operator_plan
from autoprune.space import Architecture, LayerConfig, SearchSpace

TINY_SPACE = {"name": "tiny", "per_layer": {"keep": [True, False], "heads": [0, 2, 4], "ffn": [0.5, 1.0],
                                            "sparsity": [0.5], "pattern": ["dense", "unstructured"],
                                            "bits": [32, 8]}}
MIXED = Architecture((LayerConfig(heads=2, ffn=0.5, bits=8), LayerConfig(heads=4, ffn=1.0, bits=32)))


@pytest.fixture()
def factory(tiny_bert_config) -> CompressFactory:
    return CompressFactory(tiny_bert_config)


def test_torch_backend_runs_the_compressed_model_with_real_int8(factory: CompressFactory) -> None:
    backend = TorchBackend(factory, batch=2, seq_len=16, threads=1)
    logits = backend.model(MIXED)().logits
    assert logits.shape == (2, 2)
    built = factory.build(MIXED, "real")
    assert any(is_int8_linear(m) for m in built.bert.encoder.layer[0].modules())  # layer 0 is int8
    assert not any(is_int8_linear(m) for m in built.bert.encoder.layer[1].modules())


def test_operator_blocks_cover_every_layer_and_match_the_model(factory: CompressFactory) -> None:
    backend = TorchBackend(factory, batch=1, seq_len=16, threads=1)
    ops = backend.operators(MIXED)
    assert set(ops) == {OperatorKey("embeddings"), OperatorKey("classifier"), OperatorKey("attention", 2, 8),
                        OperatorKey("ffn", 32, 8), OperatorKey("attention", 4, 32), OperatorKey("ffn", 64, 32)}
    hidden = ops[OperatorKey("attention", 4, 32)]()
    assert hidden.shape == (1, 16, 32)
    assert ops[OperatorKey("classifier")]().shape == (1, 2)
    # A removed attention (0 heads) and FFN (0 neurons) still run: LayerNorm(x + bias).
    removed = Architecture((LayerConfig(heads=0, ffn=0.0), LayerConfig(heads=4)))
    ops = backend.operators(removed)
    assert ops[OperatorKey("attention", 0, 32)]().shape == (1, 16, 32)
    assert ops[OperatorKey("ffn", 0, 32)]().shape == (1, 16, 32)


def test_operator_plan_measures_each_table_entry(tiny_shape) -> None:
    plans = operator_plan(tiny_shape, (0, 2, 4), (0.25, 0.5, 0.75, 1.0), (32, 8))
    heads = {(layer.heads, layer.bits) for arch in plans for layer in arch}
    ffn = {(layer.ffn, layer.bits) for arch in plans for layer in arch}
    assert heads == {(h, b) for h in (0, 2, 4) for b in (32, 8)}
    assert ffn == {(f, b) for f in (0.25, 0.5, 0.75, 1.0) for b in (32, 8)}
    assert all(len(arch) == tiny_shape.num_layers for arch in plans)


def test_backend_rejects_bad_shapes_and_names(factory: CompressFactory) -> None:
    with pytest.raises(LatencyModelError, match="seq_len 65"):
        TorchBackend(factory, batch=1, seq_len=65, threads=1)
    with pytest.raises(LatencyModelError, match="batch 0"):
        TorchBackend(factory, batch=0, seq_len=8, threads=1)
    with pytest.raises(LatencyModelError, match="'tpu'"):
        get_backend("tpu")


def test_onnxruntime_backend_quantizes_each_layer_at_its_bits(tiny_bert_config, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    tiny_bert_config.num_hidden_layers = 3
    factory = CompressFactory(tiny_bert_config)
    backend = OnnxRuntimeBackend(factory, batch=1, seq_len=16, threads=1)
    arch = Architecture((LayerConfig(heads=2, bits=8, pattern="unstructured", sparsity=0.5),
                         LayerConfig.dropped(), LayerConfig(heads=4, ffn=0.5, bits=4)))
    exported: list[Path] = []
    original = onnx_backend._quantize

    def spy(path: Path, bits_by_scope: dict[str, int]) -> None:
        original(path, bits_by_scope)
        exported.append(tmp_path / "seen.onnx")
        exported[-1].write_bytes(path.read_bytes())

    monkeypatch.setattr(onnx_backend, "_quantize", spy)
    outputs = backend.model(arch)()
    assert outputs[0].shape == (1, 2)
    assert not list(Path(backend._workdir.name).glob("*.onnx"))  # deleted once loaded
    ops = Counter(node.op_type for node in onnx.load(str(exported[-1])).graph.node)
    assert ops["MatMulInteger"] == 6  # the int8 layer: q, k, v, output, intermediate, output
    assert ops["MatMulNBits"] == 6    # the int4 layer
    # Sparsity masks are baked into the exported weights, not exported as multiplications.
    built = backend._build_fp32(arch)
    query = built.bert.encoder.layer[0].attention.self.query
    assert not parametrize.is_parametrized(query, "weight")
    assert float((query.weight == 0).float().mean()) == pytest.approx(0.5, abs=0.02)


def test_tiny_profile_and_validate_on_the_real_torch_backend(factory: CompressFactory, tmp_path: Path) -> None:
    space = SearchSpace.from_dict(TINY_SPACE, factory.shape)
    model = profile("tiny", "torch", 1, 16, 1, tmp_path / "tiny.json", space=space, n_fit=10,
                    protocol=QUICK, factory=factory, time_budget_s=None)
    assert (tmp_path / "tiny.json").is_file()
    assert model.dense_ms > 0 and len(model.document.end_to_end) == 10
    assert model.selected in ("table", "flops")
    assert {o.bits for o in model.document.operators} == {32, 8}
    # the machine as the timing found it: other processes' CPUs sampled, not only the load average
    assert {"load_1min_start", "others_busy_cpus_start", "load_1min_end"} <= set(model.document.conditions)
    record = validate(tmp_path / "tiny.json", n=6, space=space, protocol=QUICK, factory=factory, save=True)
    assert record.n_heldout == 6
    assert 0.0 <= record.within_10pct <= 1.0 and -1.0 <= record.kendall_tau <= 1.0
    assert all(p.first_ms > 0 and p.second_ms > 0 for p in record.points)
    assert "others_busy_cpus_start" in record.conditions
    assert LatencyModel.load(tmp_path / "tiny.json").document.validation == record
    torch.set_num_threads(torch.get_num_threads())  # untouched by the thread limit


@pytest.mark.slow
def test_onnxruntime_profile_on_a_tiny_model(factory: CompressFactory, tmp_path: Path) -> None:
    space = SearchSpace.from_dict(TINY_SPACE, factory.shape)
    model = profile("tiny", "onnxruntime", 1, 16, 1, tmp_path / "ort.json", space=space, n_fit=8,
                    protocol=QUICK, factory=factory, time_budget_s=None)
    assert model.backend == "onnxruntime" and "onnxruntime" in model.fingerprint["libraries"]
    assert LatencyModel.load(tmp_path / "ort.json").predict(space.dense()) > 0


@pytest.mark.slow
def test_minilm_profile_and_validate(minilm_dir: Path, tmp_path: Path) -> None:
    """The packaged MiniLM through the real compression engine (numbers not asserted)."""
    model = profile("minilm-l6", "torch", 1, 32, 1, tmp_path / "minilm.json", n_fit=10,
                    protocol=QUICK, time_budget_s=None)
    assert model.shape.num_layers == 6 and model.dense_ms > 0
    assert {o.bits for o in model.document.operators} == {32, 8, 4}
    record = validate(tmp_path / "minilm.json", n=5, protocol=QUICK)
    assert record.n_heldout == 5 and len(record.points) == 5


def test_base_shape_reads_the_config_alone_and_names_a_bad_model(minilm_dir: Path, tmp_path: Path) -> None:
    from autoprune.latency.factory import base_shape

    assert base_shape(str(minilm_dir)) == CompressFactory(str(minilm_dir)).shape
    assert base_shape(str(minilm_dir), num_labels=3).num_labels == 3
    with pytest.raises(AutopruneError, match="no-model"):
        base_shape(str(tmp_path / "no-model"))  # no such directory
    (tmp_path / "empty-model").mkdir()
    with pytest.raises(LatencyModelError, match="empty-model"):
        base_shape(str(tmp_path / "empty-model"))  # a directory with no config
