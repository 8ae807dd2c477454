"""Writing measurements to (and reusing them from) the trials database.

The store is optional: profiling works without one. When a store is given, every figure is
written to its latency-measurements table under the device's fingerprint, and a later profile
on the same device, backend, batch, sequence length and thread count reuses the figures that
are already there instead of measuring them again.

A profile told not to reuse (the figures are known to be stale: the machine got faster) opens a
new *epoch*, stamped on every figure it writes; reuse then takes only the newest epoch's figures.
Without it, an operator or architecture the fresh profile did not reach (its time budget ran
out) would come back at the stale speed beside fresh ones.

The store is duck-typed (``autoprune.store.Store``): ``add_device(fingerprint) -> int``,
``add_latency_measurement(...)`` and, for reuse, ``latency_measurements(...)`` returning rows
with the same fields. A store without the reading method is only written to.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from autoprune.latency.operators import OperatorKey
from autoprune.latency.protocol import Measurement
from autoprune.space import Architecture

log = logging.getLogger(__name__)

# Stored figures are stale when the dense model now runs this much faster than they say: the
# same CPU model (same fingerprint) at another speed. Only faster: load only slows a machine.
FASTER_THAN_MEASURED = 0.10


def parse_operator_label(label: str) -> OperatorKey | None:
    """The inverse of :attr:`OperatorKey.label` (``None`` for an unknown label)."""
    if label in ("embeddings", "classifier"):
        return OperatorKey(label)  # type: ignore[arg-type]
    parts = label.split("/")
    if len(parts) == 3 and parts[0] in ("attention", "ffn") and parts[2].startswith("b"):
        try:
            return OperatorKey(parts[0], int(parts[1]), int(parts[2][1:]))  # type: ignore[arg-type]
        except ValueError:
            return None
    return None


def _field(row: Any, name: str) -> Any:
    return row.get(name) if isinstance(row, dict) else getattr(row, name, None)


def _epoch(row: Any) -> str:
    return str((_field(row, "extra") or {}).get("epoch", ""))


class MeasurementLog:
    """The store side of one profile: a device id, the setting, and what is already known."""

    def __init__(self, store: Any | None, fingerprint: dict[str, Any], backend: str, batch: int,
                 seq_len: int, threads: int, *, reuse: bool = True) -> None:
        """``reuse``: start from what the store already holds for this device and setting;
        False measures everything again (and still writes it), for figures known to be stale."""
        self.store = store
        self.setting = {"backend": backend, "batch": batch, "seq_len": seq_len, "threads": threads}
        self.device_id: int | None = store.add_device(fingerprint) if store is not None else None
        self.operators: dict[OperatorKey, Measurement] = {}
        self.architectures: dict[str, Measurement] = {}
        # Figures written before epochs existed are epoch "" (the oldest); ISO stamps sort in time.
        self.epoch = ""
        if reuse:
            self._load_known()
        else:
            self.supersede()

    def supersede(self) -> None:
        """Set aside what was reused and open a new epoch: the figures written from now on
        replace the stored ones for every later reuse."""
        self.operators.clear()
        self.architectures.clear()
        self.epoch = datetime.now(UTC).isoformat()

    def _load_known(self) -> None:
        reader = getattr(self.store, "latency_measurements", None)
        if reader is None:
            return
        rows = list(reader(device_id=self.device_id, **self.setting))
        self.epoch = max((_epoch(row) for row in rows), default="")
        for row in rows:  # oldest first: newest wins
            if _epoch(row) != self.epoch:  # superseded by a fresh profile
                continue
            median = float(_field(row, "median_ms"))
            measurement = Measurement(
                median_ms=median, p10_ms=float(_field(row, "p10_ms") or median),
                p90_ms=float(_field(row, "p90_ms") or median), rounds=int(_field(row, "rounds") or 1),
                repeats=int((_field(row, "extra") or {}).get("repeats", 1)),
            )
            operator = _field(row, "operator")
            key = parse_operator_label(operator) if operator else None
            if key is not None:
                self.operators[key] = measurement
            elif _field(row, "architecture_hash"):
                self.architectures[str(_field(row, "architecture_hash"))] = measurement
        if self.operators or self.architectures:
            log.info("reusing %d operator and %d end-to-end measurements from the store",
                     len(self.operators), len(self.architectures))

    def record_operator(self, key: OperatorKey, measurement: Measurement) -> None:
        self.operators[key] = measurement
        self._write(measurement, operator=key.label)

    def record_architecture(self, arch: Architecture, measurement: Measurement) -> None:
        self.architectures[arch.hash] = measurement
        self._write(measurement, architecture_json=arch.to_json(), architecture_hash=arch.hash)

    def _write(self, measurement: Measurement, **what: Any) -> None:
        if self.store is None:
            return
        self.store.add_latency_measurement(
            device_id=self.device_id, **self.setting, median_ms=measurement.median_ms,
            p10_ms=measurement.p10_ms, p90_ms=measurement.p90_ms, rounds=measurement.rounds,
            extra={"repeats": measurement.repeats, "remeasured": measurement.remeasured,
                   "epoch": self.epoch}, **what,
        )
