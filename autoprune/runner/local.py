"""The in-process executor: candidates one after another, ASHA over the spec's rungs.

For tests, one-core machines and debugging. Ray's executor applies the same promotion rule,
so with one worker both record the same trials.
"""

from __future__ import annotations

import logging
import math
import socket
import time
from typing import Any

from autoprune.runner.asha import SuccessiveHalving
from autoprune.runner.session import FINISHED, Candidate, Outcome, SearchSession

log = logging.getLogger(__name__)


def evaluate_with_rungs(
    estimator: Any,
    candidate: Candidate,
    rungs: tuple[int, ...],
    halving: SuccessiveHalving | None,
    worker: str,
) -> Outcome:
    """Fine-tune through the rungs, resuming each rung from the previous one's checkpoint."""
    started = time.monotonic()
    checkpoint = None
    result = None
    samples = 0
    try:
        for index, steps in enumerate(rungs):
            result = estimator.evaluate(candidate.architecture, steps, resume_from=checkpoint)
            samples = result.samples
            checkpoint = getattr(result, "checkpoint", None)
            if result.value is None or not math.isfinite(result.value):
                return Outcome(state="failed", error=f"non-finite metric {result.value!r}",
                               fidelity=steps, worker=worker,
                               seconds=time.monotonic() - started)
            last = index == len(rungs) - 1
            if not last and halving is not None and not halving.promote(steps, result.value):
                return Outcome(state="pruned", metric=result.value, fidelity=steps,
                               seconds=time.monotonic() - started, samples=samples,
                               worker=worker)
    except Exception as exc:  # a failing candidate must not end the job
        log.warning("trial %s failed: %s", candidate.number, exc)
        return Outcome.failure(exc, worker=worker)
    finally:
        release = getattr(estimator, "release", None)
        if release is not None and checkpoint is not None:
            release(checkpoint)
    assert result is not None
    return Outcome(state="complete", metric=result.value, fidelity=result.steps,
                   seconds=time.monotonic() - started, samples=samples, worker=worker)


class LocalExecutor:
    """Evaluates candidates in this process, in the order the session hands them out."""

    name = "local"

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def run(self, session: SearchSession) -> None:
        prepared = session.prepared
        if self.threads is not None:
            import torch

            torch.set_num_threads(self.threads)
        estimator = prepared.make_estimator()
        rungs = prepared.spec.estimate.fidelities
        halving = SuccessiveHalving(rungs, prepared.spec.estimate.reduction_factor)
        worker = f"local:{socket.gethostname()}"
        while True:
            candidate = session.next_candidate()
            if candidate == FINISHED:
                return
            if candidate is None:  # nothing in flight locally: the session is never waiting
                raise RuntimeError("local executor: session is waiting with nothing in flight")
            assert isinstance(candidate, Candidate)
            session.mark_running(candidate, worker)
            session.record(candidate, evaluate_with_rungs(estimator, candidate, rungs, halving, worker))
