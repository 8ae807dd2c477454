"""Measuring and predicting latency on the target device.

* :func:`measure` - the timing protocol (interleaved rounds, median of per-round minima);
* :func:`profile` - operator tables + end-to-end measurements + fits -> :class:`LatencyModel`;
* :func:`validate` - fresh held-out architectures measured twice, compared with predictions;
* :func:`dense_speed` - dense on this machine now over its profiled figure (a few seconds);
* :class:`LatencyModel` - ``predict(arch) -> ms``, ``dense_ms``, JSON files in ``latency_models/``.
"""

from __future__ import annotations

from autoprune.latency.backends import (
    BACKENDS,
    Backend,
    OnnxRuntimeBackend,
    TorchBackend,
    get_backend,
)
from autoprune.latency.factory import CompressFactory, ModelFactory
from autoprune.latency.fingerprint import device_fingerprint, differences, fingerprint_hash
from autoprune.latency.predictor import LatencyModel, LatencyModelWarning
from autoprune.latency.profile import profile
from autoprune.latency.progress import NullProgress, Progress, RichProgress
from autoprune.latency.protocol import DEFAULT_PROTOCOL, QUICK, Measurement, Protocol, measure
from autoprune.latency.schema import ValidationRecord
from autoprune.latency.validate import dense_speed, validate

__all__ = [
    "BACKENDS",
    "DEFAULT_PROTOCOL",
    "QUICK",
    "Backend",
    "CompressFactory",
    "LatencyModel",
    "LatencyModelWarning",
    "Measurement",
    "ModelFactory",
    "NullProgress",
    "OnnxRuntimeBackend",
    "Progress",
    "Protocol",
    "RichProgress",
    "TorchBackend",
    "ValidationRecord",
    "dense_speed",
    "device_fingerprint",
    "differences",
    "fingerprint_hash",
    "get_backend",
    "measure",
    "profile",
    "validate",
]
