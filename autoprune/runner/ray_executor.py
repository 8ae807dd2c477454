"""The Ray executor: Ray Tune runs the cheap fine-tunes, our controller proposes them.

``ControllerSearcher`` is a Tune ``Searcher`` that bridges Tune to a :class:`SearchSession`:
``suggest`` pulls the next feasible candidate (infeasible ones never reach Tune) and
``on_trial_complete`` hands the result back, which stores it at once. An
``AsyncHyperBandScheduler`` over the fine-tune-step rungs stops weak candidates early; a
promoted candidate simply keeps training in the same worker, from where it stopped.

Workers never touch the database. Each sets its torch thread count to the CPUs Tune gave it,
so workers x threads never exceeds the cores (oversubscribed torch processes ran a fine-tune
step about 10x slower on 2 cores).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from ray import tune
from ray.tune import RunConfig
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler
from ray.tune.search import Searcher
from ray.tune.stopper import Stopper

from autoprune.runner.session import FINISHED, Candidate, Outcome, SearchSession
from autoprune.space import Architecture

log = logging.getLogger(__name__)

_ESTIMATORS: dict[str, Any] = {}  # per worker process: estimator by job key (actors are reused)


def _trainable(config: dict[str, Any]) -> None:
    """One candidate's fine-tune through the rungs, reporting after each rung."""
    import torch

    from autoprune.runner.prepare import build_estimator_from_json

    threads = int(config["threads"])
    torch.set_num_threads(threads)
    key = config["job_key"]
    estimator = _ESTIMATORS.get(key)
    if estimator is None:
        _ESTIMATORS.clear()
        estimator = _ESTIMATORS[key] = build_estimator_from_json(config["spec_json"], threads)
    architecture = Architecture.from_json(config["architecture"])
    crash_marker = os.environ.get("AUTOPRUNE_TEST_CRASH_ONCE")
    if crash_marker and not os.path.exists(crash_marker):  # test hook: a worker that dies once
        open(crash_marker, "w").close()
        os._exit(1)
    checkpoint = None
    worker = f"ray:{socket.gethostname()}:{os.getpid()}"
    started = time.monotonic()
    for steps in config["rungs"]:
        result = estimator.evaluate(architecture, steps, resume_from=checkpoint)
        checkpoint = getattr(result, "checkpoint", None)
        value = result.value if result.value is not None else float("nan")
        tune.report({"score": value, "steps": steps, "samples": result.samples,
                     "seconds": time.monotonic() - started, "worker": worker})
        if not math.isfinite(value):
            return


class RayExecutor:
    """Runs a session's candidates as Ray Tune trials on a local or remote Ray cluster."""

    name = "ray"

    def __init__(self, workers: int = 1, cpus_per_worker: int | None = None,
                 address: str | None = None, quiet: bool = False) -> None:
        self.workers = workers
        self.cpus_per_worker = cpus_per_worker
        self.address = address
        self.quiet = quiet
        self.dashboard_url: str | None = None
        self.announce: Callable[[str], None] = lambda text: log.warning("%s", text)

    def _init_ray(self) -> int:
        import ray

        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False,
                                      "logging_level": logging.WARNING}
            if self.address:
                context = ray.init(address=self.address, **kwargs)
            else:
                context = ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=True,
                                   dashboard_host="127.0.0.1", **kwargs)
            url = getattr(context, "dashboard_url", None)
            self.dashboard_url = f"http://{url}" if url and not url.startswith("http") else url
            if self.dashboard_url:
                self.announce(f"Ray dashboard: {self.dashboard_url}")
        return int(ray.cluster_resources().get("CPU", 1))

    def run(self, session: SearchSession) -> None:
        if self.quiet:  # Tune's new console output ignores verbose=0 for its config table
            os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        prepared = session.prepared
        prepared.make_estimator()  # the teacher is trained and cached before workers load it
        cluster_cpus = self._init_ray()
        threads = self.cpus_per_worker or max(1, cluster_cpus // self.workers)
        rungs = list(prepared.spec.estimate.fidelities)
        searcher = ControllerSearcher(session, {
            "spec_json": prepared.spec.to_json(),
            "job_key": f"{session.job_id}:{prepared.spec_hash}",
            "rungs": rungs,
            "threads": threads,
        })
        if len(rungs) > 1:
            scheduler: Any = AsyncHyperBandScheduler(
                time_attr="steps", metric="score", mode="max", grace_period=rungs[0],
                max_t=rungs[-1], reduction_factor=prepared.spec.estimate.reduction_factor,
            )
        else:
            scheduler = FIFOScheduler()
        trainable = tune.with_resources(_trainable, {"cpu": threads})
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=searcher, scheduler=scheduler, num_samples=-1,
                max_concurrent_trials=self.workers, reuse_actors=True,
                metric="score" if len(rungs) <= 1 else None,
                mode="max" if len(rungs) <= 1 else None,
            ),
            run_config=RunConfig(
                name=f"autoprune-job-{session.job_id}",
                storage_path=os.path.join(prepared.work_dir, "ray"),
                failure_config=tune.FailureConfig(max_failures=1),
                verbose=0 if self.quiet else 1,
                stop=_CancelStopper(session),
            ),
        )
        tuner.fit()
        searcher.raise_pending()


class _CancelStopper(Stopper):
    """Stops every trial once the session has ended (cancelled, taken over, or failed)."""

    def __init__(self, session: SearchSession) -> None:
        self.session = session

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.session is not None and self.session.aborted is not None

    def __getstate__(self) -> dict[str, Any]:
        return {"session": None}  # Tune pickles its config; our state lives in the store


class ControllerSearcher(Searcher):
    """A Tune searcher whose suggestions come from a :class:`SearchSession`."""

    def __init__(self, session: SearchSession, base_config: dict[str, Any]) -> None:
        super().__init__(metric="score", mode="max")
        self.session = session
        self.base_config = base_config
        self._live: dict[str, Candidate] = {}
        self._last: dict[str, dict[str, Any]] = {}

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.session.aborted is not None:
            return FINISHED
        try:
            candidate = self.session.next_candidate()
        except Exception as exc:  # cancellation, takeover, infeasible budget: end the run
            self.session.aborted = exc
            return FINISHED
        if candidate == FINISHED:
            return FINISHED
        if candidate is None:
            return None
        assert isinstance(candidate, Candidate)
        self._live[trial_id] = candidate
        self.session.mark_running(candidate, worker="ray")
        return {**self.base_config, "number": candidate.number,
                "architecture": candidate.architecture.to_json()}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        self._last[trial_id] = result

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        candidate = self._live.pop(trial_id, None)
        if candidate is None:
            return
        last = result or self._last.pop(trial_id, None) or {}
        rungs = self.base_config["rungs"]
        if error or "score" not in last:
            outcome = Outcome.failure("the Ray worker failed (after one retry)",
                                      worker=last.get("worker"))
        else:
            steps = int(last.get("steps", 0))
            outcome = Outcome(
                state="complete" if steps >= rungs[-1] else "pruned",
                metric=float(last["score"]), fidelity=steps, seconds=last.get("seconds"),
                samples=last.get("samples"), worker=last.get("worker"),
            )
        self.session.record(candidate, outcome)

    # Tune pickles searchers for its own experiment checkpoints. A job resumes from our store
    # (see session.py), never from Tune's checkpoint, so the live session is left out.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(session=None, _live={}, _last={})
        return state

    def save(self, checkpoint_path: str) -> None:
        pass

    def restore(self, checkpoint_path: str) -> None:
        pass

    def raise_pending(self) -> None:
        if self.session.aborted is not None:
            raise self.session.aborted
