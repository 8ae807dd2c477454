"""Saving and loading compressed models: a self-describing directory.

```
DIR/model.safetensors   weights; int8 linears as their exact int8 codes + fp32 scales + bias
DIR/autoprune.json      format + version, the base model config, the architecture, quant mode
DIR/tokenizer files     when a tokenizer is given (``load_tokenizer(DIR)`` reads them)
```

:func:`load` rebuilds the non-uniform structure from ``autoprune.json`` (a random-init model
compressed with the same architecture and mode, see :func:`build_random`) and then loads the
weights into it strictly: every tensor must be present and of the right shape. int8 weights are
stored as codes, never re-quantized, so a reload is bit-exact for every mode; sparsity masks of
non-finalized models are stored too and keep working when fine-tuning resumes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import BertConfig

from autoprune.compress import quantize as q
from autoprune.compress.engine import QUANTIZE_MODES, build_random
from autoprune.compress.modules import set_submodule
from autoprune.errors import ModelError
from autoprune.models import model_shape
from autoprune.space import Architecture

FORMAT = "autoprune-compressed-model"
FORMAT_VERSION = 1
METADATA_FILE = "autoprune.json"
WEIGHTS_FILE = "model.safetensors"


def _int8_modules(model: nn.Module) -> dict[str, nn.Module]:
    return {name: module for name, module in model.named_modules() if q.is_int8_linear(module)}


def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor needed to restore ``model``, safetensors-ready (plain dtypes, contiguous)."""
    int8 = _int8_modules(model)
    tensors = {
        key: value.detach().cpu().contiguous()
        for key, value in model.state_dict().items()
        if not any(key.startswith(f"{name}.") for name in int8)
    }
    for name, module in int8.items():
        for part, value in q.int8_parts(module).items():
            tensors[f"{name}.{part}"] = value
    return tensors


def save(model: nn.Module, directory: str | Path, tokenizer: Any = None) -> Path:
    """Write ``model`` (compressed, or a plain dense BERT classifier) to ``directory``."""
    path = Path(directory).expanduser()
    arch = getattr(model, "autoprune_architecture", None)
    if arch is None:
        shape = model_shape(model)
        arch = Architecture.dense(shape.num_layers, shape.num_heads)
    quantize = getattr(model, "autoprune_quantize", "none")
    path.mkdir(parents=True, exist_ok=True)
    save_file(_tensors(model), str(path / WEIGHTS_FILE), metadata={"format": FORMAT})
    metadata = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "base_config": model.config.to_dict(),
        "architecture": arch.to_list(),
        "architecture_hash": arch.hash,
        "quantize": quantize,
    }
    (path / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    if tokenizer is not None:
        tokenizer.save_pretrained(str(path))
    return path


def _read_metadata(path: Path) -> dict[str, Any]:
    meta_file = path / METADATA_FILE
    if not meta_file.is_file():
        raise ModelError(f"{path}: not a compressed model directory (no {METADATA_FILE})")
    try:
        metadata = json.loads(meta_file.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{meta_file}: not valid JSON ({exc.msg})") from exc
    if metadata.get("format") != FORMAT:
        raise ModelError(f"{meta_file}: format {metadata.get('format')!r}, expected {FORMAT!r}")
    if metadata.get("version") != FORMAT_VERSION:
        raise ModelError(f"{meta_file}: version {metadata.get('version')!r} is not supported")
    if metadata.get("quantize") not in QUANTIZE_MODES:
        raise ModelError(f"{meta_file}: quantize {metadata.get('quantize')!r} is not known")
    return metadata


def load(directory: str | Path) -> nn.Module:
    """Rebuild a model written by :func:`save`; returned in eval mode."""
    path = Path(directory).expanduser()
    metadata = _read_metadata(path)
    config = BertConfig.from_dict(metadata["base_config"])
    arch = Architecture.from_list(metadata["architecture"])
    try:
        tensors = load_file(str(path / WEIGHTS_FILE))
    except (OSError, SafetensorError) as exc:
        raise ModelError(f"{path / WEIGHTS_FILE}: cannot read weights ({exc})") from exc
    model = build_random(config, arch, quantize=metadata["quantize"])
    replacements: dict[str, nn.Module] = {}
    for name, module in _int8_modules(model).items():
        try:
            codes = tensors.pop(f"{name}.weight_int8")
            scales = tensors.pop(f"{name}.weight_scales")
        except KeyError as exc:
            raise ModelError(f"{path / WEIGHTS_FILE}: missing {exc.args[0]!r}") from exc
        if tuple(codes.shape) != (module.out_features, module.in_features):
            raise ModelError(f"{path / WEIGHTS_FILE}: {name} has shape {tuple(codes.shape)}")
        replacements[name] = q.int8_linear(codes, scales, tensors.pop(f"{name}.bias", None))
        # A stateless placeholder while the rest loads strictly (the quantized module's own
        # state-dict format is not the one we store).
        set_submodule(model, name, nn.Identity())
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise ModelError(
            f"{path / WEIGHTS_FILE}: weights do not fit the architecture ({exc})"
        ) from exc
    for name, replacement in replacements.items():
        set_submodule(model, name, replacement)
    return model.eval()
