"""Building the model an architecture describes, for timing only.

Latency does not depend on weight values (dense kernels do the same work for any numbers,
zeros included), so the factory builds the base model from its *config* with random weights:
no checkpoint has to be read, and every build is cheap and deterministic.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Literal

import torch
from torch import nn

from autoprune.errors import LatencyModelError
from autoprune.space import Architecture, ModelShape

Quantize = Literal["none", "real"]


def read_config(model: str, num_labels: int = 2) -> Any:
    """The Hugging Face config of ``model`` (a name or path, resolved by ``autoprune.models``)."""
    from transformers import AutoConfig

    from autoprune.models import resolve_model_path

    try:
        return AutoConfig.from_pretrained(resolve_model_path(model), num_labels=num_labels)
    except (OSError, ValueError) as exc:
        raise LatencyModelError(f"model {model!r}: cannot read its config ({exc})") from exc


def base_shape(model: str, num_labels: int = 2) -> ModelShape:
    """The shape of ``model`` from its config alone: no weights are built."""
    return ModelShape.from_config(read_config(model, num_labels), num_labels=num_labels)


class ModelFactory(ABC):
    """Turns an architecture into a runnable compressed model of one base model."""

    shape: ModelShape
    name: str

    @abstractmethod
    def build(self, arch: Architecture, quantize: Quantize) -> nn.Module:
        """A new compressed model in eval mode. ``quantize="real"`` gives real low-bit kernels
        for layers with ``bits < 32``; ``"none"`` keeps fp32 (for exporters that quantize)."""


class CompressFactory(ModelFactory):
    """The compression engine applied to a randomly initialised copy of the base model.

    ``model`` is a name or path (resolved by ``autoprune.models``) or a ``BertConfig``.
    """

    def __init__(self, model: str | Any, num_labels: int = 2, seed: int = 0) -> None:
        from transformers import BertForSequenceClassification

        if isinstance(model, str):
            self.name, config = model, read_config(model, num_labels)
        else:
            self.name, config = getattr(model, "name_or_path", "") or "config", model
        torch.manual_seed(seed)
        self._base = BertForSequenceClassification(config).eval()
        self.shape = ModelShape.from_config(config, num_labels=num_labels)
        self._importance: object | None = None

    def _scores(self) -> object:
        # Which heads/neurons stay does not change the latency; magnitude scores are computed
        # once instead of on every build.
        if self._importance is None:
            from autoprune.compress import magnitude_importance

            self._importance = magnitude_importance(self._base)
        return self._importance

    def build(self, arch: Architecture, quantize: Quantize) -> nn.Module:
        from autoprune.compress import compress

        if len(arch) != self.shape.num_layers:
            raise LatencyModelError(
                f"architecture has {len(arch)} layers, model {self.name!r} has {self.shape.num_layers}"
            )
        return compress(self._base, arch, self._scores(), quantize=quantize).eval()  # type: ignore[arg-type]
