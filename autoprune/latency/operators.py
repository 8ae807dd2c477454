"""The operators of the per-operator lookup tables, cut out of a built model.

A BERT forward pass is embeddings, then per kept layer an attention sub-block and an FFN
sub-block, then the pooler and classifier. Each operator is wrapped as a small module with a
tensor-only signature so that every backend can run (or export) it the same way. The
sub-blocks come from a model the compression engine built, so they are exactly the kernels
(pruned shapes, int8/int4 weights) the end-to-end model runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from autoprune.space import Architecture, LayerConfig, ModelShape

OperatorKind = Literal["attention", "ffn", "embeddings", "classifier"]


@dataclass(frozen=True, order=True)
class OperatorKey:
    """One table entry: ``size`` is heads kept (attention) or neurons kept (ffn), else 0."""

    kind: OperatorKind
    size: int = 0
    bits: int = 32

    @property
    def label(self) -> str:
        if self.kind in ("embeddings", "classifier"):
            return self.kind
        return f"{self.kind}/{self.size}/b{self.bits}"


class AttentionBlock(nn.Module):
    """Self-attention with its output projection, residual and LayerNorm."""

    def __init__(self, attention: nn.Module) -> None:
        super().__init__()
        self.attention = attention

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        out = self.attention(hidden)
        return out[0] if isinstance(out, tuple) else out


class FFNBlock(nn.Module):
    """Intermediate dense + activation, output dense, residual and LayerNorm."""

    def __init__(self, intermediate: nn.Module, output: nn.Module) -> None:
        super().__init__()
        self.intermediate = intermediate
        self.output = output

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.output(self.intermediate(hidden), hidden)


class EmbeddingsBlock(nn.Module):
    def __init__(self, embeddings: nn.Module) -> None:
        super().__init__()
        self.embeddings = embeddings

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))


class ClassifierBlock(nn.Module):
    """Pooler (when the model has one) and the classification head."""

    def __init__(self, pooler: nn.Module | None, classifier: nn.Module) -> None:
        super().__init__()
        self.pooler = pooler
        self.classifier = classifier

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        pooled = self.pooler(hidden) if self.pooler is not None else hidden[:, 0]
        return self.classifier(pooled)


def layer_keys(layer: LayerConfig, shape: ModelShape) -> tuple[OperatorKey, OperatorKey]:
    """The attention and FFN table entries one kept layer uses."""
    return (OperatorKey("attention", layer.heads, layer.bits),
            OperatorKey("ffn", shape.ffn_neurons(layer.ffn), layer.bits))


def extract_operators(model: nn.Module, arch: Architecture,
                      shape: ModelShape) -> dict[OperatorKey, tuple[nn.Module, str]]:
    """Every distinct operator of a built model -> (block module, name of its input).

    The input name is ``"hidden"`` (a ``[batch, seq, hidden]`` float tensor) or
    ``"input_ids"``. Layers are matched to modules in order of the *kept* layers, because
    the compression engine removes dropped layers physically.
    """
    bert = model.bert
    found: dict[OperatorKey, tuple[nn.Module, str]] = {
        OperatorKey("embeddings"): (EmbeddingsBlock(bert.embeddings), "input_ids"),
        OperatorKey("classifier"): (ClassifierBlock(getattr(bert, "pooler", None), model.classifier), "hidden"),
    }
    modules = list(bert.encoder.layer)
    for module, index in zip(modules, arch.kept_layers, strict=True):
        attention_key, ffn_key = layer_keys(arch[index], shape)
        found.setdefault(attention_key, (AttentionBlock(module.attention), "hidden"))
        found.setdefault(ffn_key, (FFNBlock(module.intermediate, module.output), "hidden"))
    return found


def operator_plan(shape: ModelShape, heads: tuple[int, ...], ffn_fractions: tuple[float, ...],
                  bits: tuple[int, ...]) -> list[Architecture]:
    """A few architectures whose layers together hold every table entry to measure.

    Each architecture keeps every layer; layer ``i`` carries the ``i``-th pending
    (heads, FFN fraction) pair at one bit-width, so a 6-layer model measures six attention
    and six FFN entries from one build.
    """
    plans = []
    for b in bits:
        count = max(len(heads), len(ffn_fractions))
        pairs = [(heads[i % len(heads)], ffn_fractions[i % len(ffn_fractions)]) for i in range(count)]
        for start in range(0, count, shape.num_layers):
            chunk = pairs[start:start + shape.num_layers]
            chunk += [chunk[-1]] * (shape.num_layers - len(chunk))
            plans.append(Architecture(tuple(LayerConfig(heads=h, ffn=f, bits=b) for h, f in chunk)))
    return plans
