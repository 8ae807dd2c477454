"""Base encoders and tokenizers: by local path, Hugging Face name, or the offline alias."""

from __future__ import annotations

from autoprune.models.loading import (
    MINILM_ALIAS,
    load_base,
    load_tokenizer,
    model_shape,
    resolve_model_path,
)

__all__ = ["MINILM_ALIAS", "load_base", "load_tokenizer", "model_shape", "resolve_model_path"]
