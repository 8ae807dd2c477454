"""Physical removal of heads, FFN neurons and layers: equivalence with masking, counts."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from transformers import BertForSequenceClassification

from autoprune.compress import (
    build_random,
    compress,
    compute_importance,
    count_parameters,
    magnitude_importance,
    masked,
)
from autoprune.compress.structure import top_indices
from autoprune.errors import SpaceError
from autoprune.models import model_shape
from autoprune.space import Architecture, LayerConfig, SearchSpace, architecture_stats


@pytest.fixture()
def tiny_model(tiny_bert_config):
    torch.manual_seed(0)
    return BertForSequenceClassification(tiny_bert_config).eval()


@pytest.fixture()
def batch():
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(1, 120, (3, 12), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 8:] = 0  # padding must not change the equivalence
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": torch.tensor([0, 1, 1]),
    }


def _masks(arch, importance, shape):
    """The head / neuron masks that keep what compress() keeps."""
    heads = torch.zeros(shape.num_layers, shape.num_heads)
    neurons = [torch.zeros(shape.intermediate) for _ in range(shape.num_layers)]
    for index, layer in enumerate(arch):
        heads[index, top_indices(importance.heads[index], layer.heads)] = 1.0
        neurons[index][top_indices(importance.neurons[index], shape.ffn_neurons(layer.ffn))] = 1.0
    return heads, neurons


def _logits(model, batch):
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


ARCHS = [
    (LayerConfig(heads=2, ffn=0.5), LayerConfig(heads=3, ffn=0.25)),
    (LayerConfig(heads=0, ffn=0.5), LayerConfig(heads=1, ffn=0.0)),  # whole sub-blocks removed
    (LayerConfig(heads=0, ffn=0.0), LayerConfig(heads=4, ffn=1.0)),
    (LayerConfig(heads=1, ffn=0.1), LayerConfig(heads=4, ffn=0.9)),
]


@pytest.mark.parametrize("layers", ARCHS)
@pytest.mark.parametrize("scores", ["magnitude", "gradient"])
def test_removal_equals_masking(tiny_model, tiny_shape, batch, layers, scores):
    arch = Architecture(layers)
    importance = (
        magnitude_importance(tiny_model)
        if scores == "magnitude"
        else compute_importance(tiny_model, [batch])
    )
    heads, neurons = _masks(arch, importance, tiny_shape)
    with masked(tiny_model, heads=heads, neurons=neurons):
        expected = _logits(tiny_model, batch)
    compressed = compress(tiny_model, arch, importance).eval()
    torch.testing.assert_close(_logits(compressed, batch), expected, atol=1e-5, rtol=0)
    assert count_parameters(compressed) == architecture_stats(arch, tiny_shape).parameters


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_equivalence_under_each_attention_implementation(tiny_model, batch, implementation):
    """Per-layer head counts work with both attention kernels transformers may pick."""
    tiny_model.set_attn_implementation(implementation)
    arch = Architecture((LayerConfig(heads=1, ffn=0.5), LayerConfig(heads=3, ffn=1.0)))
    importance = magnitude_importance(tiny_model)
    heads, neurons = _masks(arch, importance, model_shape(tiny_model))
    with masked(tiny_model, heads=heads, neurons=neurons):
        expected = _logits(tiny_model, batch)
    compressed = compress(tiny_model, arch, importance).eval()
    assert compressed.config._attn_implementation == implementation
    torch.testing.assert_close(_logits(compressed, batch), expected, atol=1e-5, rtol=0)


def test_compress_leaves_input_untouched(tiny_model, batch):
    before = _logits(tiny_model, batch)
    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    compressed = compress(
        tiny_model, Architecture((LayerConfig(heads=1, ffn=0.2), LayerConfig.dropped()))
    )
    assert compressed is not tiny_model
    assert len(compressed.bert.encoder.layer) == 1
    assert all(torch.equal(v, tiny_model.state_dict()[k]) for k, v in state.items())
    torch.testing.assert_close(_logits(tiny_model, batch), before, atol=0, rtol=0)


def test_dropped_layer_is_skipped(tiny_model, batch):
    """Dropping layer 1 of 2 gives exactly the model that only runs layer 0."""
    arch = Architecture((LayerConfig(heads=4, ffn=1.0), LayerConfig.dropped()))
    compressed = compress(tiny_model, arch).eval()
    truncated = compress(tiny_model, Architecture.dense(2, 4)).eval()
    truncated.bert.encoder.layer = truncated.bert.encoder.layer[:1]
    torch.testing.assert_close(
        _logits(compressed, batch), _logits(truncated, batch), atol=0, rtol=0
    )
    assert compressed.autoprune_architecture == arch


TINY_SPACE = {
    "name": "tiny",
    "per_layer": {
        "keep": [True, False],
        "heads": [0, 1, 2, 3, 4],
        "ffn": [0.0, 0.1, 0.3, 0.5, 0.7, 1.0],
        "sparsity": [0.0, 0.5, 0.9],
        "pattern": ["dense", "unstructured", "2:4", "1:4"],
        "bits": [32, 8, 4],
    },
}


@pytest.mark.parametrize("quantize", ["none", "fake", "real"])
def test_parameter_counts_match_space_stats(tiny_bert_config, tiny_shape, quantize):
    space = SearchSpace.from_dict(TINY_SPACE, tiny_shape)
    rng = np.random.default_rng(0)
    for _ in range(8):
        arch = space.sample(rng)
        model = build_random(tiny_bert_config, arch, quantize=quantize)
        assert count_parameters(model) == space.stats(arch).parameters, arch.summary()


def test_forward_keeps_hf_signature(tiny_model, batch):
    compressed = compress(tiny_model, Architecture((LayerConfig(heads=2, ffn=0.5),) * 2)).train()
    out = compressed(**batch)
    assert out.logits.shape == (3, 2)
    out.loss.backward()
    assert compressed.classifier.weight.grad is not None


@pytest.mark.parametrize(
    "arch",
    [
        Architecture((LayerConfig(heads=5),) * 2),  # more heads than the model has
        Architecture((LayerConfig(heads=2),) * 3),  # wrong layer count
    ],
)
def test_bad_architecture_is_space_error(tiny_model, arch):
    with pytest.raises(SpaceError):
        compress(tiny_model, arch)


def test_importance_of_another_model_is_refused(tiny_model, tiny_bert_config):
    other_config = copy.deepcopy(tiny_bert_config)
    other_config.intermediate_size = 48
    other = magnitude_importance(BertForSequenceClassification(other_config))
    with pytest.raises(SpaceError, match="importance"):
        compress(tiny_model, Architecture((LayerConfig(heads=2),) * 2), other)


def test_compressing_twice_is_refused(tiny_model):
    once = compress(tiny_model, Architecture((LayerConfig(heads=2),) * 2))
    with pytest.raises(SpaceError, match="already compressed"):
        compress(once, Architecture((LayerConfig(heads=1),) * 2))


def test_minilm_removal_equals_masking(minilm_dir):
    """The same equivalence on the real packaged MiniLM (uneven per-layer shapes)."""
    from autoprune.models import load_base, load_tokenizer, model_shape

    torch.manual_seed(0)
    model = load_base(str(minilm_dir), num_labels=2).eval()
    shape = model_shape(model)
    tokenizer = load_tokenizer(str(minilm_dir))
    batch = dict(
        tokenizer(
            ["a gripping, funny film", "dull and far too long for what it is"],
            padding=True,
            return_tensors="pt",
        )
    )
    batch["labels"] = torch.tensor([1, 0])
    importance = compute_importance(model, [batch])
    arch = Architecture(
        (
            LayerConfig(heads=6, ffn=0.5),
            LayerConfig(heads=0, ffn=0.3),
            LayerConfig(heads=12, ffn=0.0),
            LayerConfig(heads=2, ffn=1.0),
            LayerConfig(heads=9, ffn=0.1),
            LayerConfig(heads=4, ffn=0.7),
        )
    )
    heads, neurons = _masks(arch, importance, shape)
    with masked(model, heads=heads, neurons=neurons):
        expected = _logits(model, batch)
    compressed = compress(model, arch, importance).eval()
    torch.testing.assert_close(_logits(compressed, batch), expected, atol=1e-5, rtol=0)
    assert count_parameters(compressed) == architecture_stats(arch, shape).parameters
