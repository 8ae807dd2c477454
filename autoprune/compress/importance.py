"""Which heads and FFN neurons matter: scores that decide what :func:`compress` removes.

* :func:`compute_importance` — from task batches: head importance is the accumulated absolute
  gradient of the loss with respect to a head mask (Michel et al., 2019, "Are Sixteen Heads
  Really Better than One?"), normalised per layer by its L2 norm as in the paper; neuron
  importance is first-order Taylor, the accumulated ``|sum_tokens a * dL/da|`` per neuron
  (Molchanov et al., 2017), which is the same gradient taken with respect to a neuron mask.
* :func:`magnitude_importance` — no data: L1 norms of each head's / neuron's weights.

Scores are indexed by the *base* model's layers, heads and neurons; higher is more important.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import islice

import torch
from torch import nn

from autoprune.compress.masking import masked
from autoprune.compress.modules import encoder_layers
from autoprune.errors import AutopruneError
from autoprune.models import model_shape

# Keys of a tokenized batch that BertForSequenceClassification.forward accepts.
_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "labels")


class ImportanceError(AutopruneError):
    """Importance cannot be computed (a compressed model, batches without labels, no batches)."""


@dataclass(frozen=True)
class Importance:
    """Head and neuron scores of a base model; higher = more important."""

    heads: torch.Tensor  # [num_layers, num_heads]
    neurons: tuple[torch.Tensor, ...]  # one [intermediate] tensor per layer

    def to_state_dict(self) -> dict[str, torch.Tensor]:
        """Flat tensors, ready for ``safetensors.torch.save_file``."""
        state = {"heads": self.heads.detach().cpu().contiguous()}
        for index, scores in enumerate(self.neurons):
            state[f"neurons.{index}"] = scores.detach().cpu().contiguous()
        return state

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor]) -> Importance:
        if "heads" not in state:
            raise ImportanceError("importance state: no 'heads' tensor")
        heads = state["heads"]
        try:
            neurons = tuple(state[f"neurons.{index}"] for index in range(heads.shape[0]))
        except KeyError as exc:
            raise ImportanceError(f"importance state: missing {exc.args[0]!r}") from exc
        return cls(heads=heads, neurons=neurons)


def _require_dense(model: nn.Module) -> None:
    if getattr(model, "autoprune_architecture", None) is not None:
        raise ImportanceError(
            "importance is computed on the dense base model, not a compressed one"
        )


def magnitude_importance(model: nn.Module) -> Importance:
    """Scores from weights alone: the L1 norm of every weight that belongs to a head (its
    query/key/value rows and output-projection columns) or a neuron (its input row and output
    column). The fallback when there is no task data."""
    _require_dense(model)
    shape = model_shape(model)
    heads = torch.zeros(shape.num_layers, shape.num_heads)
    neurons = []
    with torch.no_grad():
        for index, layer in enumerate(encoder_layers(model)):
            attention = layer.attention
            per_row = sum(
                linear.weight.abs().sum(dim=1)
                for linear in (attention.self.query, attention.self.key, attention.self.value)
            )  # [hidden] rows, grouped by head below
            per_col = attention.output.dense.weight.abs().sum(dim=0)
            heads[index] = (per_row + per_col).view(shape.num_heads, shape.head_dim).sum(dim=1)
            neurons.append(
                (
                    layer.intermediate.dense.weight.abs().sum(dim=1)
                    + layer.output.dense.weight.abs().sum(dim=0)
                )
                .float()
                .cpu()
            )
    return Importance(heads=heads, neurons=tuple(neurons))


def compute_importance(
    model: nn.Module,
    batches: Iterable[Mapping[str, torch.Tensor]],
    max_batches: int | None = None,
) -> Importance:
    """Gradient-based scores on task batches (tokenized dicts that include ``labels``).

    The model is run in eval mode (no dropout, so the scores are deterministic) and left with
    its parameters' ``.grad`` untouched: gradients are taken with respect to the masks only.
    """
    _require_dense(model)
    shape = model_shape(model)
    first = next(model.parameters())
    like = {"device": first.device, "dtype": first.dtype, "requires_grad": True}
    head_mask = torch.ones(shape.num_layers, shape.num_heads, **like)
    neuron_masks = [torch.ones(shape.intermediate, **like) for _ in range(shape.num_layers)]
    head_scores = torch.zeros(shape.num_layers, shape.num_heads)
    neuron_scores = [torch.zeros(shape.intermediate) for _ in range(shape.num_layers)]
    was_training = model.training
    model.eval()
    seen = 0
    try:
        with masked(model, heads=head_mask, neurons=neuron_masks):
            for batch in islice(batches, max_batches):
                if "labels" not in batch:
                    raise ImportanceError("importance batches need 'labels'")
                inputs = {k: v.to(first.device) for k, v in batch.items() if k in _MODEL_INPUTS}
                loss = model(**inputs).loss
                grads = torch.autograd.grad(loss, [head_mask, *neuron_masks])
                head_scores += grads[0].detach().abs().float().cpu()
                for index, grad in enumerate(grads[1:]):
                    neuron_scores[index] += grad.detach().abs().float().cpu()
                seen += 1
    finally:
        model.train(was_training)
    if seen == 0:
        raise ImportanceError("importance: no batches")
    # Michel et al. normalise each layer's head scores so layers are comparable.
    head_scores = head_scores / head_scores.norm(dim=1, keepdim=True).clamp_min(1e-20)
    return Importance(heads=head_scores, neurons=tuple(neuron_scores))
