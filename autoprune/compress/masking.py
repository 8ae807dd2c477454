"""Soft masks over heads and FFN neurons, applied with forward pre-hooks.

transformers 5 dropped ``head_mask``; we multiply the *input* of each sub-block's output
projection instead: for attention that input is the per-head context ``[.., heads * head_dim]``,
for the FFN the activated intermediate ``[.., neurons]``. A zero there is exactly what removing
the head or neuron computes (the equivalence the tests check), and a mask that requires grad
gives Michel et al.'s head importance and the first-order Taylor neuron importance
(``d loss / d mask_j = sum_tokens a_j * d loss / d a_j``) from one backward pass.
Works with every attention implementation (eager, sdpa) because it never touches attention.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from autoprune.compress.modules import encoder_layers, has_attention, has_ffn

PreHook = Callable[[nn.Module, tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]]


def _scale_input(mask: torch.Tensor, repeat: int) -> PreHook:
    """A pre-hook multiplying the first input by ``mask``, each entry repeated ``repeat`` times."""

    def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        scale = mask.repeat_interleave(repeat) if repeat > 1 else mask
        return (args[0] * scale.to(args[0].dtype), *args[1:])

    return hook


@contextmanager
def masked(
    model: nn.Module,
    heads: torch.Tensor | None = None,
    neurons: Sequence[torch.Tensor] | None = None,
) -> Iterator[None]:
    """Within the block, multiply each layer's head contexts by ``heads[i]`` ([layers, heads])
    and its FFN activations by ``neurons[i]``; the hooks are removed on exit.

    Masks are used as given (not copied), so masks with ``requires_grad`` receive gradients.
    """
    layers = encoder_layers(model)
    handles = []
    try:
        for index, layer in enumerate(layers):
            if heads is not None and has_attention(layer):
                head_dim = layer.attention.self.attention_head_size
                dense = layer.attention.output.dense
                handles.append(
                    dense.register_forward_pre_hook(_scale_input(heads[index], head_dim))
                )
            if neurons is not None and has_ffn(layer):
                dense = layer.output.dense
                handles.append(dense.register_forward_pre_hook(_scale_input(neurons[index], 1)))
        yield
    finally:
        for handle in handles:
            handle.remove()
