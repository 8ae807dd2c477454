"""Distillation losses and the disk cache, without any model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from autoprune.estimate import DiskCache, content_key, distillation_loss, layer_map
from autoprune.estimate.distill import hidden_loss, logit_loss
from autoprune.space import Architecture, LayerConfig


def test_logit_loss_is_zero_on_agreement_and_matches_kl() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3]])
    assert logit_loss(logits, logits, 2.0, regression=False).item() == pytest.approx(0.0, abs=1e-7)
    student = torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    p = F.softmax(logits / 2, -1)
    expected = (p * (p.log() - F.log_softmax(student / 2, -1))).sum(-1).mean() * 4
    assert logit_loss(student, logits, 2.0, regression=False).item() == pytest.approx(expected.item())
    assert logit_loss(torch.ones(3, 1), torch.zeros(3, 1), 2.0, regression=True).item() == 1.0


def test_layer_map_follows_original_indices() -> None:
    arch = Architecture((LayerConfig(), LayerConfig.dropped(), LayerConfig(heads=4), LayerConfig()))
    assert layer_map(arch) == [(1, 1), (2, 3), (3, 4)]


def test_hidden_loss_is_relative_and_ignores_padding() -> None:
    teacher = [torch.zeros(1, 3, 4), torch.full((1, 3, 4), 2.0)]
    student = [torch.zeros(1, 3, 4), torch.full((1, 3, 4), 2.0)]
    student[1][0, 2] = 100.0  # a pad position: must not count
    mask = torch.tensor([[1, 1, 0]])
    assert hidden_loss(student, teacher, [(1, 1)], mask).item() == 0.0
    student[1][0, 0] = 4.0  # error 2 on one of two real tokens
    assert hidden_loss(student, teacher, [(1, 1)], mask).item() == pytest.approx(4 * 4 / (8 * 4))
    total = distillation_loss(torch.zeros(1, 2), torch.zeros(1, 2), temperature=1.0,
                              regression=False, student_hidden=student, teacher_hidden=teacher,
                              pairs=[(1, 1)], attention_mask=mask, hidden_weight=0.5)
    assert total.item() == pytest.approx(0.25)


def test_cache_builds_once_and_keys_by_content(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path)
    calls = []

    def build(directory: Path) -> None:
        calls.append(directory)
        (directory / "value.txt").write_text("42")

    key = content_key({"model": "m", "seed": 0})
    assert key == content_key({"seed": 0, "model": "m"})
    assert key != content_key({"model": "m", "seed": 1})
    first, hit = cache.get_or_build("things", key, build)
    second, hit_again = cache.get_or_build("things", key, build)
    assert (hit, hit_again) == (False, True) and first == second and len(calls) == 1
    assert (first / "value.txt").read_text() == "42" and cache.has("things", key)


def test_a_failed_build_leaves_no_entry(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path)

    def broken(directory: Path) -> None:
        (directory / "half.txt").write_text("x")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cache.get_or_build("things", "k", broken)
    assert not cache.has("things", "k") and not cache.path("things", "k").exists()
    assert [p.name for p in (tmp_path / "things").iterdir()] == ["k.lock"]


def test_cache_root_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AUTOPRUNE_CACHE", str(tmp_path / "c"))
    assert DiskCache().root == tmp_path / "c"
