"""The latency-model file format (JSON, validated with pydantic; no pickles).

One file per (device, backend, batch, sequence length). It holds everything needed to
audit and reproduce the predictor: the device fingerprint, every raw measurement (operator
table entries and end-to-end architectures, each with its spread), both fitted predictors
with their cross-validated error, which one is selected, and the validation figures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from autoprune.errors import LatencyModelError

FORMAT = "autoprune-latency-model"
VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MeasurementRecord(_Strict):
    median_ms: float = Field(gt=0)
    p10_ms: float = Field(ge=0)
    p90_ms: float = Field(ge=0)
    rounds: int = Field(ge=1)
    repeats: int = Field(ge=1)
    remeasured: bool = False
    round_minima_ms: list[float] = Field(default_factory=list)


class OperatorRecord(MeasurementRecord):
    kind: Literal["attention", "ffn", "embeddings", "classifier"]
    size: int = Field(ge=0)
    bits: Literal[32, 8, 4] = 32


class EndToEndRecord(MeasurementRecord):
    architecture: list[dict[str, Any]]
    architecture_hash: str


class FitRecord(_Strict):
    names: list[str]
    coefficients: list[float]
    cv_mape: float | None = None


class ValidationPoint(_Strict):
    """One held-out architecture; ``first_ms``/``second_ms`` on the profile's scale."""

    architecture_hash: str
    predicted_ms: float
    flops_predicted_ms: float
    first_ms: float
    second_ms: float


class ValidationRecord(_Strict):
    n_heldout: int
    within_10pct: float
    kendall_tau: float
    mape: float
    flops_baseline_mape: float
    table_mape: float
    repeatability_within_10pct: float
    selected: Literal["table", "flops"]
    space: str
    seconds: float
    dense_drift: list[float] = Field(default_factory=list)     # dense now / dense when profiled, per pass
    absolute_within_10pct: float | None = None                 # against the raw (unanchored) figures
    absolute_mape: float | None = None
    conditions: dict[str, float] = Field(default_factory=dict)
    points: list[ValidationPoint] = Field(default_factory=list)


class LatencyModelFile(_Strict):
    format: Literal["autoprune-latency-model"]
    version: Literal[1]
    model: str
    space: str = "bert-full"          # the search space profiled (name or path): what validate samples
    shape: dict[str, int | bool]
    backend: Literal["torch", "onnxruntime"]
    batch: int = Field(ge=1)
    seq_len: int = Field(ge=1)
    threads: int = Field(ge=1)
    fingerprint: dict[str, Any]
    fingerprint_hash: str
    created: str
    profile_seconds: float = Field(ge=0)
    conditions: dict[str, float] = Field(default_factory=dict)
    sparsity_exploited: bool = False
    dense_ms: float = Field(gt=0)
    operators: list[OperatorRecord] = Field(min_length=1)
    end_to_end: list[EndToEndRecord] = Field(min_length=2)
    fits: dict[Literal["table", "flops"], FitRecord]
    selected: Literal["table", "flops"]
    validation: ValidationRecord | None = None


def read_file(path: str | Path) -> LatencyModelFile:
    """Parse and validate a latency-model file; every failure is one-line LatencyModelError."""
    path = Path(path)
    if not path.is_file():
        raise LatencyModelError(f"latency model {str(path)!r}: no such file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LatencyModelError(f"latency model {str(path)!r}: not valid JSON ({exc.__class__.__name__})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise LatencyModelError(f"latency model {str(path)!r}: not an autoprune latency model (format key)")
    if data.get("version") != VERSION:
        raise LatencyModelError(
            f"latency model {str(path)!r}: version {data.get('version')!r} not supported (expected {VERSION})"
        )
    try:
        parsed = LatencyModelFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "<top>"
        raise LatencyModelError(f"latency model {str(path)!r}: {where}: {first['msg']}") from None
    if set(parsed.fits) != {"table", "flops"}:
        raise LatencyModelError(f"latency model {str(path)!r}: fits: needs both 'table' and 'flops'")
    return parsed


def write_file(document: LatencyModelFile, path: str | Path) -> Path:
    """Write atomically (temp file + rename) so a killed run never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(document.model_dump(mode="json"), indent=1) + "\n")
    temporary.replace(path)
    return path
