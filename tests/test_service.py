"""The service under failure: kill -9 mid-job, two services on one queue, the CLI search.

Real ``autoprune serve`` processes run real jobs on a tiny BERT: a real teacher fine-tune,
real cheap fine-tunes, a latency model profiled on this machine (with a short protocol).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from tinybert import write_model, write_sst2_dir

from autoprune.store import Store


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from autoprune.latency import profile
    from autoprune.latency.protocol import Protocol

    root = tmp_path_factory.mktemp("service")
    model = write_model(root / "model", num_layers=4)
    latency = root / "tiny-torch-b1-s32.json"
    fast = Protocol(rounds=3, min_repeats=1, max_repeats=2, warmup=1, extra_rounds=0)
    profile(str(model), "torch", 1, 32, 1, latency, space="bert-structured", n_fit=12,
            time_budget_s=60, protocol=fast)
    return {"root": root, "model": model, "data": write_sst2_dir(root / "SST-2"), "latency": latency}


def _spec(assets: dict[str, Path], directory: Path, name: str, **estimate: Any) -> Path:
    spec = {
        "name": name,
        "model": str(assets["model"]),
        "task": {"name": "sst2", "data_dir": str(assets["data"]), "max_seq_len": 32},
        "latency": {"model": str(assets["latency"]), "budget_ratio": 0.7, "batch": 1, "seq_len": 32},
        "space": "bert-structured",
        "controller": {"name": "evolution", "evaluations": 8, "population": 4, "seed": 1},
        "estimate": {"steps": 12, "rungs": [4, 12], "batch_size": 16, "lr": 2e-3,
                     "max_seq_len": 32, "teacher_steps": 40, "teacher_lr": 2e-3,
                     "freeze_embeddings": False, **estimate},
        "executor": {"kind": "local", "workers": 1, "cpus_per_worker": 1},
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _env(assets: dict[str, Path], db: str) -> dict[str, str]:
    return {**os.environ, "AUTOPRUNE_DB": db, "AUTOPRUNE_CACHE": str(assets["root"] / "cache"),
            "AUTOPRUNE_HOME": str(assets["root"] / "home"), "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1"}


def _autoprune(*args: str, env: dict[str, str], **kwargs: Any) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "autoprune.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _submit(spec: Path, env: dict[str, str]) -> int:
    done = subprocess.run([sys.executable, "-m", "autoprune.cli", "submit", str(spec)], env=env,
                          capture_output=True, text=True, check=True)
    return int(done.stdout.strip())


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_kill_9_mid_job_then_a_new_service_completes_it(assets: dict[str, Path],
                                                        tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'trials.db'}"
    env = _env(assets, db)
    job_id = _submit(_spec(assets, tmp_path, "killed"), env)
    store = Store(db)
    first = _autoprune("serve", "--once", "--heartbeat-timeout", "3", "--poll", "0.2", env=env)

    def mid_trial() -> bool:
        trials = store.trials(job_id)
        return (sum(t.state in ("complete", "pruned") for t in trials) >= 2
                and any(t.state == "running" for t in trials))

    try:
        # The service is frozen before the state is read again and killed only if a trial is
        # still running then: between the wait and the kill, the trial may have finished.
        while True:
            _wait(mid_trial, 240, "two finished trials and one running")
            first.send_signal(signal.SIGSTOP)
            if mid_trial():
                break
            first.send_signal(signal.SIGCONT)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    before = {t.number: t for t in store.trials(job_id)}
    running = [t.number for t in before.values() if t.state == "running"]
    assert store.get_job(job_id).state == "running" and running
    time.sleep(3.5)  # the dead owner's heartbeat expires (--heartbeat-timeout 3)

    second = _autoprune("serve", "--once", "--heartbeat-timeout", "3", "--poll", "0.2", env=env)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    job = store.get_job(job_id)
    assert job.state == "completed", (job.reason, err)
    assert "resumed" in (job.reason or "")
    after = {t.number: t for t in store.trials(job_id)}
    for number, trial in before.items():  # completed trials kept: same ids, same values
        if trial.state in ("complete", "pruned", "failed"):
            assert after[number].architecture_hash == trial.architecture_hash
            assert after[number].metric_value == trial.metric_value
            assert after[number].finished_at == trial.finished_at
    for number in running:  # the running trial was run again
        assert after[number].state in ("complete", "pruned", "failed")
        assert after[number].attempt == 1
    hashes = [t.architecture_hash for t in after.values()]
    assert len(hashes) == len(set(hashes))
    assert sorted(after) == list(range(len(after)))
    evaluated = [t for t in after.values() if not t.extra.get("infeasible")]
    assert len(evaluated) == 8
    store.close()


@pytest.mark.postgres
def test_two_services_on_postgres_run_each_job_once(assets: dict[str, Path], tmp_path: Path,
                                                    pg_url: str) -> None:
    env = _env(assets, pg_url)
    jobs = [_submit(_spec(assets, tmp_path, f"job{i}", kind="null"), env) for i in range(10)]
    services = [_autoprune("serve", "--poll", "0.2", env=env) for _ in range(2)]
    store = Store(pg_url)
    try:
        _wait(lambda: all(store.get_job(j).state in ("completed", "failed") for j in jobs), 300,
              "all jobs to finish")
    finally:
        for service in services:
            service.send_signal(signal.SIGTERM)
        outputs = [service.communicate(timeout=60)[1] for service in services]
    ran: list[int] = []
    for output in outputs:
        ran += [int(line.split()[1]) for line in output.splitlines() if line.startswith("job ")
                and line.split()[2] == "completed"]
    assert sorted(ran) == sorted(jobs), outputs  # each job run by exactly one service
    for job_id in jobs:
        job = store.get_job(job_id)
        assert job.state == "completed", job.reason
        trials = store.trials(job_id)
        assert len(trials) == len({t.architecture_hash for t in trials})
        assert sum(not t.extra.get("infeasible") for t in trials) == 8
    assert all(service.returncode == 0 for service in services)
    store.close()


def test_cli_search_runs_a_job_and_prints_the_front(assets: dict[str, Path], tmp_path: Path) -> None:
    env = _env(assets, f"sqlite:///{tmp_path / 'search.db'}")
    spec = _spec(assets, tmp_path, "search-cli")
    model_dir = tmp_path / "best-model"
    done = subprocess.run([sys.executable, "-m", "autoprune.cli", "search", str(spec),
                           "--export", str(model_dir), "--drift-attempts", "1"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Pareto front" in done.stdout and "best feasible" in done.stdout
    assert "completed" in done.stderr
    # --export: the best feasible trial, re-measured, as a model autoprune.load reads
    report = json.loads((model_dir / "report.json").read_text())
    assert f"trial {report['trial']}" in done.stdout.split("best feasible")[1]
    assert len(report["dense_drifts"]) <= 1  # --drift-attempts 1: measured once, never waits
    assert "faster" in done.stdout
    import autoprune

    assert autoprune.load(model_dir) is not None


def test_local_and_ray_with_one_worker_record_the_same_trials(assets: dict[str, Path],
                                                              tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from autoprune.runner.service import run_job
    from autoprune.spec import JobSpec

    for key, value in _env(assets, "").items():
        if key.startswith(("AUTOPRUNE_CACHE", "AUTOPRUNE_HOME")):
            monkeypatch.setenv(key, value)
    spec = JobSpec.load(_spec(assets, tmp_path, "same", kind="null"))
    orders = {}
    with Store(f"sqlite:///{tmp_path / 'same.db'}") as store:
        for executor in ("local", "ray"):
            job_id = store.create_job(spec.to_json(), spec.name)
            store.claim_job(executor, heartbeat_timeout_s=60, job_id=job_id)
            run = run_job(store, job_id, executor, executor=executor, quiet=True)
            assert run.state == "completed", run.reason
            orders[executor] = [(t.architecture_hash, t.state, t.metric_value)
                                for t in store.trials(job_id)]
    import ray

    ray.shutdown()
    assert orders["local"] == orders["ray"]
    assert sum(state in ("complete", "pruned") for _, state, _ in orders["ray"]) == 8


def test_a_crashed_ray_worker_trial_is_retried_once(assets: dict[str, Path], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    from autoprune.runner.service import run_job
    from autoprune.spec import JobSpec

    ray.shutdown()
    marker = tmp_path / "crashed-once"
    monkeypatch.setenv("AUTOPRUNE_TEST_CRASH_ONCE", str(marker))  # the first trial's worker dies
    monkeypatch.setenv("AUTOPRUNE_CACHE", str(assets["root"] / "cache"))
    monkeypatch.setenv("AUTOPRUNE_HOME", str(assets["root"] / "home"))
    spec = JobSpec.load(_spec(assets, tmp_path, "crash", kind="null"))
    try:
        with Store(f"sqlite:///{tmp_path / 'crash.db'}") as store:
            job_id = store.create_job(spec.to_json(), spec.name)
            store.claim_job("me", heartbeat_timeout_s=60, job_id=job_id)
            run = run_job(store, job_id, "me", executor="ray", quiet=True)
            trials = store.trials(job_id)
    finally:
        ray.shutdown()
    assert marker.exists()  # a worker really died
    assert run.state == "completed"
    evaluated = [t for t in trials if not t.extra.get("infeasible")]
    assert len(evaluated) == 8 and all(t.state in ("complete", "pruned") for t in evaluated)
