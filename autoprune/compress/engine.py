"""Turning an :class:`~autoprune.space.Architecture` into a real, smaller model.

:func:`compress` copies a dense base model and, per layer, removes the least important heads
and FFN neurons (or the whole layer), then adds sparsity masks and quantization. The result is
still a ``BertForSequenceClassification`` (same forward signature, ``.logits``); its
``config`` stays the *base* config, and the architecture is attached as
``model.autoprune_architecture`` (with ``model.autoprune_quantize``, the quantization mode),
which is everything :func:`autoprune.compress.save` needs to rebuild it.
"""

from __future__ import annotations

import copy
from typing import Literal

from torch import nn

from autoprune.compress import quantize as q
from autoprune.compress.importance import Importance, magnitude_importance
from autoprune.compress.modules import encoder_layers, layer_linears, set_submodule
from autoprune.compress.sparsity import apply_mask, bake, sparsity_mask
from autoprune.compress.structure import drop_layers, prune_heads, prune_neurons, top_indices
from autoprune.errors import SpaceError
from autoprune.models import model_shape
from autoprune.space import Architecture, LayerConfig, ModelShape

QuantizeMode = Literal["none", "fake", "real"]
QUANTIZE_MODES: tuple[str, ...] = ("none", "fake", "real")


def _check(arch: Architecture, shape: ModelShape, importance: Importance | None) -> None:
    if len(arch) != shape.num_layers:
        raise SpaceError(f"architecture has {len(arch)} layers, the base model {shape.num_layers}")
    for index, layer in enumerate(arch):
        if layer.keep and not 0 <= layer.heads <= shape.num_heads:
            raise SpaceError(
                f"layer {index}: heads={layer.heads}, the base model has {shape.num_heads}"
            )
        if layer.keep and not 0.0 <= layer.ffn <= 1.0:
            raise SpaceError(f"layer {index}: ffn={layer.ffn} is not a fraction in [0, 1]")
        if layer.keep and layer.bits not in (32, 8, 4):
            raise SpaceError(f"layer {index}: bits={layer.bits} not one of 32, 8, 4")
    if importance is not None:
        heads = tuple(importance.heads.shape)
        neurons = [int(scores.numel()) for scores in importance.neurons]
        if (
            heads != (shape.num_layers, shape.num_heads)
            or neurons != [shape.intermediate] * shape.num_layers
        ):
            raise SpaceError(
                f"importance scores are for {heads} heads and {len(neurons)} FFN layers, "
                f"not this base model ({shape.num_layers} layers x {shape.num_heads} heads, "
                f"{shape.intermediate} neurons)"
            )


def _sparsify(layer: nn.Module, config: LayerConfig) -> None:
    for linear in layer_linears(layer).values():
        mask = sparsity_mask(linear.weight, config.pattern, config.sparsity)
        if mask is not None:
            apply_mask(linear, mask)


def _quantize_real(layer: nn.Module, bits: int) -> None:
    """Bake masks and, for ``bits < 32``, swap each linear for its real quantized module."""
    for name, linear in layer_linears(layer).items():
        bake(linear)
        if bits < 32:
            set_submodule(layer, name, q.real_quantized(linear, bits))


def compress(
    model: nn.Module,
    arch: Architecture,
    importance: Importance | None = None,
    *,
    quantize: QuantizeMode = "none",
) -> nn.Module:
    """A new model shaped by ``arch``; ``model`` is left untouched.

    ``importance`` decides which heads/neurons stay (magnitude scores when ``None``).
    ``quantize``: ``"none"`` keeps fp32 weights whatever ``bits`` says (structure and sparsity
    only); ``"fake"`` adds straight-through fake quantization for layers with ``bits < 32``
    (for fine-tuning; :func:`finalize` then makes it real); ``"real"`` bakes sparsity masks and
    converts those layers to int8 (fast kernels) / packed int4 now.
    """
    if quantize not in QUANTIZE_MODES:
        raise SpaceError(f"quantize={quantize!r}: expected one of {QUANTIZE_MODES}")
    if getattr(model, "autoprune_architecture", None) is not None:
        raise SpaceError("compress() takes the dense base model; this one is already compressed")
    shape = model_shape(model)
    _check(arch, shape, importance)
    scores = importance if importance is not None else magnitude_importance(model)
    result = copy.deepcopy(model)
    layers = encoder_layers(result)
    for index, config in enumerate(arch):
        if not config.keep:
            continue
        layer = layers[index]
        prune_heads(layer, top_indices(scores.heads[index], config.heads))
        prune_neurons(layer, top_indices(scores.neurons[index], shape.ffn_neurons(config.ffn)))
        _sparsify(layer, config)
        if quantize == "fake" and config.bits < 32:
            for linear in layer_linears(layer).values():
                q.add_fake_quant(linear, config.bits)
        elif quantize == "real":
            _quantize_real(layer, config.bits)
    drop_layers(result, arch.kept_layers)
    result.autoprune_architecture = arch
    result.autoprune_quantize = quantize
    return result


def finalize(model: nn.Module) -> nn.Module:
    """Make a compressed model deployable, in place (and return it): bake sparsity masks into
    the weights, drop fake quantization, and convert every layer with ``bits < 32`` to real
    int8 / packed int4. Idempotent; a no-op on a model compressed with ``quantize="real"``."""
    arch = _architecture_of(model)
    if getattr(model, "autoprune_quantize", "none") == "real":
        return model
    for layer, config in zip(
        encoder_layers(model), (arch[i] for i in arch.kept_layers), strict=True
    ):
        _quantize_real(layer, config.bits)
    model.autoprune_quantize = "real"
    return model


def build_random(config: object, arch: Architecture, quantize: QuantizeMode = "real") -> nn.Module:
    """A randomly initialised model of any architecture, fast, without pretrained weights (for
    latency profiling, and for :func:`load` to rebuild a structure before loading weights)."""
    from transformers import BertForSequenceClassification

    return compress(BertForSequenceClassification(config), arch, quantize=quantize)


def count_parameters(model: nn.Module) -> int:
    """Every parameter the model stands for, quantized weights included (``.parameters()``
    misses them); equals ``architecture_stats(arch, shape).parameters`` for compressed models."""
    total = sum(p.numel() for p in model.parameters())
    return total + sum(q.logical_parameters(module) for module in model.modules())


def _architecture_of(model: nn.Module) -> Architecture:
    arch = getattr(model, "autoprune_architecture", None)
    if arch is None:
        raise SpaceError(
            "not a compressed model (no autoprune_architecture): call compress() first"
        )
    return arch
