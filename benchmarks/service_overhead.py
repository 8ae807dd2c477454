"""Service overhead: trials per second through controller + store with a null estimator.

Runs a real job (the evolution controller, the real store, the search session, the local or
Ray executor) whose estimator returns at once, on SQLite and on PostgreSQL, so the figure is
the orchestration's own cost. Then runs 10-second trials under Ray with 2 workers and reports

* ``ray_overhead_fraction_10s``: the controller + store overhead per trial (wall time the
  search session spent in ``ask``/``tell`` and store reads and writes, per trial) as a
  fraction of the 10-second trial: the issue's target;
* ``ray_wall_overhead_fraction_10s``: the fraction of the whole job's wall time not spent in
  trials (ideal = trials x 10 s / workers), which also counts Ray's one-off start-up of the
  worker processes (imports of torch and transformers) and Tune's per-trial scheduling.

    .venv/bin/python benchmarks/service_overhead.py [--trials 400] [--ray-trials 200]

Prints JSON and writes benchmarks/results/service_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "service_overhead.json"
PG_URL = os.environ.get("AUTOPRUNE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class FlopsLatency:
    """Latency for the benchmark's budget check: dense 16 ms, scaled by FLOPs (cheap)."""

    dense_ms = 16.0

    def __init__(self, space: Any) -> None:
        self.space = space
        self.dense_flops = space.stats(space.dense()).flops
        self.threads = 1

    def predict(self, arch: Any) -> float:
        return 1.0 + 15.0 * self.space.stats(arch).flops / self.dense_flops


def make_spec(directory: Path, evaluations: int, executor: str, workers: int,
              null_seconds: float = 0.0) -> Any:
    from autoprune.spec import JobSpec

    data = directory / "SST-2"
    data.mkdir(exist_ok=True)
    for name in ("train.tsv", "dev.tsv"):
        (data / name).write_text("sentence\tlabel\na good film \t1\na bad film \t0\n")
    return JobSpec.from_dict({
        "name": f"overhead-{executor}",
        "model": "minilm-l6",
        "task": {"name": "sst2", "data_dir": str(data)},
        "latency": {"model": str(directory / "unused.json"), "profile": "auto", "budget_ratio": 0.99},
        "space": "bert-full",
        "controller": {"name": "evolution", "evaluations": evaluations, "population": 16,
                       "batch": workers if executor == "ray" else 16},
        "estimate": {"steps": 1, "kind": "null", "null_seconds": null_seconds},
        "executor": {"kind": executor, "workers": workers, "cpus_per_worker": 1},
    }, base_dir=directory)


def run_once(url: str, spec: Any) -> tuple[float, int, dict[str, float]]:
    """Seconds and evaluated trials of one job, from claim to completion, and a breakdown."""
    from autoprune.estimate import build_estimator
    from autoprune.runner.prepare import prepare
    from autoprune.runner.service import make_executor
    from autoprune.runner.session import SearchSession
    from autoprune.space import MINILM_L6, SearchSpace
    from autoprune.store import Store

    with Store(url) as store:
        job_id = store.create_job(spec.to_json(), spec.name)
        store.claim_job("bench", heartbeat_timeout_s=600, job_id=job_id)
        latency = FlopsLatency(SearchSpace.load(spec.space, MINILM_L6))
        prepared = prepare(spec, estimator_factory=lambda: build_estimator(spec),
                           latency_model=latency, quiet=True)
        executor = make_executor(spec.executor.kind, spec.executor.workers, 1, None, quiet=True)
        session = SearchSession(store, job_id, prepared,
                                batch_size=spec.controller.batch or spec.executor.workers)
        started = time.perf_counter()
        executor.run(session)
        seconds = time.perf_counter() - started
        store.finish_job(job_id, "completed")
        breakdown = {"orchestration_s": session.orchestration_seconds}
        return seconds, session.progress.evaluated, breakdown


def postgres_url() -> str | None:
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("select 1"))
        engine.dispose()
        return PG_URL
    except Exception as exc:  # noqa: BLE001  # a benchmark without a server reports it and goes on
        print(f"PostgreSQL not reachable at {PG_URL}: {exc}", file=sys.stderr)
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=400, help="trials per local run")
    parser.add_argument("--ray-trials", type=int, default=100, help="trials per Ray run")
    parser.add_argument("--long-trials", type=int, default=12, help="10-second trials under Ray")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    results: dict[str, Any] = {"trials_per_s": {}, "evaluated": {}}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        urls = {"sqlite": f"sqlite:///{directory / 'bench.db'}", "postgres": postgres_url()}
        for executor, trials, workers in (("local", args.trials, 1), ("ray", args.ray_trials, 2)):
            for backend, url in urls.items():
                key = f"{backend}-{executor}"
                if url is None:
                    results["trials_per_s"][key] = None
                    continue
                seconds, evaluated, _ = run_once(url, make_spec(directory, trials, executor, workers))
                results["trials_per_s"][key] = round(evaluated / seconds, 1)
                results["evaluated"][key] = evaluated
                print(f"{key}: {evaluated} trials in {seconds:.1f} s", file=sys.stderr)
        spec = make_spec(directory, args.long_trials, "ray", 2, null_seconds=10.0)
        seconds, evaluated, breakdown = run_once(urls["sqlite"], spec)
        ideal = evaluated * 10.0 / 2
        per_trial = breakdown["orchestration_s"] / evaluated
        results["ray_overhead_fraction_10s"] = round(per_trial / 10.0, 5)
        results["ray_wall_overhead_fraction_10s"] = round((seconds - ideal) / seconds, 4)
        results["ray_10s"] = {"trials": evaluated, "workers": 2, "seconds": round(seconds, 1),
                              "ideal_seconds": ideal,
                              "controller_store_s_per_trial": round(per_trial, 4)}
    import ray

    ray.shutdown()
    results["targets"] = {
        "postgres_local_trials_per_s_min": 200,
        "ray_overhead_fraction_10s_max": 0.05,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
