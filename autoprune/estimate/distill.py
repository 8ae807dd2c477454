"""Knowledge-distillation losses: the student learns the teacher's outputs.

Logits: KL divergence between temperature-softened distributions, scaled by ``T**2`` so its
gradient does not shrink with the temperature (Hinton et al. 2015); MSE for regression.
Hidden states (where layers map): the output of each kept student layer is pulled towards the
output of the same layer in the teacher (layers keep their original index when others are
dropped), as in TinyBERT. That MSE is divided by the teacher's mean square so the term is
scale-free and a single weight works across models.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from autoprune.space import Architecture


def logit_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float,
               regression: bool) -> torch.Tensor:
    if regression:
        return F.mse_loss(student.float(), teacher.float())
    t = temperature
    student_log = F.log_softmax(student.float() / t, dim=-1)
    teacher_log = F.log_softmax(teacher.float() / t, dim=-1)
    return F.kl_div(student_log, teacher_log, reduction="batchmean", log_target=True) * (t * t)


def layer_map(arch: Architecture, last_to_last: bool = False) -> list[tuple[int, int]]:
    """``(student, teacher)`` indices into ``hidden_states`` (0 is the embeddings' output,
    skipped: embeddings are shared and usually frozen).

    Each kept layer maps to the teacher layer it was cut from. ``last_to_last``: the last kept
    layer maps to the teacher's last layer instead, as in TinyBERT, since it is that layer's
    output the classifier reads; a candidate that keeps every layer maps the same either way.
    """
    pairs = [(j + 1, i + 1) for j, i in enumerate(arch.kept_layers)]
    if last_to_last and pairs:
        pairs[-1] = (pairs[-1][0], len(arch))
    return pairs


def label_loss(student: torch.Tensor, labels: torch.Tensor, regression: bool) -> torch.Tensor:
    """The task's own loss against the gold labels (Hinton's hard-label term)."""
    if regression:
        return F.mse_loss(student.float().squeeze(-1), labels.float())
    return F.cross_entropy(student.float(), labels)


def hidden_loss(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor],
                pairs: Sequence[tuple[int, int]], attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean over mapped layers of the relative MSE on real (non-pad) tokens."""
    if not pairs:
        return student[0].new_zeros(())
    mask = attention_mask.unsqueeze(-1).to(student[0].dtype)
    total = student[0].new_zeros(())
    for s, t in pairs:
        target = teacher[t]
        error = ((student[s] - target) ** 2 * mask).sum()
        total = total + error / (target ** 2 * mask).sum().clamp_min(1e-6)
    return total / len(pairs)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *,
                      temperature: float, regression: bool,
                      student_hidden: Sequence[torch.Tensor] | None = None,
                      teacher_hidden: Sequence[torch.Tensor] | None = None,
                      pairs: Sequence[tuple[int, int]] = (),
                      attention_mask: torch.Tensor | None = None,
                      hidden_weight: float = 0.0) -> torch.Tensor:
    """Logit distillation plus ``hidden_weight`` times hidden-state distillation."""
    loss = logit_loss(student_logits, teacher_logits, temperature, regression)
    if hidden_weight > 0 and student_hidden is not None and teacher_hidden is not None and pairs:
        assert attention_mask is not None
        loss = loss + hidden_weight * hidden_loss(student_hidden, teacher_hidden, pairs,
                                                  attention_mask)
    return loss
