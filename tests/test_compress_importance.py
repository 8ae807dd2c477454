"""Importance scores: shapes, meaning, serialization, errors."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import BertForSequenceClassification

from autoprune.compress import (
    Importance,
    ImportanceError,
    compress,
    compute_importance,
    magnitude_importance,
    masked,
)
from autoprune.space import Architecture, LayerConfig


@pytest.fixture()
def model(tiny_bert_config):
    torch.manual_seed(0)
    return BertForSequenceClassification(tiny_bert_config)


def _batches(count=2):
    generator = torch.Generator().manual_seed(4)
    return [
        {
            "input_ids": torch.randint(1, 120, (4, 10), generator=generator),
            "labels": torch.randint(0, 2, (4,), generator=generator),
            "idx": torch.arange(4),
        }
        for _ in range(count)
    ]


def test_shapes_and_round_trip(model, tmp_path):
    for importance in (magnitude_importance(model), compute_importance(model, _batches())):
        assert importance.heads.shape == (2, 4)
        assert [n.shape for n in importance.neurons] == [(64,), (64,)]
        save_file(importance.to_state_dict(), str(tmp_path / "i.safetensors"))
        back = Importance.from_state_dict(load_file(str(tmp_path / "i.safetensors")))
        assert torch.equal(back.heads, importance.heads)
        assert all(torch.equal(a, b) for a, b in zip(back.neurons, importance.neurons, strict=True))


def test_gradient_scores_match_mask_sensitivity(model):
    """Michel et al.: |dL/d mask_h| at mask = 1, checked by finite differences."""
    model = model.double()  # float64 so finite differences resolve the small gradients
    batch = _batches(1)[0]
    inputs = {k: batch[k] for k in ("input_ids", "labels")}
    scores = compute_importance(model, [batch])
    model.eval()
    eps = 1e-4
    raw = torch.zeros(2, 4, dtype=torch.float64)
    for layer in range(2):
        for head in range(4):
            losses = []
            for sign in (1, -1):
                mask = torch.ones(2, 4, dtype=torch.float64)
                mask[layer, head] += sign * eps
                with masked(model, heads=mask), torch.no_grad():
                    losses.append(model(**inputs).loss)
            raw[layer, head] = ((losses[0] - losses[1]) / (2 * eps)).abs()
    expected = raw / raw.norm(dim=1, keepdim=True)
    torch.testing.assert_close(scores.heads, expected.float(), atol=1e-4, rtol=1e-3)


def test_leaves_parameters_and_mode_alone(model):
    model.train()
    compute_importance(model, _batches(), max_batches=1)
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_max_batches_limits_work(model):
    one = compute_importance(model, _batches(3), max_batches=1)
    assert torch.equal(one.heads, compute_importance(model, _batches(1)).heads)


def test_errors(model):
    with pytest.raises(ImportanceError, match="labels"):
        compute_importance(model, [{"input_ids": torch.ones(1, 3, dtype=torch.long)}])
    with pytest.raises(ImportanceError, match="no batches"):
        compute_importance(model, [])
    compressed = compress(model, Architecture((LayerConfig(heads=2),) * 2))
    with pytest.raises(ImportanceError, match="dense"):
        magnitude_importance(compressed)
    with pytest.raises(ImportanceError):
        Importance.from_state_dict({"heads": torch.ones(2, 4)})
