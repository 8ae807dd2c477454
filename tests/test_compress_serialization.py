"""save / autoprune.load: exact reloads of non-uniform, sparse and quantized models."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import BertForSequenceClassification

import autoprune
from autoprune.compress import compress, count_parameters, finalize, save
from autoprune.compress.modules import encoder_layers
from autoprune.compress.quantize import is_int8_linear
from autoprune.errors import ModelError
from autoprune.models import load_tokenizer
from autoprune.space import Architecture, LayerConfig

MIXED = Architecture(
    (
        LayerConfig(heads=3, ffn=0.5, bits=8),
        LayerConfig.dropped(),
        LayerConfig(heads=0, ffn=0.25, pattern="2:4"),
        LayerConfig(heads=1, ffn=0.0, pattern="unstructured", sparsity=0.5, bits=4),
        LayerConfig(heads=4, ffn=1.0, bits=8, pattern="1:4"),
    )
)
BATCH = {
    "input_ids": torch.randint(1, 120, (2, 13), generator=torch.Generator().manual_seed(7)),
    "attention_mask": torch.tensor([[1] * 13, [1] * 9 + [0] * 4]),
}


@pytest.fixture()
def base(tiny_bert_config):
    tiny_bert_config.num_hidden_layers = 5
    torch.manual_seed(0)
    return BertForSequenceClassification(tiny_bert_config).eval()


def _logits(model):
    with torch.no_grad():
        return model(**BATCH).logits


@pytest.mark.parametrize("quantize", ["none", "fake", "real"])
def test_round_trip_is_exact(base, tmp_path, quantize):
    model = compress(base, MIXED, quantize=quantize).eval()
    save(model, tmp_path / "m")
    reloaded = autoprune.load(tmp_path / "m")
    assert reloaded.autoprune_architecture == MIXED
    assert reloaded.autoprune_quantize == quantize
    assert len(encoder_layers(reloaded)) == 4
    assert count_parameters(reloaded) == count_parameters(model)
    torch.testing.assert_close(_logits(reloaded), _logits(model), atol=0, rtol=0)


def test_int8_is_stored_as_codes(base, tmp_path):
    save(compress(base, MIXED, quantize="real"), tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    codes = tensors["bert.encoder.layer.0.attention.self.query.weight_int8"]
    assert codes.dtype == torch.int8 and codes.shape == (24, 32)
    assert is_int8_linear(encoder_layers(autoprune.load(tmp_path))[0].attention.self.query)
    metadata = json.loads((tmp_path / "autoprune.json").read_text())
    assert metadata["version"] == 1 and metadata["architecture_hash"] == MIXED.hash


def test_finalized_model_reloads_and_resumes_training(base, tmp_path):
    """A fine-tuned (fake) model saved mid-training keeps its masks after reload."""
    model = compress(base, MIXED, quantize="fake")
    save(model, tmp_path / "fake")
    reloaded = autoprune.load(tmp_path / "fake").train()
    reloaded(**BATCH, labels=torch.tensor([0, 1])).loss.backward()
    layer = encoder_layers(reloaded)[1]  # base layer 2: 2:4 FFN
    assert torch.all(
        layer.intermediate.dense.parametrizations.weight.original.grad[
            layer.intermediate.dense.weight == 0
        ]
        == 0
    )
    final = finalize(reloaded.eval())
    save(final, tmp_path / "final")
    torch.testing.assert_close(
        _logits(autoprune.load(tmp_path / "final")), _logits(final), atol=0, rtol=0
    )


def test_dense_hf_model_and_tokenizer(base, tmp_path, minilm_dir):
    tokenizer = load_tokenizer(str(minilm_dir))
    save(base, tmp_path, tokenizer=tokenizer)
    reloaded = autoprune.load(tmp_path)
    torch.testing.assert_close(_logits(reloaded), _logits(base), atol=0, rtol=0)
    assert load_tokenizer(str(tmp_path))("hello")["input_ids"] == tokenizer("hello")["input_ids"]


def test_not_a_model_dir_is_model_error(tmp_path):
    with pytest.raises(ModelError, match="autoprune.json"):
        autoprune.load(tmp_path)
    (tmp_path / "autoprune.json").write_text('{"format": "other"}')
    with pytest.raises(ModelError, match="format"):
        autoprune.load(tmp_path)


def test_mismatched_weights_are_model_error(base, tmp_path):
    save(compress(base, MIXED), tmp_path)
    metadata = json.loads((tmp_path / "autoprune.json").read_text())
    metadata["architecture"][0]["heads"] = 2
    (tmp_path / "autoprune.json").write_text(json.dumps(metadata))
    with pytest.raises(ModelError, match="do not fit"):
        autoprune.load(tmp_path)
