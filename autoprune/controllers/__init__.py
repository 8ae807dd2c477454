"""Search strategies, one module each, behind one interface (:class:`Controller`).

``get_controller(name)`` returns a class from the lazy :data:`CONTROLLERS` registry; every
controller is built as ``cls(space, objective, seed, latency_fn=..., scores_fn=..., **options)``
and resumed with ``cls.rebuild(space, objective, seed, history, latency_fn=..., scores_fn=...,
**options)``; ``scores_fn`` (optional) gives the teacher's head and neuron importance to the
strategies that allocate by it (:mod:`autoprune.controllers.guided`).
"""

from autoprune.controllers.base import (
    Controller,
    ControllerError,
    ControllerOptions,
    ResumeDivergedWarning,
    TrialResult,
    group_batches,
)
from autoprune.controllers.registry import CONTROLLERS, get_controller

__all__ = [
    "CONTROLLERS",
    "Controller",
    "ControllerError",
    "ControllerOptions",
    "ResumeDivergedWarning",
    "TrialResult",
    "get_controller",
    "group_batches",
]
