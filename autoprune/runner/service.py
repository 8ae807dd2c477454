"""Running jobs: one job in this process (``search``), or the queue service (``serve``).

A running job's owner writes a heartbeat from a background thread; a service that finds a
running job whose heartbeat expired (its owner was killed) claims it and resumes it: the
store keeps every finished trial, trials that were running are evaluated again. SIGTERM
stops after the trial in flight and puts the job back in the queue.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autoprune.errors import AutopruneError
from autoprune.runner.session import (
    JobCancelled,
    JobInterrupted,
    JobTakenOver,
    Progress,
    SearchSession,
)

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 5.0
HEARTBEAT_TIMEOUT_S = 60.0


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class JobRun:
    job_id: int
    state: str
    reason: str | None
    progress: Progress | None
    dashboard_url: str | None = None


class _Heartbeat(threading.Thread):
    """Keeps the job's heartbeat fresh while a long fine-tune blocks the main thread."""

    def __init__(self, store: Any, job_id: int, owner: str, interval: float) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{job_id}")
        self.store, self.job_id, self.owner, self.interval = store, job_id, owner, interval
        self.stopped = threading.Event()
        self.lost = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                if not self.store.heartbeat(self.job_id, self.owner):
                    self.lost.set()
                    return
            except Exception as exc:  # a transient database error must not kill the job
                log.warning("heartbeat for job %s failed: %s", self.job_id, exc)


def make_executor(kind: str, workers: int, cpus_per_worker: int | None,
                  ray_address: str | None, quiet: bool = False) -> Any:
    if kind == "local":
        from autoprune.runner.local import LocalExecutor

        return LocalExecutor(threads=cpus_per_worker)
    from autoprune.runner.ray_executor import RayExecutor

    return RayExecutor(workers=workers, cpus_per_worker=cpus_per_worker, address=ray_address,
                       quiet=quiet)


def run_job(
    store: Any,
    job_id: int,
    owner: str,
    *,
    executor: str | None = None,
    ray_address: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_ready: Callable[[SearchSession, Any], None] | None = None,
    stop_event: threading.Event | None = None,
    heartbeat_interval: float = HEARTBEAT_INTERVAL_S,
    quiet: bool = False,
    progress: bool = False,
) -> JobRun:
    """Prepare and run a job this owner has claimed, and record how it ended.

    ``quiet`` silences the executor's own console output; ``progress`` shows progress bars
    while the job is prepared (profiling, the teacher's fine-tune), before ``on_ready``.
    """
    from autoprune.runner.prepare import prepare
    from autoprune.spec import JobSpec

    job = store.get_job(job_id)
    heartbeat = _Heartbeat(store, job_id, owner, heartbeat_interval)
    heartbeat.start()
    session: SearchSession | None = None
    runner: Any = None
    try:
        spec = JobSpec.from_json(job.spec_json)
        prepared = prepare(spec, store=store, quiet=not progress,
                           resuming=store.count_trials(job_id) > 0)
        prepared.make_estimator()  # the teacher and importance scores, trained or loaded once
        store.reset_running_trials(job_id)
        kind = executor or spec.executor.kind
        runner = make_executor(kind, spec.executor.workers, spec.executor.cpus_per_worker,
                               ray_address or spec.executor.ray_address, quiet=quiet)
        batch = spec.controller.batch or spec.executor.workers
        session = SearchSession(store, job_id, prepared, batch_size=batch, owner=owner,
                                on_progress=on_progress)
        session.stop_event = stop_event
        if on_ready is not None:
            on_ready(session, runner)
        runner.run(session)
        if session.aborted is not None:
            raise session.aborted
        store.finish_job(job_id, "completed")
        return _ended(job_id, "completed", None, session, runner)
    except JobCancelled as exc:
        store.finish_job(job_id, "cancelled", reason=str(exc))
        return _ended(job_id, "cancelled", str(exc), session, runner)
    except JobTakenOver as exc:
        return _ended(job_id, "taken-over", str(exc), session, runner)
    except JobInterrupted as exc:
        store.requeue_job(job_id, owner)
        return _ended(job_id, "queued", str(exc), session, runner)
    except AutopruneError as exc:
        store.finish_job(job_id, "failed", reason=str(exc))
        raise
    except BaseException as exc:
        reason = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        store.finish_job(job_id, "failed", reason=reason[:4000])
        raise
    finally:
        heartbeat.stopped.set()


def _ended(job_id: int, state: str, reason: str | None, session: SearchSession | None,
           runner: Any) -> JobRun:
    return JobRun(job_id, state, reason, session.progress if session else None,
                  getattr(runner, "dashboard_url", None))


def serve(
    store: Any,
    *,
    owner: str | None = None,
    once: bool = False,
    poll_interval: float = 2.0,
    heartbeat_timeout: float = HEARTBEAT_TIMEOUT_S,
    executor: str | None = None,
    ray_address: str | None = None,
    on_job: Callable[[JobRun], None] | None = None,
    max_idle_polls: int | None = None,
) -> list[JobRun]:
    """Claim queued (or orphaned) jobs one at a time and run them until told to stop."""
    owner = owner or default_owner()
    stop = threading.Event()

    def _terminate(signum: int, frame: Any) -> None:
        log.warning("signal %s: stopping after the trial in flight", signum)
        stop.set()

    previous = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGTERM, signal.SIGINT)}
    runs: list[JobRun] = []
    idle = 0
    try:
        while not stop.is_set():
            job = store.claim_job(owner, heartbeat_timeout_s=heartbeat_timeout)
            if job is None:
                if once or (max_idle_polls is not None and idle >= max_idle_polls):
                    break
                idle += 1
                stop.wait(poll_interval)
                continue
            idle = 0
            try:
                run = run_job(store, job.id, owner, executor=executor, ray_address=ray_address,
                              stop_event=stop, quiet=True)
            except Exception as exc:  # one job's failure (already recorded) must not stop the service
                log.error("job %s failed: %s", job.id, exc)
                run = JobRun(job.id, "failed", f"{type(exc).__name__}: {exc}", None)
            runs.append(run)
            if on_job is not None:
                on_job(run)
            if once:
                break
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return runs


def wait_for(store: Any, job_id: int, states: tuple[str, ...], timeout: float) -> Any:
    """Poll until a job reaches one of ``states`` (used by tests and ``--wait``)."""
    deadline = time.monotonic() + timeout
    while True:
        job = store.get_job(job_id)
        if job.state in states or time.monotonic() > deadline:
            return job
        time.sleep(0.2)
