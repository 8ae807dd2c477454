"""Sparsity masks: exact counts, valid N:M, persistence through training, baking."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils import parametrize
from transformers import BertForSequenceClassification

from autoprune.compress import compress, finalize
from autoprune.compress.modules import encoder_layers, layer_linears
from autoprune.compress.sparsity import nm_mask, unstructured_mask
from autoprune.space import Architecture, LayerConfig


def _is_nm(weight: torch.Tensor, n: int, m: int) -> bool:
    """At most N nonzeros in every group of M consecutive inputs of every row."""
    rows, cols = weight.shape
    padded = torch.nn.functional.pad(weight, (0, -cols % m))
    return bool(((padded != 0).view(rows, -1, m).sum(dim=2) <= n).all())


@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (4, 8)])
@pytest.mark.parametrize("cols", [16, 18, 3])  # whole groups, a partial trailing group, < M
def test_nm_mask_is_valid_and_keeps_largest(n, m, cols):
    weight = torch.randn(5, cols, generator=torch.Generator().manual_seed(cols))
    mask = nm_mask(weight, n, m)
    assert _is_nm(weight * mask, n, m)
    for row in range(5):
        for start in range(0, cols, m):
            group = weight[row, start : start + m].abs()
            kept = mask[row, start : start + m]
            expected = min(n, group.numel())
            assert int(kept.sum()) == expected
            if kept.any() and (~kept).any():
                assert group[kept].min() >= group[~kept].max()


@pytest.mark.parametrize("sparsity", [0.5, 0.9])
def test_unstructured_mask_drops_smallest_exact_count(sparsity):
    weight = torch.randn(7, 11, generator=torch.Generator().manual_seed(0))
    mask = unstructured_mask(weight, sparsity)
    assert int((~mask).sum()) == round(sparsity * weight.numel())
    assert weight.abs()[mask].min() >= weight.abs()[~mask].max()


@pytest.fixture()
def sparse_model(tiny_bert_config):
    torch.manual_seed(0)
    base = BertForSequenceClassification(tiny_bert_config)
    arch = Architecture(
        (
            LayerConfig(heads=3, ffn=0.5, pattern="2:4"),
            LayerConfig(heads=2, ffn=0.75, pattern="unstructured", sparsity=0.7),
        )
    )
    return compress(base, arch)


def _linears(model):
    return [linear for layer in encoder_layers(model) for linear in layer_linears(layer).values()]


def test_every_kept_linear_is_masked(sparse_model):
    linears = _linears(sparse_model)
    assert len(linears) == 12 and all(parametrize.is_parametrized(lin, "weight") for lin in linears)
    first, second = encoder_layers(sparse_model)
    assert all(_is_nm(lin.weight, 2, 4) for lin in layer_linears(first).values())
    for linear in layer_linears(second).values():
        assert int((linear.weight == 0).sum()) == round(0.7 * linear.weight.numel())


def test_masks_survive_optimizer_steps(sparse_model):
    zeros = [lin.weight.detach() == 0 for lin in _linears(sparse_model)]
    initial = [lin.weight.detach().clone() for lin in _linears(sparse_model)]
    optimizer = torch.optim.AdamW(sparse_model.parameters(), lr=1e-2, weight_decay=0.1)
    generator = torch.Generator().manual_seed(2)
    sparse_model.train()
    for _ in range(3):
        batch = {
            "input_ids": torch.randint(1, 120, (4, 9), generator=generator),
            "labels": torch.randint(0, 2, (4,), generator=generator),
        }
        optimizer.zero_grad()
        sparse_model(**batch).loss.backward()
        optimizer.step()
    for linear, zero in zip(_linears(sparse_model), zeros, strict=True):
        assert torch.all(linear.weight.detach()[zero] == 0)
        assert linear.parametrizations.weight.original.grad[zero].abs().max() == 0
    # ... while the kept weights did train
    changed = [
        not torch.equal(lin.weight.detach()[~zero], start[~zero])
        for lin, zero, start in zip(_linears(sparse_model), zeros, initial, strict=True)
    ]
    assert all(changed)


def test_finalize_bakes_masks(sparse_model):
    zeros = [lin.weight.detach() == 0 for lin in _linears(sparse_model)]
    batch = {"input_ids": torch.randint(1, 120, (2, 7), generator=torch.Generator().manual_seed(3))}
    sparse_model.eval()
    with torch.no_grad():
        before = sparse_model(**batch).logits
    finalize(sparse_model)
    for linear, zero in zip(_linears(sparse_model), zeros, strict=True):
        assert not parametrize.is_parametrized(linear, "weight")
        assert torch.equal(linear.weight.detach() == 0, zero)
    with torch.no_grad():
        torch.testing.assert_close(sparse_model(**batch).logits, before, atol=0, rtol=0)
