"""Where things live in a BERT layer, and the small modules that replace removed sub-blocks.

Hugging Face's ``BertLayer`` computes ``LayerNorm(x + dropout(dense(attention(x))))`` for the
attention sub-block and ``LayerNorm(a + dropout(dense(act(dense(a)))))`` for the FFN. Masking
*every* head (or neuron) zeroes the input of the output projection, which leaves
``LayerNorm(x + bias)``: the replacements below compute exactly that, so removing a whole
sub-block and masking all of it give the same outputs, and the bias and LayerNorm stay counted
as :func:`autoprune.space.layer_parameters` expects.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The ``ModuleList`` of encoder layers of a BERT sequence classifier (or bare BERT)."""
    bert = getattr(model, "bert", model)
    return bert.encoder.layer


def has_attention(layer: nn.Module) -> bool:
    return not isinstance(layer.attention, ResidualAttention)


def has_ffn(layer: nn.Module) -> bool:
    return not isinstance(layer.output, ResidualOutput)


def layer_linears(layer: nn.Module) -> dict[str, nn.Module]:
    """The weight matrices of one layer that sparsity and quantization act on, by local name."""
    linears: dict[str, nn.Module] = {}
    if has_attention(layer):
        attention = layer.attention
        linears["attention.self.query"] = attention.self.query
        linears["attention.self.key"] = attention.self.key
        linears["attention.self.value"] = attention.self.value
        linears["attention.output.dense"] = attention.output.dense
    if has_ffn(layer):
        linears["intermediate.dense"] = layer.intermediate.dense
        linears["output.dense"] = layer.output.dense
    return linears


def set_submodule(root: nn.Module, dotted: str, module: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


class ResidualAttention(nn.Module):
    """An attention sub-block with every head removed: ``LayerNorm(x + bias)``.

    Called like ``BertAttention`` (``(hidden_states, attention_mask, **kwargs)``) and returns the
    same ``(output, attention_weights)`` pair, with no weights.
    """

    def __init__(self, hidden: int, eps: float) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(hidden))
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(
        self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, None]:
        return self.LayerNorm(hidden_states + self.bias), None


class NoIntermediate(nn.Module):
    """The FFN's first half when every neuron is removed: nothing to compute, passes through."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return hidden_states


class ResidualOutput(nn.Module):
    """The FFN's second half when every neuron is removed: ``LayerNorm(a + bias)``."""

    def __init__(self, hidden: int, eps: float) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(hidden))
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(input_tensor + self.bias)
