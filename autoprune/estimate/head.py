"""Re-fit the task head to a compressed body before fine-tuning (a linear probe).

The teacher's pooler and classifier were tuned to the output of its last layer. A candidate
that drops layers hands them the output of an earlier one, which they misread: at the cheap
estimate's learning rate, models that keep 3 of MiniLM's 6 layers give every SST-2 example the
majority class for the first 100+ steps (``benchmarks/shallow_start.py``), so the search scored
them as worthless. Before training, the classifier is fitted once, in closed form, to the
teacher's logits on the candidate's own features (ridge regression pulled towards the
teacher's weights), as linear probing before fine-tuning does (Kumar et al. 2022, "LP-FT").

It is no cure for every shallow model. Measured on SST-2 (``shallow_start.py``): after 100
steps at lr 5e-5, ``h8/f0.3`` in the first 3 layers scores 0.777 with the re-fit against 0.509
without, 4 int8 layers 0.829 against 0.815; 2 layers stay at 0.509 either way. In the
fine-tuned teacher, the [CLS] vector the pooler reads hardly depends on the input until the
last layers gather the sentence into it (its spread across SST-2 examples after layers 1-6:
0.0012, 0.0011, 0.0006, 0.006, 0.07, 0.43), so no head fitted at step 0 can separate the
classes of a model cut after layer 3: its layers must first learn to do that gathering.

Off by default (``estimate.refit_head``): ``export`` replays the search's steps, so the re-fit
also shapes the model a user takes home, and there it cost accuracy. ``h10/f0.3`` in 5 layers,
the 0.5x pick of the end-to-end benchmark on the Zen 5, exported at 0.8807 with it and at
0.8933 in the run before it existed (``benchmarks/end_to_end.py``), and at 0.8853 against
0.8911 side by side in ``benchmarks/export_recipe.py --refit`` (1 thread).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from autoprune.data import Batch
from autoprune.estimate.training import model_inputs

# Ridge strength relative to the features' mean square: strong enough that a few hundred
# examples of a 384-wide feature do not over-fit, weak enough to move a misreading head.
DEFAULT_RIDGE = 0.1


def task_head(model: nn.Module) -> nn.Linear | None:
    """The final linear layer that maps pooled features to the task's outputs, if the model
    has the Hugging Face ``classifier`` layout."""
    head = getattr(model, "classifier", None)
    return head if isinstance(head, nn.Linear) else None


@torch.no_grad()
def refit_head(model: nn.Module, batches: Iterable[Batch], targets: Iterable[torch.Tensor],
               ridge: float = DEFAULT_RIDGE) -> bool:
    """Set the classifier to ``argmin ||X W' + b - Y||^2 + lam ||[W b] - [W0 b0]||^2``.

    ``X`` are the classifier's inputs on ``batches`` (dropout off), ``Y`` the matching
    ``targets`` (the teacher's logits), ``W0, b0`` the head as it is, and ``lam`` is ``ridge``
    times the mean diagonal of ``X^T X``. False (nothing changed) for a model without a
    linear ``classifier``.
    """
    head = task_head(model)
    if head is None or head.bias is None:
        return False
    features: list[torch.Tensor] = []
    wanted: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, inputs, _o: features.append(inputs[0].detach()))
    was_training = model.training
    model.eval()
    try:
        for batch, target in zip(batches, targets):
            model(**model_inputs(batch))
            wanted.append(target)
    finally:
        hook.remove()
        model.train(was_training)
    if not features:
        return False
    x = torch.cat(features).double()
    x = torch.cat([x, x.new_ones(len(x), 1)], dim=1)  # the bias as a constant feature
    y = torch.cat(wanted).double().reshape(len(x), -1)
    prior = torch.cat([head.weight, head.bias[:, None]], dim=1).double().T  # (d + 1, k)
    gram = x.T @ x
    lam = ridge * float(gram.diagonal().mean())
    eye = torch.eye(len(gram), dtype=gram.dtype)
    solution = torch.linalg.solve(gram + lam * eye, x.T @ y + lam * prior)
    head.weight.copy_(solution[:-1].T.to(head.weight.dtype))
    head.bias.copy_(solution[-1].to(head.bias.dtype))
    return True
