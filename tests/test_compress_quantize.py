"""Quantization: the shared scheme, packed int4, fake quant (STE), real int8 kernels."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize
from transformers import BertForSequenceClassification

from autoprune.compress import build_random, compress, count_parameters, finalize
from autoprune.compress.modules import encoder_layers, layer_linears
from autoprune.compress.quantize import (
    INT4_GROUP,
    FakeQuant,
    Int4Linear,
    dequantize_weight,
    is_int8_linear,
    quantize_weight,
)
from autoprune.space import Architecture, LayerConfig


@pytest.mark.parametrize("bits", [8, 4])
@pytest.mark.parametrize("cols", [64, 40])  # 40: a partial int4 group
def test_quantization_error_is_within_half_a_step(bits, cols):
    weight = torch.randn(6, cols, generator=torch.Generator().manual_seed(bits))
    q, scales = quantize_weight(weight, bits)
    restored = dequantize_weight(q, scales, cols)
    group = cols if bits == 8 else INT4_GROUP
    step = scales.repeat_interleave(group, dim=1)[:, :cols]
    assert restored.shape == weight.shape
    assert torch.all((restored - weight).abs() <= step / 2 + 1e-7)
    assert int(q.abs().max()) <= (127 if bits == 8 else 7)


def test_int4_storage_is_packed_and_exact():
    linear = nn.Linear(40, 6)
    module = Int4Linear.from_linear(linear)
    assert module.packed.dtype == torch.uint8
    assert module.packed.shape == (
        6,
        2 * INT4_GROUP // 2,
    )  # 40 inputs -> 2 groups of 32, 2 per byte
    assert module.scales.shape == (6, 2)
    q, scales = quantize_weight(linear.weight, 4)
    torch.testing.assert_close(
        module.dequantized_weight(), dequantize_weight(q, scales, 40), atol=0, rtol=0
    )
    x = torch.randn(3, 40)
    torch.testing.assert_close(
        module(x), nn.functional.linear(x, dequantize_weight(q, scales, 40), linear.bias)
    )


def test_fake_quant_passes_gradients_straight_through():
    linear = nn.Linear(16, 4)
    parametrize.register_parametrization(linear, "weight", FakeQuant(4))
    x = torch.randn(5, 16)
    linear(x).sum().backward()
    expected = torch.ones(5, 4).t() @ x  # d(sum(W x))/dW, unchanged by the quantizer
    torch.testing.assert_close(linear.parametrizations.weight.original.grad, expected)


@pytest.fixture()
def base(tiny_bert_config):
    torch.manual_seed(0)
    return BertForSequenceClassification(tiny_bert_config).eval()


MIXED = Architecture(
    (
        LayerConfig(heads=3, ffn=0.5, bits=8, pattern="2:4"),
        LayerConfig(heads=2, ffn=0.75, bits=4),
    )
)
BATCH = {"input_ids": torch.randint(1, 120, (2, 11), generator=torch.Generator().manual_seed(5))}


def test_real_mode_uses_int8_kernels_and_packed_int4(base):
    model = compress(
        base,
        Architecture((LayerConfig(heads=4, bits=8), LayerConfig(heads=4, bits=32))),
        quantize="real",
    )
    first, second = encoder_layers(model)
    assert all(is_int8_linear(m) for m in layer_linears(first).values())
    assert all(type(m) is nn.Linear for m in layer_linears(second).values())
    model4 = compress(base, MIXED, quantize="real")
    assert all(isinstance(m, Int4Linear) for m in layer_linears(encoder_layers(model4)[1]).values())


def test_fake_then_finalize_matches_fake_forward(base):
    fake = compress(base, MIXED, quantize="fake").eval()
    with torch.no_grad():
        simulated = fake(**BATCH).logits
    real = finalize(fake)
    assert real.autoprune_quantize == "real"
    with torch.no_grad():
        deployed = real(**BATCH).logits
    # int4 is weight-only (same math); int8 also quantizes activations, a small extra error
    torch.testing.assert_close(deployed, simulated, atol=5e-3, rtol=5e-2)
    assert finalize(real) is real  # idempotent


def test_real_int8_close_to_fp32(base):
    arch = Architecture((LayerConfig(heads=4, bits=8),) * 2)
    with torch.no_grad():
        dense = compress(base, Architecture.dense(2, 4)).eval()(**BATCH).logits
        int8 = compress(base, arch, quantize="real").eval()(**BATCH).logits
    torch.testing.assert_close(int8, dense, atol=2e-2, rtol=0.1)


def test_none_mode_ignores_bits_until_finalize(base):
    model = compress(base, MIXED, quantize="none")
    assert not any(
        parametrize.is_parametrized(m, "weight")
        and any(isinstance(p, FakeQuant) for p in m.parametrizations.weight)
        for layer in encoder_layers(model)
        for m in layer_linears(layer).values()
    )
    count = count_parameters(model)
    finalize(model)
    assert is_int8_linear(encoder_layers(model)[0].attention.self.query)
    assert count_parameters(model) == count


def test_quantization_emits_no_deprecation_noise(tiny_bert_config):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_random(tiny_bert_config, MIXED, quantize="real")
    assert not [w for w in caught if "torch.ao.quantization" in str(w.message)]
