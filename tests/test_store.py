"""The trials database, on SQLite and on PostgreSQL (``AUTOPRUNE_TEST_PG``).

Every behavioural test runs on both backends through the ``url`` fixture. On PostgreSQL the
session gets its own freshly created database (dropped at the end) and each test starts
from an empty one, so tests never see each other's rows and never touch the server's
``test`` database. PostgreSQL tests skip, with the reason, only when no server answers.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from autoprune.errors import (
    DatabaseURLError,
    DuplicateError,
    NotFoundError,
    StoreError,
    UserInputError,
)
from autoprune.store import Store, resolve_url
from autoprune.store.engine import ENV_VAR, display, normalize_url
from autoprune.store.migrate import head_revision
from autoprune.store.schema import Base
from conftest import PG_TABLES
from conftest import empty_pg as _empty_pg

TABLES = PG_TABLES
ARCH = '[{"bits":32,"ffn":1.0,"heads":12,"keep":true,"pattern":"dense","sparsity":0.0}]'


# ---- fixtures ------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'trials.db'}"
    pg_url: str = request.getfixturevalue("pg_database")
    _empty_pg(pg_url)
    return pg_url


@pytest.fixture()
def store(url: str) -> Iterator[Store]:
    with Store(url) as opened:
        yield opened


def _arch(i: int) -> tuple[str, str]:
    return ARCH.replace("12", str(i)), f"hash{i:04d}"


# ---- schema and migrations -----------------------------------------------------------------
def test_first_use_creates_the_schema_at_head_matching_the_models(url: str) -> None:
    with Store(url) as store:
        assert store.revision == head_revision() == "0001"
        names = set(inspect(store.engine).get_table_names())
        assert set(TABLES) <= names
        with store.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            # The migration creates exactly what the ORM models declare.
            assert compare_metadata(context, Base.metadata) == []


def test_db_upgrade_from_empty_is_idempotent_and_keeps_rows(url: str) -> None:
    with Store(url, migrate=False) as store:
        assert store.revision is None
        assert store.upgrade() == "0001"
        job_id = store.create_job("{}", "kept")
        assert store.upgrade() == "0001"
        assert store.get_job(job_id).name == "kept"
    with Store(url) as again:  # reopening does not migrate again or lose anything
        assert [job.id for job in again.list_jobs()] == [job_id]


def test_a_schema_newer_than_the_code_is_refused(url: str) -> None:
    with Store(url) as store, store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StoreError, match="newer"):
        Store(url)


def test_concurrent_first_use_migrates_once(url: str) -> None:
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            Store(url).close()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with Store(url) as store:
        assert store.revision == "0001"


# ---- jobs ----------------------------------------------------------------------------------
def test_job_lifecycle(store: Store) -> None:
    first = store.create_job('{"name": "a"}', "a")
    second = store.create_job('{"name": "b"}', "b")
    job = store.get_job(first)
    assert (job.name, job.spec_json, job.state, job.owner) == ("a", '{"name": "a"}', "queued", None)
    assert job.created_at.tzinfo is not None and not job.cancel_requested
    assert [j.id for j in store.list_jobs()] == [first, second]

    claimed = store.claim_job("svc-1", heartbeat_timeout_s=60)
    assert claimed is not None and claimed.id == first  # oldest first
    assert (claimed.state, claimed.owner) == ("running", "svc-1")
    assert claimed.heartbeat_at is not None and claimed.started_at is not None
    assert [j.id for j in store.list_jobs(state="queued")] == [second]
    assert store.heartbeat(first, "svc-1") is True
    assert store.get_job(first).heartbeat_at >= claimed.heartbeat_at

    done = store.finish_job(first, "completed")
    assert done.state == "completed" and done.finished_at is not None
    assert store.finish_job(first, "completed").state == "completed"  # a repeat is a no-op
    with pytest.raises(StoreError, match="already ended completed"):
        store.finish_job(first, "failed")
    with pytest.raises(StoreError, match="not a final job state"):
        store.finish_job(second, "running")
    assert store.heartbeat(first, "svc-1") is False  # not running any more


def test_claim_returns_none_when_nothing_is_claimable_and_can_target_one_job(store: Store) -> None:
    assert store.claim_job("svc", heartbeat_timeout_s=60) is None
    first, second = store.create_job("{}", "a"), store.create_job("{}", "b")
    claimed = store.claim_job("svc", heartbeat_timeout_s=60, job_id=second)
    assert claimed is not None and claimed.id == second
    assert store.claim_job("other", heartbeat_timeout_s=60, job_id=second) is None
    assert store.get_job(first).state == "queued"
    with pytest.raises(NotFoundError):
        store.claim_job("svc", heartbeat_timeout_s=60, job_id=999)


def test_an_expired_heartbeat_lets_another_owner_claim_the_running_job(store: Store) -> None:
    job_id = store.create_job("{}", "resumable")
    assert store.claim_job("dead", heartbeat_timeout_s=60) is not None
    assert store.claim_job("alive", heartbeat_timeout_s=60) is None  # heartbeat still fresh
    time.sleep(0.05)
    resumed = store.claim_job("alive", heartbeat_timeout_s=0.01)
    assert resumed is not None and resumed.id == job_id
    assert resumed.owner == "alive" and "dead" in (resumed.reason or "")
    # The old owner finds out at its next heartbeat and must stop.
    assert store.heartbeat(job_id, "dead") is False
    assert store.heartbeat(job_id, "alive") is True
    with pytest.raises(StoreError, match="belongs to alive"):
        store.finish_job(job_id, "failed", owner="dead")


def test_requeue_gives_a_running_job_back_to_the_queue(store: Store) -> None:
    job_id = store.create_job("{}", "a")
    store.claim_job("svc", heartbeat_timeout_s=60)
    with pytest.raises(StoreError, match="only its running owner"):
        store.requeue_job(job_id, "someone-else")
    requeued = store.requeue_job(job_id, "svc")
    assert (requeued.state, requeued.owner, requeued.heartbeat_at) == ("queued", None, None)
    again = store.claim_job("svc-2", heartbeat_timeout_s=60)
    assert again is not None and again.id == job_id and again.owner == "svc-2"


def test_cancel_semantics(store: Store) -> None:
    queued = store.create_job("{}", "queued")
    cancelled = store.request_cancel(queued)
    assert cancelled.state == "cancelled" and cancelled.finished_at is not None
    assert store.claim_job("svc", heartbeat_timeout_s=60) is None  # never claimed
    assert store.request_cancel(queued).state == "cancelled"  # idempotent

    running = store.create_job("{}", "running")
    store.claim_job("svc", heartbeat_timeout_s=60)
    flagged = store.request_cancel(running)
    # The runner notices the flag before its next trial and ends the job itself.
    assert flagged.state == "running" and flagged.cancel_requested
    assert store.finish_job(running, "cancelled", reason="cancelled").state == "cancelled"

    done = store.create_job("{}", "done")
    store.claim_job("svc", heartbeat_timeout_s=60)
    store.finish_job(done, "completed")
    with pytest.raises(StoreError, match="nothing to cancel"):
        store.request_cancel(done)
    with pytest.raises(NotFoundError):
        store.request_cancel(999)


def test_an_orphaned_job_with_a_cancel_request_is_cancelled_not_resumed(store: Store) -> None:
    job_id = store.create_job("{}", "orphan")
    store.claim_job("dead", heartbeat_timeout_s=60)
    store.request_cancel(job_id)
    time.sleep(0.05)
    assert store.claim_job("alive", heartbeat_timeout_s=0.01) is None
    assert store.get_job(job_id).state == "cancelled"


def test_job_summaries_count_trials_and_find_the_best_metric(store: Store) -> None:
    job_id = store.create_job("{}", "a")
    empty = store.create_job("{}", "b")
    for i, (state, value) in enumerate([("complete", 0.8), ("complete", 0.9), ("failed", None),
                                        ("pruned", 0.95), ("waiting", None)]):
        arch, digest = _arch(i)
        store.add_trial(job_id, arch, digest, state=state, metric_value=value,
                        metric_name="accuracy")
    summaries = {s.job.id: s for s in store.job_summaries()}
    summary = summaries[job_id]
    assert summary.counts == {"complete": 2, "failed": 1, "pruned": 1, "waiting": 1}
    assert summary.total == 5
    assert summary.best_metric == pytest.approx(0.9)  # pruned trials stopped early: not best
    assert summary.metric_name == "accuracy"
    assert (summaries[empty].total, summaries[empty].best_metric) == (0, None)
    assert [s.job.id for s in store.job_summaries([empty])] == [empty]
    assert (store.count_trials(job_id), store.count_trials(empty)) == (5, 0)
    with pytest.raises(NotFoundError):
        store.count_trials(empty + 1)


# ---- trials --------------------------------------------------------------------------------
def test_trials_are_numbered_per_job_and_keep_every_field(store: Store) -> None:
    job_id = store.create_job("{}", "a")
    other = store.create_job("{}", "b")
    numbers = [store.add_trial(job_id, *_arch(i)).number for i in range(3)]
    assert numbers == [0, 1, 2]
    assert store.add_trial(other, *_arch(0)).number == 0

    trial = store.add_trial(job_id, *_arch(9), predicted_latency_ms=4.5, fidelity=20,
                            size_bytes=12_345_678_901, metric_name="accuracy",
                            extra={"batch": 1, "parameters": 10})
    assert (trial.number, trial.state, trial.attempt) == (3, "waiting", 0)
    assert trial.architecture_json == _arch(9)[0] and trial.size_bytes == 12_345_678_901
    assert trial.started_at is None and trial.finished_at is None

    running = store.update_trial(job_id, 3, state="running", worker="w1")
    assert running.started_at is not None and running.worker == "w1"
    done = store.update_trial(job_id, 3, state="complete", metric_value=0.91, reward=0.91,
                              measured_latency_ms=4.4, error=None, extra={"seconds": 1.5})
    assert done.finished_at is not None and done.finished_at >= running.started_at
    assert done.extra == {"batch": 1, "parameters": 10, "seconds": 1.5}  # merged, not replaced
    assert store.get_trial(job_id, 3) == done
    assert [t.number for t in store.trials(job_id)] == [0, 1, 2, 3]
    assert [t.number for t in store.trials(job_id, states=["complete"])] == [3]

    infeasible = store.add_trial(job_id, *_arch(10), state="pruned", finished=True,
                                 error="infeasible")
    assert infeasible.finished_at is not None and infeasible.error == "infeasible"


def test_a_duplicate_architecture_in_a_job_is_refused(store: Store) -> None:
    job_id = store.create_job("{}", "a")
    other = store.create_job("{}", "b")
    store.add_trial(job_id, *_arch(1))
    with pytest.raises(DuplicateError, match="hash0001"):
        store.add_trial(job_id, *_arch(1))
    assert len(store.trials(job_id)) == 1
    assert store.add_trial(other, *_arch(1)).number == 0  # other jobs may repeat it


def test_add_trials_numbers_a_batch_in_one_transaction_all_or_nothing(store: Store) -> None:
    job = store.create_job("{}", "batch")
    first = store.add_trials(job, [dict(zip(("architecture_json", "architecture_hash"), _arch(i)),
                                        predicted_latency_ms=float(i)) for i in range(3)])
    assert [t.number for t in first] == [0, 1, 2]
    assert [t.predicted_latency_ms for t in first] == [0.0, 1.0, 2.0]
    clash = [dict(zip(("architecture_json", "architecture_hash"), _arch(i))) for i in (7, 1)]
    with pytest.raises(DuplicateError, match="hash0001"):
        store.add_trials(job, clash)
    twice = [dict(zip(("architecture_json", "architecture_hash"), _arch(8)))] * 2
    with pytest.raises(DuplicateError, match="twice"):
        store.add_trials(job, twice)
    assert [t.architecture_hash for t in store.trials(job)] == ["hash0000", "hash0001", "hash0002"]
    later = store.add_trial(job, *_arch(9))
    assert later.number == 3


def test_trial_state_rules(store: Store) -> None:
    job_id = store.create_job("{}", "a")
    store.add_trial(job_id, *_arch(0), state="running")
    store.update_trial(job_id, 0, state="complete", metric_value=0.5)
    with pytest.raises(StoreError, match="cannot become running"):
        store.update_trial(job_id, 0, state="running")
    # A finished trial may still gain fields (e.g. the latency re-measured at export).
    assert store.update_trial(job_id, 0, measured_latency_ms=3.0).measured_latency_ms == 3.0
    with pytest.raises(StoreError, match="not a trial state"):
        store.update_trial(job_id, 0, state="infeasible")
    with pytest.raises(StoreError, match="unknown trial field"):
        store.update_trial(job_id, 0, colour="red")
    with pytest.raises(StoreError, match="not a trial state"):
        store.add_trial(job_id, *_arch(1), state="done")


def test_reset_running_trials_after_a_crash(store: Store) -> None:
    job_id = store.create_job("{}", "a")
    for i, state in enumerate(["running", "running", "complete", "waiting"]):
        store.add_trial(job_id, *_arch(i), state=state, worker="w")
    assert store.reset_running_trials(job_id) == 2
    trials = store.trials(job_id)
    assert [t.state for t in trials] == ["waiting", "waiting", "complete", "waiting"]
    assert [t.attempt for t in trials] == [1, 1, 0, 0]
    assert trials[0].started_at is None and trials[0].worker is None
    assert store.reset_running_trials(job_id) == 0


def test_trial_numbers_stay_unique_under_concurrent_writers(url: str) -> None:
    with Store(url) as setup:
        job_id = setup.create_job("{}", "a")
    errors: list[BaseException] = []

    def add(writer: int) -> None:
        try:
            with Store(url) as own:  # its own engine: separate connections
                for i in range(8):
                    own.add_trial(job_id, *_arch(writer * 100 + i))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with Store(url) as check:
        assert [t.number for t in check.trials(job_id)] == list(range(32))


def test_missing_rows_raise_not_found(store: Store) -> None:
    job_id = store.create_job("{}", "a")
    for call in (lambda: store.get_job(999), lambda: store.trials(999),
                 lambda: store.heartbeat(999, "x"), lambda: store.get_trial(job_id, 0),
                 lambda: store.update_trial(job_id, 5, state="running"),
                 lambda: store.add_trial(999, *_arch(0)), lambda: store.reset_running_trials(999)):
        with pytest.raises(NotFoundError) as caught:
            call()
        assert isinstance(caught.value, UserInputError)  # the CLI exits 2 on these


def test_records_are_frozen_copies(store: Store) -> None:
    job_id = store.create_job("{}", "a")
    trial = store.add_trial(job_id, *_arch(0), extra={"a": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        trial.state = "running"  # type: ignore[misc]
    trial.extra["a"] = 2
    assert store.get_trial(job_id, 0).extra == {"a": 1}
    as_dict = store.get_job(job_id).to_dict()
    assert isinstance(as_dict["created_at"], str) and as_dict["created_at"].endswith("+00:00")


# ---- devices, latency, artifacts -----------------------------------------------------------
def test_devices_and_latency_measurements(store: Store) -> None:
    fingerprint = {"cpu": "Xeon", "cores": 2, "torch": "2.13.0"}
    device = store.add_device(fingerprint)
    assert store.add_device(dict(reversed(list(fingerprint.items())))) == device  # same machine
    assert store.add_device({**fingerprint, "cores": 4}) != device
    assert store.get_device(device).fingerprint == fingerprint

    store.add_latency_measurement(device, "torch", 1, 128, 2.5, operator="attention:h=6:bits=8",
                                  p10_ms=2.4, p90_ms=2.7, rounds=15, threads=2)
    store.add_latency_measurement(device, "torch", 1, 128, 9.0, architecture_json=ARCH,
                                  architecture_hash="abc", rounds=20, extra={"samples": [9.0]})
    store.add_latency_measurement(device, "onnxruntime", 1, 128, 2.0, operator="ffn:n=768:bits=32")
    assert len(store.latency_measurements(device)) == 3
    ops = store.latency_measurements(device, backend="torch", kind="operator")
    assert [(m.operator, m.median_ms, m.p10_ms, m.p90_ms, m.rounds, m.threads) for m in ops] == [
        ("attention:h=6:bits=8", 2.5, 2.4, 2.7, 15, 2)]
    whole = store.latency_measurements(device, architecture_hash="abc")
    assert whole[0].architecture_json == ARCH and whole[0].extra == {"samples": [9.0]}
    with pytest.raises(StoreError, match="one of them"):
        store.add_latency_measurement(device, "torch", 1, 128, 1.0)
    with pytest.raises(NotFoundError):
        store.add_latency_measurement(999, "torch", 1, 128, 1.0, operator="x")


def test_artifacts(store: Store) -> None:
    job_id = store.create_job("{}", "a")
    store.add_trial(job_id, *_arch(0))
    store.add_artifact(job_id, "teacher", "/cache/teacher", content_hash="t" * 64)
    store.add_artifact(job_id, "checkpoint", "/runs/1/0", trial_number=0, extra={"steps": 20})
    kinds = [(a.kind, a.trial_number) for a in store.artifacts(job_id)]
    assert kinds == [("teacher", None), ("checkpoint", 0)]
    assert store.artifacts(content_hash="t" * 64)[0].uri == "/cache/teacher"
    assert store.artifacts(job_id, trial_number=0)[0].extra == {"steps": 20}
    with pytest.raises(NotFoundError):
        store.add_artifact(job_id, "export", "/x", trial_number=7)


# ---- four processes claiming twenty jobs ---------------------------------------------------
def _claim_all(url: str, owner: str, ready: "multiprocessing.Queue[str]",
               start: "multiprocessing.synchronize.Event", results: "multiprocessing.Queue[list]") -> None:
    """A service process: claim until the queue is empty (runs in a spawned process)."""
    with Store(url) as store:
        ready.put(owner)
        start.wait(30)
        claimed: list[int] = []
        while (job := store.claim_job(owner, heartbeat_timeout_s=3600)) is not None:
            claimed.append(job.id)
        results.put([owner, claimed])


def test_four_processes_claim_twenty_jobs_each_exactly_once(url: str) -> None:
    with Store(url) as store:
        job_ids = [store.create_job("{}", f"job-{i}") for i in range(20)]
    context = multiprocessing.get_context("spawn")
    ready, results, start = context.Queue(), context.Queue(), context.Event()
    owners = [f"svc-{i}" for i in range(4)]
    processes = [context.Process(target=_claim_all, args=(url, owner, ready, start, results))
                 for owner in owners]
    for process in processes:
        process.start()
    try:
        for _ in owners:  # all connected: the claims really race
            ready.get(timeout=60)
        start.set()
        claims = dict(results.get(timeout=60) for _ in owners)
    finally:
        for process in processes:
            process.join(timeout=30)
    assert all(process.exitcode == 0 for process in processes)
    every = [job_id for claimed in claims.values() for job_id in claimed]
    assert sorted(every) == job_ids  # each job claimed exactly once
    with Store(url) as store:
        for owner, claimed in claims.items():
            for job_id in claimed:
                job = store.get_job(job_id)
                assert (job.state, job.owner) == ("running", owner)


# ---- URLs ----------------------------------------------------------------------------------
def test_url_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_url(None).endswith("/.autoprune/autoprune.db")
    monkeypatch.setenv(ENV_VAR, "sqlite:////tmp/from-env.db")
    assert resolve_url(None) == "sqlite:////tmp/from-env.db"
    assert resolve_url("sqlite:////tmp/explicit.db") == "sqlite:////tmp/explicit.db"


def test_plain_postgresql_urls_use_psycopg3() -> None:
    for text_url in ("postgresql://u:secret@h:5432/db", "postgres://u:secret@h:5432/db"):
        url = normalize_url(text_url)
        assert url.drivername == "postgresql+psycopg" and url.database == "db"
        assert "secret" not in display(url)


def test_sqlite_default_directory_is_created(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "trials.db"
    with Store(f"sqlite:///{path}") as store:
        store.create_job("{}", "a")
    assert path.is_file()


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("not a url", "not a database URL"),
        ("mysql://u@h/db", "unsupported database 'mysql'"),
        ("postgresql://postgres@127.0.0.1:1/none", "cannot open the database"),
        ("sqlite:///{tmp}", "is a directory"),
        ("sqlite:///{tmp}/not-sqlite.db", "cannot open the database"),
    ],
)
def test_bad_urls_raise_one_line_naming_the_url(bad: str, reason: str, tmp_path: Path) -> None:
    (tmp_path / "not-sqlite.db").write_text("this is not a database\n" * 100)
    bad = bad.format(tmp=tmp_path)
    with pytest.raises(DatabaseURLError) as caught:
        Store(bad)
    message = str(caught.value)
    assert reason in message and "\n" not in message
    assert bad.split("://")[-1].split("@")[-1] in message  # names the URL it could not open


def test_an_in_memory_sqlite_database_works_for_quick_experiments() -> None:
    with Store("sqlite://") as store:
        job_id = store.create_job("{}", "scratch")
        store.add_trial(job_id, *_arch(0))
        assert [t.number for t in store.trials(job_id)] == [0]
