"""Search spaces and architectures: round trips, validity, statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoprune.errors import SpaceError
from autoprune.space import (
    MINILM_L6,
    Architecture,
    LayerConfig,
    ModelShape,
    SearchSpace,
    architecture_stats,
)

SPACES = ["bert-structured", "bert-full", "bert-int8"]


@pytest.fixture(params=SPACES)
def space(request) -> SearchSpace:
    return SearchSpace.load(request.param, MINILM_L6)


def _vectors(space: SearchSpace):
    return st.lists(st.integers(0, 10_000), min_size=len(space.dims), max_size=len(space.dims)).map(
        lambda xs: np.array([x % d.size for x, d in zip(xs, space.dims)])
    )


@pytest.mark.parametrize("name", SPACES)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_decode_encode_round_trip(name: str, data) -> None:
    space = SearchSpace.load(name, MINILM_L6)
    arch = space.decode(data.draw(_vectors(space)))
    assert space.contains(arch)
    assert space.decode(space.encode(arch)) == arch
    again = Architecture.from_json(arch.to_json())
    assert again == arch and hash(again) == hash(arch) and again.hash == arch.hash
    assert len(arch.hash) == 12
    assert Architecture.from_summary(arch.summary()) == arch


@pytest.mark.parametrize("text", ["h4/x0.4 -", "h4/f0.4/b", "", "hfour/f0.5"])
def test_unreadable_summaries_are_space_errors(text: str) -> None:
    with pytest.raises(SpaceError, match="architecture"):
        Architecture.from_summary(text)


def test_json_is_stable_and_canonical() -> None:
    a = Architecture((LayerConfig(keep=False, heads=7, ffn=0.3), LayerConfig(heads=4, ffn=0.5)))
    b = Architecture((LayerConfig.dropped(), LayerConfig(ffn=0.5, heads=4, pattern="dense", sparsity=0.9)))
    assert a == b and a.to_json() == b.to_json() and a.hash == b.hash
    assert json.loads(a.to_json())[0]["keep"] is False
    nm = LayerConfig(pattern="2:4").canonical()
    assert nm.sparsity == 0.5


def test_sample_and_mutate_stay_in_space(space: SearchSpace) -> None:
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        arch = space.sample(rng)
        space.validate(arch)
        child = space.mutate(arch, rng)
        space.validate(child)
        assert child != arch
        other = space.sample(rng)
        space.validate(space.crossover(arch, other, rng))
        seen.add(arch)
    assert len(seen) > 150  # sampling actually explores


def test_min_layers_is_enforced() -> None:
    space = SearchSpace.from_dict(
        {"name": "t", "per_layer": {"keep": [True, False]}, "constraints": {"min_layers": 3}},
        MINILM_L6,
    )
    rng = np.random.default_rng(1)
    for _ in range(100):
        assert len(space.sample(rng).kept_layers) >= 3
    too_few = Architecture(tuple([LayerConfig()] * 2 + [LayerConfig.dropped()] * 4))
    with pytest.raises(SpaceError, match="min_layers"):
        space.validate(too_few)


def test_seeded_sampling_is_reproducible(space: SearchSpace) -> None:
    a = [space.sample(np.random.default_rng(5)) for _ in range(3)]
    b = [space.sample(np.random.default_rng(5)) for _ in range(3)]
    assert a == b


def test_heads_choices_bind_to_the_model() -> None:
    small = ModelShape(num_layers=2, hidden=32, num_heads=4, intermediate=64)
    space = SearchSpace.load("bert-structured", small)
    assert space.heads == (0, 2, 4)
    with pytest.raises(SpaceError, match="heads=12"):
        space.validate(Architecture.dense(2, 12))


@pytest.mark.parametrize(
    "data, message",
    [
        ({"per_layer": {"heads": [1, -2]}}, "per_layer.heads"),
        ({"per_layer": {"ffn": [1.5]}}, "per_layer.ffn"),
        ({"per_layer": {"bits": [16]}}, "per_layer.bits"),
        ({"per_layer": {"pattern": ["3:2"]}}, "N:M"),
        ({"per_layer": {"colour": [1]}}, "per_layer.colour"),
        ({"per_layer": {"heads": []}}, "non-empty"),
        ({"constraints": {"min_layers": 0}}, "min_layers"),
        ({"extra": 1}, "unknown key"),
    ],
)
def test_bad_space_files_name_the_key(data, message) -> None:
    with pytest.raises(SpaceError, match=message):
        SearchSpace.from_dict(data, MINILM_L6)


def test_unknown_space_name() -> None:
    with pytest.raises(SpaceError, match="no such file"):
        SearchSpace.load("bert-nonexistent")


def test_stats_match_minilm_and_scale() -> None:
    dense = Architecture.dense(6, 12)
    stats = architecture_stats(dense, MINILM_L6)
    # all-MiniLM-L6-v2 with a 2-label head: 22.7M parameters (22,713,216 + classifier 770).
    assert stats.parameters == 22_713_986
    assert stats.bytes == stats.parameters * 4
    half = Architecture.uniform(6, LayerConfig(heads=6, ffn=0.5))
    assert architecture_stats(half, MINILM_L6).flops < 0.55 * stats.flops
    int8 = Architecture.uniform(6, LayerConfig(bits=8))
    int8_stats = architecture_stats(int8, MINILM_L6)
    assert int8_stats.parameters == stats.parameters and int8_stats.bytes < stats.bytes
    sparse = Architecture.uniform(6, LayerConfig(pattern="unstructured", sparsity=0.9))
    assert architecture_stats(sparse, MINILM_L6).nonzero_parameters < stats.nonzero_parameters
    assert architecture_stats(dense, MINILM_L6, batch=8).flops == pytest.approx(8 * stats.flops, rel=1e-3)


def test_neighbours_are_one_step_away() -> None:
    space = SearchSpace.load("bert-structured", MINILM_L6)
    arch = space.dense()
    for neighbour in space.neighbours(arch):
        assert space.contains(neighbour)
        diff = np.abs(space.encode(neighbour) - space.encode(arch))
        assert diff.sum() >= 1
