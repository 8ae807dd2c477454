"""``benchmarks/sst2_teacher.py``: each variant is the default teacher recipe changed only where
its docstring says, so the comparison with the 2,000-step teacher is of those changes alone."""

from __future__ import annotations

import dataclasses

from autoprune.estimate import TeacherRecipe
from benchmark_scripts import load_benchmark


def changed(recipe: TeacherRecipe) -> dict[str, object]:
    default = dataclasses.asdict(TeacherRecipe())
    return {name: value for name, value in dataclasses.asdict(recipe).items() if default[name] != value}


def test_each_variant_changes_only_what_it_names() -> None:
    variants = load_benchmark("sst2_teacher").VARIANTS
    assert changed(variants["long"]) == {"steps": 6000}
    assert changed(variants["unfrozen"]) == {"steps": 6000, "freeze_embeddings": False}
    assert changed(variants["bert"]) == {"steps": 6000, "lr": 3e-5, "freeze_embeddings": False}
    # the default recipe trains SST-2 2,000 steps (capped epochs), the teacher these compare with
    assert TeacherRecipe().resolve_steps(67349) == 2000
