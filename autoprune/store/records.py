"""What the store hands out: plain frozen snapshots of rows.

Callers (runner, CLI, export) get values, never live ORM objects, so nothing they hold can
expire with a session or trigger a query on attribute access. ``to_dict`` gives a
JSON-ready form (timestamps as ISO-8601 UTC) for ``--format json|csv``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

R = TypeVar("R", bound="_Record")


@dataclass(frozen=True, slots=True)
class _Record:
    @classmethod
    def from_row(cls: type[R], row: Any, **overrides: Any) -> R:
        """Copy the fields of ``cls`` from an ORM object (JSON columns deep-copied)."""
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            if field.name in overrides:
                values[field.name] = overrides[field.name]
                continue
            value = getattr(row, field.name)
            if isinstance(value, (dict, list)):
                value = json.loads(json.dumps(value))
            values[field.name] = value
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            out[field.name] = value.isoformat() if isinstance(value, datetime) else value
        return out


@dataclass(frozen=True, slots=True)
class JobRecord(_Record):
    id: int
    name: str
    spec_json: str
    state: str
    owner: str | None
    heartbeat_at: datetime | None
    cancel_requested: bool
    reason: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class TrialRecord(_Record):
    job_id: int
    number: int
    architecture_json: str
    architecture_hash: str
    state: str
    fidelity: int | None
    predicted_latency_ms: float | None
    measured_latency_ms: float | None
    metric_name: str | None
    metric_value: float | None
    size_bytes: int | None
    reward: float | None
    worker: str | None
    attempt: int
    error: str | None
    extra: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class JobSummary:
    """A job with its trial counts per state and its best complete trial's metric."""

    job: JobRecord
    counts: dict[str, int]
    best_metric: float | None
    metric_name: str | None

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class DeviceRecord(_Record):
    id: int
    fingerprint_hash: str
    fingerprint: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class LatencyMeasurementRecord(_Record):
    id: int
    device_id: int
    backend: str
    batch: int
    seq_len: int
    threads: int | None
    architecture_json: str | None
    architecture_hash: str | None
    operator: str | None
    median_ms: float
    p10_ms: float | None
    p90_ms: float | None
    rounds: int
    extra: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ArtifactRecord(_Record):
    id: int
    job_id: int
    trial_number: int | None
    kind: str
    uri: str
    content_hash: str | None
    extra: dict[str, Any]
    created_at: datetime
