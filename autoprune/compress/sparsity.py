"""Weight sparsity as masks that stay applied while a model is fine-tuned.

A mask is a ``torch.nn.utils.parametrize`` parametrization: the module's ``weight`` becomes
``original * mask`` on every access, so optimizer steps update ``original`` but the effective
weight keeps its zeros (and masked weights get zero gradient). :func:`bake` makes the zeros
permanent and removes the parametrization before deployment or real quantization.

* unstructured: the ``round(sparsity * numel)`` smallest-magnitude weights of each matrix;
* N:M: in every group of M consecutive *input* weights of an output row, the N largest are
  kept (the layout sparse tensor cores expect). A trailing partial group (input width not a
  multiple of M, e.g. 154 FFN neurons) keeps at most N weights, so it is N:M-valid too.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from autoprune.errors import SpaceError
from autoprune.space import parse_nm


class SparsityMask(nn.Module):
    """Parametrization ``w -> w * mask``; the mask is a (saved) buffer."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask.to(weight.dtype)


def unstructured_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep all but the ``round(sparsity * numel)`` smallest |w| (an exact count)."""
    flat = weight.detach().abs().reshape(-1)
    drop = int(round(sparsity * flat.numel()))
    mask = torch.ones_like(flat, dtype=torch.bool)
    if drop > 0:
        # topk, not a full sort: ~10x faster on FFN matrices (compress runs per candidate)
        mask[torch.topk(flat, drop, largest=False, sorted=False).indices] = False
    return mask.view_as(weight)


def nm_mask(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the N largest |w| in every group of M consecutive input weights of each row."""
    rows, cols = weight.shape
    padded = -(-cols // m) * m
    magnitude = torch.full((rows, padded), -1.0, dtype=torch.float32, device=weight.device)
    magnitude[:, :cols] = weight.detach().abs().float()  # padding (-1) is never among the N largest
    groups = magnitude.view(rows, padded // m, m)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(2, groups.topk(n, dim=2).indices, True)
    return keep.view(rows, padded)[:, :cols] & (magnitude[:, :cols] >= 0)


def sparsity_mask(weight: torch.Tensor, pattern: str, sparsity: float) -> torch.Tensor | None:
    """The mask of one layer config's pattern, or ``None`` for ``dense``."""
    if pattern == "dense":
        return None
    if pattern == "unstructured":
        return unstructured_mask(weight, sparsity) if sparsity > 0 else None
    nm = parse_nm(pattern)
    if nm is None:
        raise SpaceError(f"pattern {pattern!r}: expected dense, unstructured or N:M")
    return nm_mask(weight, *nm)


def apply_mask(linear: nn.Module, mask: torch.Tensor) -> None:
    parametrize.register_parametrization(linear, "weight", SparsityMask(mask))


def masked_weight(linear: nn.Module) -> torch.Tensor:
    """The weight with sparsity masks applied but *without* any other parametrization (such as
    fake quantization), i.e. the fp32 weight real quantization should start from."""
    if not parametrize.is_parametrized(linear, "weight"):
        return linear.weight.detach()
    weight = linear.parametrizations.weight.original.detach()
    for step in linear.parametrizations.weight:
        if isinstance(step, SparsityMask):
            weight = step(weight)
    return weight


def bake(linear: nn.Module) -> None:
    """Make masks permanent and drop every weight parametrization (fake quant included: the
    plain masked fp32 weight is what real quantization starts from)."""
    if not parametrize.is_parametrized(linear, "weight"):
        return
    weight = masked_weight(linear).clone()
    parametrize.remove_parametrizations(linear, "weight", leave_parametrized=False)
    with torch.no_grad():
        linear.weight.copy_(weight)
