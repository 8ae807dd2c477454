"""Physical removal of heads, FFN neurons and layers from a BERT model (in place).

Heads: the kept heads' rows of query/key/value and columns of the attention output projection
are copied into smaller ``nn.Linear`` s, and the self-attention module's head count is updated.
transformers 5's ``BertSelfAttention`` reshapes with ``-1`` heads, so every layer can keep a
different number. Neurons: rows of the intermediate dense and columns of the output dense.
Zero heads (neurons) replace the sub-block by its residual form, see :mod:`.modules`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from autoprune.compress.modules import (
    NoIntermediate,
    ResidualAttention,
    ResidualOutput,
    encoder_layers,
)


def _slice_linear(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    """A new Linear keeping ``index`` along ``dim`` of the weight (0 = outputs, 1 = inputs)."""
    weight = linear.weight.detach().index_select(dim, index).clone()
    has_bias = linear.bias is not None
    out_features, in_features = weight.shape
    sliced = nn.Linear(
        in_features, out_features, bias=has_bias, device=weight.device, dtype=weight.dtype
    )
    with torch.no_grad():
        sliced.weight.copy_(weight)
        if has_bias:
            bias = linear.bias.detach()
            sliced.bias.copy_(bias.index_select(0, index) if dim == 0 else bias)
    sliced.train(linear.training)
    return sliced


def prune_heads(layer: nn.Module, keep: Sequence[int]) -> None:
    """Keep only the heads ``keep`` (indices into the layer's current heads) of one layer."""
    attention = layer.attention
    self_attention = attention.self
    if not keep:
        output = attention.output
        residual = ResidualAttention(output.LayerNorm.normalized_shape[0], output.LayerNorm.eps)
        with torch.no_grad():
            residual.bias.copy_(output.dense.bias)
            residual.LayerNorm.load_state_dict(output.LayerNorm.state_dict())
        residual.to(output.dense.weight.device).train(attention.training)
        layer.attention = residual
        return
    head_dim = self_attention.attention_head_size
    device = self_attention.query.weight.device
    heads = torch.tensor(sorted(keep), dtype=torch.long, device=device)
    index = (heads[:, None] * head_dim + torch.arange(head_dim, device=device)).reshape(-1)
    self_attention.query = _slice_linear(self_attention.query, index, 0)
    self_attention.key = _slice_linear(self_attention.key, index, 0)
    self_attention.value = _slice_linear(self_attention.value, index, 0)
    attention.output.dense = _slice_linear(attention.output.dense, index, 1)
    self_attention.num_attention_heads = len(keep)
    self_attention.all_head_size = len(keep) * head_dim


def prune_neurons(layer: nn.Module, keep: Sequence[int]) -> None:
    """Keep only the FFN neurons ``keep`` of one layer."""
    output = layer.output
    if not keep:
        residual = ResidualOutput(output.LayerNorm.normalized_shape[0], output.LayerNorm.eps)
        with torch.no_grad():
            residual.bias.copy_(output.dense.bias)
            residual.LayerNorm.load_state_dict(output.LayerNorm.state_dict())
        residual.to(output.dense.weight.device).train(output.training)
        layer.intermediate = NoIntermediate()
        layer.output = residual
        return
    device = output.dense.weight.device
    index = torch.tensor(sorted(keep), dtype=torch.long, device=device)
    layer.intermediate.dense = _slice_linear(layer.intermediate.dense, index, 0)
    output.dense = _slice_linear(output.dense, index, 1)


def drop_layers(model: nn.Module, keep: Sequence[int]) -> None:
    """Keep only the encoder layers ``keep`` (in order); the rest leave the module tree."""
    layers = encoder_layers(model)
    kept = nn.ModuleList([layers[i] for i in keep])
    bert = getattr(model, "bert", model)
    bert.encoder.layer = kept


def top_indices(scores: torch.Tensor, count: int) -> list[int]:
    """The ``count`` highest-scoring indices, ascending (ties broken by the lower index)."""
    if count <= 0:
        return []
    order = torch.argsort(scores.detach().float().cpu(), descending=True, stable=True)
    return sorted(order[:count].tolist())
