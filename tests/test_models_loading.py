"""Loading base models and tokenizers: alias, local path, errors."""

from __future__ import annotations

import json

import pytest
import torch

from autoprune.errors import ModelError
from autoprune.models import (
    MINILM_ALIAS,
    load_base,
    load_tokenizer,
    model_shape,
    resolve_model_path,
)
from autoprune.space import MINILM_L6


def test_alias_resolves_to_packaged_dir(minilm_dir):
    assert resolve_model_path(MINILM_ALIAS) == str(minilm_dir)


def test_local_dir_resolves_to_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").mkdir()
    assert resolve_model_path("m") == str(tmp_path / "m")


def test_hub_name_passes_through():
    assert resolve_model_path("bert-base-uncased") == "bert-base-uncased"


@pytest.mark.parametrize("bad", ["./missing-model", "/no/such/dir", ""])
def test_bad_path_is_model_error(bad):
    with pytest.raises(ModelError):
        resolve_model_path(bad)


def test_unknown_hub_name_offline_is_model_error():
    with pytest.raises(ModelError, match="cannot load"):
        load_base("no-such-org/no-such-model-xyz", num_labels=2)


def test_non_bert_model_type_is_rejected(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ModelError, match="model_type"):
        load_base(str(tmp_path), num_labels=2)


def test_bad_num_labels_is_model_error(minilm_dir):
    with pytest.raises(ModelError):
        load_base(str(minilm_dir), num_labels=0)


def test_local_dir_round_trip(tmp_path, tiny_bert_config, tiny_shape):
    from transformers import BertForSequenceClassification

    BertForSequenceClassification(tiny_bert_config).save_pretrained(tmp_path)
    model = load_base(str(tmp_path), num_labels=3)
    assert model.config.num_labels == 3
    assert model_shape(model) == type(tiny_shape)(**{**tiny_shape.__dict__, "num_labels": 3})


def test_minilm_alias_classification_and_regression(minilm_dir):
    model = load_base(MINILM_ALIAS, num_labels=2)
    assert model_shape(model) == MINILM_L6
    regression = load_base(MINILM_ALIAS, num_labels=1)
    assert regression.config.problem_type == "regression"
    tokenizer = load_tokenizer(MINILM_ALIAS)
    batch = tokenizer(["a fine film"], return_tensors="pt")
    out = regression(**batch, labels=torch.tensor([0.5]))
    assert out.logits.shape == (1, 1) and out.loss.ndim == 0
