"""The compression engine: architecture in, real smaller model out.

``compress(model, arch, importance)`` removes heads, FFN neurons and layers physically, adds
sparsity masks that persist through fine-tuning, and quantizes per layer (fake for training,
real int8 / packed int4 for inference); ``finalize`` makes a trained model deployable;
``save`` / ``load`` write and read a self-describing directory. Typical use::

    importance = compute_importance(teacher, batches, max_batches=32)   # once per job
    student = compress(teacher, arch, importance, quantize="fake")      # then fine-tune it
    save(finalize(student), out_dir, tokenizer)                         # deployable
    model = autoprune.load(out_dir)                                      # exact reload

Compressed models hold ``torch.nn.utils.parametrize`` masks until finalized, which PyTorch
refuses to pickle: persist them with :func:`save`, not ``torch.save`` / pickle.
"""

from __future__ import annotations

from autoprune.compress.engine import (
    QUANTIZE_MODES,
    QuantizeMode,
    build_random,
    compress,
    count_parameters,
    finalize,
)
from autoprune.compress.importance import (
    Importance,
    ImportanceError,
    compute_importance,
    magnitude_importance,
)
from autoprune.compress.masking import masked
from autoprune.compress.serialization import load, save

__all__ = [
    "QUANTIZE_MODES",
    "Importance",
    "ImportanceError",
    "QuantizeMode",
    "build_random",
    "compress",
    "compute_importance",
    "count_parameters",
    "finalize",
    "load",
    "magnitude_importance",
    "masked",
    "save",
]
