"""The :class:`Store` facade: every read and write of the trials database goes through here.

Rules the rest of autoprune relies on:

* Methods return frozen records (:mod:`autoprune.store.records`), never ORM objects.
* Each method is one short transaction. Transactions that write begin with the write lock
  on SQLite (``BEGIN IMMEDIATE``) and lock the rows they read on PostgreSQL
  (``SELECT ... FOR UPDATE``), so read-modify-write sequences (claiming a job, numbering a
  trial) are atomic across processes on both.
* Wrong state transitions raise :class:`~autoprune.errors.StoreError`; missing jobs/trials
  raise :class:`~autoprune.errors.NotFoundError` (a user error: the CLI exits 2).
* Timestamps are aware UTC, taken from this process's clock (heartbeat expiry compares
  clocks of different hosts: keep the timeout well above their skew).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from autoprune.errors import DuplicateError, NotFoundError, StoreError
from autoprune.store.engine import WRITE_OPTION, display, open_engine, resolve_url
from autoprune.store.migrate import current_revision, ensure_schema, upgrade
from autoprune.store.records import (
    ArtifactRecord,
    DeviceRecord,
    JobRecord,
    JobSummary,
    LatencyMeasurementRecord,
    TrialRecord,
)
from autoprune.store.schema import (
    JOB_FINAL_STATES,
    JOB_STATES,
    TRIAL_FINAL_STATES,
    TRIAL_STATES,
    Artifact,
    Device,
    Job,
    LatencyMeasurement,
    Trial,
    utcnow,
)

# Trial columns callers may set through add_trial / update_trial.
TRIAL_FIELDS: frozenset[str] = frozenset({
    "state", "fidelity", "predicted_latency_ms", "measured_latency_ms", "metric_name",
    "metric_value", "size_bytes", "reward", "worker", "attempt", "error", "extra",
    "started_at", "finished_at",
})
# Flags that stamp a timestamp with "now" (the runner does not carry clocks around).
TRIAL_FLAGS: frozenset[str] = frozenset({"started", "finished"})


def fingerprint_hash(fingerprint: dict[str, Any]) -> str:
    """A device's identity: SHA-256 of its fingerprint's canonical JSON."""
    canonical = json.dumps(fingerprint, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class Store:
    """Jobs, trials, devices, latency measurements and artifacts in one database.

    ``url`` is resolved by :func:`autoprune.store.engine.resolve_url` (explicit, else
    ``$AUTOPRUNE_DB``, else ``~/.autoprune/autoprune.db``). With ``migrate`` (the default)
    a fresh or older database is brought to the current schema on open.
    """

    def __init__(self, url: str | None = None, *, migrate: bool = True) -> None:
        self.engine = open_engine(resolve_url(url))
        self.url = display(self.engine.url)
        self.dialect = self.engine.dialect.name
        if migrate:
            try:
                ensure_schema(self.engine)
            except BaseException:
                self.engine.dispose()
                raise
        self._reader = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = sessionmaker(
            self.engine.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False
        )

    # ---- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def upgrade(self) -> str:
        """Migrate to the newest schema (idempotent); returns the revision now in place."""
        return upgrade(self.engine)

    @property
    def revision(self) -> str | None:
        return current_revision(self.engine)

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._reader() as session, session.begin():
            yield session

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with self._writer() as session, session.begin():
            yield session

    # ---- jobs --------------------------------------------------------------------------
    def create_job(self, spec_json: str, name: str) -> int:
        """Queue a job; returns its id."""
        with self._write() as session:
            job = Job(name=name, spec_json=spec_json, state="queued", cancel_requested=False)
            session.add(job)
            session.flush()
            return job.id

    def get_job(self, job_id: int) -> JobRecord:
        with self._read() as session:
            return JobRecord.from_row(self._job(session, job_id))

    def list_jobs(self, state: str | None = None) -> list[JobRecord]:
        """Every job (oldest first), or those in ``state``."""
        query = select(Job).order_by(Job.id)
        if state is not None:
            _check_state(state, JOB_STATES, "job")
            query = query.where(Job.state == state)
        with self._read() as session:
            return [JobRecord.from_row(job) for job in session.scalars(query)]

    def job_summaries(self, job_ids: Sequence[int] | None = None) -> list[JobSummary]:
        """Jobs with trial counts per state and the best complete trial's metric."""
        jobs_query = select(Job).order_by(Job.id)
        counts_query = select(Trial.job_id, Trial.state, func.count()).group_by(
            Trial.job_id, Trial.state
        )
        best_query = (
            select(Trial.job_id, func.max(Trial.metric_value), func.max(Trial.metric_name))
            .where(Trial.state == "complete")
            .group_by(Trial.job_id)
        )
        if job_ids is not None:
            jobs_query = jobs_query.where(Job.id.in_(job_ids))
            counts_query = counts_query.where(Trial.job_id.in_(job_ids))
            best_query = best_query.where(Trial.job_id.in_(job_ids))
        with self._read() as session:
            jobs = [JobRecord.from_row(job) for job in session.scalars(jobs_query)]
            counts: dict[int, dict[str, int]] = {}
            for job_id, state, count in session.execute(counts_query):
                counts.setdefault(job_id, {})[state] = count
            best = {row[0]: (row[1], row[2]) for row in session.execute(best_query)}
        return [
            JobSummary(job, counts.get(job.id, {}), *best.get(job.id, (None, None)))
            for job in jobs
        ]

    def claim_job(
        self, owner: str, heartbeat_timeout_s: float, job_id: int | None = None
    ) -> JobRecord | None:
        """Atomically take the oldest claimable job (or ``job_id`` only), or None.

        Claimable: queued, or running with a heartbeat older than ``heartbeat_timeout_s``
        (its owner died: the claimer resumes it). An orphaned job whose cancel was requested
        is finished as cancelled instead of being resumed.
        """
        now = utcnow()
        orphaned = and_(
            Job.state == "running",
            or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < now - timedelta(seconds=heartbeat_timeout_s)),
        )
        with self._write() as session:
            # Lock before updating (skipping rows another claimer holds): two claimers
            # updating the same orphans in different orders could deadlock on PostgreSQL.
            doomed = session.scalars(
                select(Job.id)
                .where(orphaned, Job.cancel_requested.is_(True))
                .with_for_update(skip_locked=True)
            ).all()
            if doomed:
                session.execute(
                    update(Job)
                    .where(Job.id.in_(doomed))
                    .values(state="cancelled", finished_at=now,
                            reason="cancelled (its runner stopped before noticing)")
                    .execution_options(synchronize_session=False)
                )
            query = select(Job).where(
                or_(Job.state == "queued", and_(orphaned, Job.cancel_requested.is_(False)))
            )
            if job_id is not None:
                self._job(session, job_id)
                query = query.where(Job.id == job_id)
            # SKIP LOCKED: concurrent claimers pass over each other's rows instead of queueing
            # behind them (rendered on PostgreSQL; SQLite holds the database write lock).
            query = query.order_by(Job.id).limit(1).with_for_update(skip_locked=True)
            job = session.scalars(query).first()
            if job is None:
                return None
            if job.state == "running":
                job.reason = f"resumed by {owner} (heartbeat of {job.owner} expired)"
            job.state, job.owner, job.heartbeat_at = "running", owner, now
            job.started_at = job.started_at or now
            session.flush()
            return JobRecord.from_row(job)

    def heartbeat(self, job_id: int, owner: str) -> bool:
        """Refresh a running job's heartbeat; False if ``owner`` no longer runs it."""
        with self._write() as session:
            result = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.owner == owner, Job.state == "running")
                .values(heartbeat_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                return True
            self._job(session, job_id)
            return False

    def finish_job(
        self, job_id: int, state: str, reason: str | None = None, owner: str | None = None
    ) -> JobRecord:
        """End a queued or running job as completed, failed or cancelled.

        Finishing a job again in the state it already ended in is a no-op (a cancel noticed
        twice); any other change to a finished job is refused. With ``owner``, the job must
        still belong to it.
        """
        _check_state(state, JOB_FINAL_STATES, "final job")
        with self._write() as session:
            job = self._job(session, job_id, lock=True)
            if job.state == state:
                return JobRecord.from_row(job)
            if job.state in JOB_FINAL_STATES:
                raise StoreError(f"job {job_id} already ended {job.state}; it cannot become {state}")
            if owner is not None and job.owner != owner:
                raise StoreError(f"job {job_id} belongs to {job.owner}, not {owner}")
            job.state, job.finished_at = state, utcnow()
            if reason is not None:
                job.reason = reason
            session.flush()
            return JobRecord.from_row(job)

    def requeue_job(self, job_id: int, owner: str) -> JobRecord:
        """Give a running job back to the queue (its owner is stopping cleanly)."""
        with self._write() as session:
            job = self._job(session, job_id, lock=True)
            if job.state != "running" or job.owner != owner:
                raise StoreError(
                    f"job {job_id} is {job.state} (owner {job.owner}); only its running owner "
                    "can requeue it"
                )
            job.state, job.owner, job.heartbeat_at = "queued", None, None
            job.reason = f"requeued by {owner}"
            session.flush()
            return JobRecord.from_row(job)

    def request_cancel(self, job_id: int) -> JobRecord:
        """Cancel a queued job at once; ask a running job's runner to stop (next trial).

        Cancelling a cancelled job is a no-op; a completed or failed job cannot be cancelled.
        """
        with self._write() as session:
            job = self._job(session, job_id, lock=True)
            if job.state in ("completed", "failed"):
                raise StoreError(f"job {job_id} already ended {job.state}; nothing to cancel")
            if job.state == "queued":
                job.state, job.finished_at, job.reason = "cancelled", utcnow(), "cancelled by user"
            job.cancel_requested = True  # a running job's runner checks this between trials
            session.flush()
            return JobRecord.from_row(job)

    # ---- trials ------------------------------------------------------------------------
    def add_trial(
        self,
        job_id: int,
        architecture_json: str,
        architecture_hash: str,
        state: str = "waiting",
        predicted_latency_ms: float | None = None,
        fidelity: int | None = None,
        **fields: Any,
    ) -> TrialRecord:
        """Record a new trial numbered max+1 (from 0) within its job.

        ``fields`` are trial columns (see ``TRIAL_FIELDS``) plus ``started=True`` /
        ``finished=True`` to stamp those times now. A second trial with the same
        architecture hash in one job raises :class:`DuplicateError`.
        """
        return self.add_trials(job_id, [dict(
            architecture_json=architecture_json, architecture_hash=architecture_hash,
            state=state, predicted_latency_ms=predicted_latency_ms, fidelity=fidelity, **fields,
        )])[0]

    def add_trials(self, job_id: int, trials: Sequence[dict[str, Any]]) -> list[TrialRecord]:
        """Record several new trials in one transaction, numbered in the order given.

        Each item has ``architecture_json`` and ``architecture_hash`` and, optionally, the
        arguments of :meth:`add_trial`. All or none are stored: one duplicate architecture
        (in the job, or twice in ``trials``) raises :class:`DuplicateError` and stores nothing.
        """
        prepared = []
        for item in trials:
            item = dict(item)
            architecture_json = item.pop("architecture_json")
            architecture_hash = item.pop("architecture_hash")
            state = item.pop("state", "waiting")
            predicted = item.pop("predicted_latency_ms", None)
            fidelity = item.pop("fidelity", None)
            _check_state(state, TRIAL_STATES, "trial")
            values = _trial_values(item, new_state=state, old_state=None)
            prepared.append((architecture_json, architecture_hash, state, predicted, fidelity, values))
        hashes = [item[1] for item in prepared]
        if len(set(hashes)) != len(hashes):
            raise DuplicateError(f"job {job_id}: the same architecture twice in one insert")
        with self._write() as session:
            # Locking the job row serialises numbering per job on PostgreSQL (SQLite already
            # holds the write lock): max+1 cannot be read twice.
            self._job(session, job_id, lock=True)
            existing = session.execute(
                select(Trial.architecture_hash, Trial.number).where(
                    Trial.job_id == job_id, Trial.architecture_hash.in_(hashes)
                )
            ).first()
            if existing is not None:
                raise DuplicateError(
                    f"job {job_id} already has architecture {existing[0]} (trial {existing[1]})"
                )
            last = session.scalar(select(func.max(Trial.number)).where(Trial.job_id == job_id))
            number = 0 if last is None else last + 1
            rows = []
            for architecture_json, architecture_hash, state, predicted, fidelity, values in prepared:
                trial = Trial(
                    job_id=job_id,
                    number=number,
                    architecture_json=architecture_json,
                    architecture_hash=architecture_hash,
                    state=state,
                    predicted_latency_ms=predicted,
                    fidelity=fidelity,
                    attempt=0,
                    extra={},
                )
                for name, value in values.items():
                    setattr(trial, name, value)
                session.add(trial)
                rows.append(trial)
                number += 1
            try:
                session.flush()
            except IntegrityError as exc:  # a constraint we did not pre-check
                raise DuplicateError(f"job {job_id}: trial refused ({exc.orig})") from None
            return [TrialRecord.from_row(trial) for trial in rows]

    def update_trial(self, job_id: int, number: int, **fields: Any) -> TrialRecord:
        """Set trial columns. ``extra`` is merged key by key into the stored ``extra``.

        A trial that reached complete, pruned or failed keeps that state (its other columns,
        e.g. a re-measured latency, may still change). Entering ``running`` stamps
        ``started_at``, entering a final state stamps ``finished_at``.
        """
        with self._write() as session:
            trial = self._trial(session, job_id, number, lock=True)
            new_state = fields.get("state", trial.state)
            _check_state(new_state, TRIAL_STATES, "trial")
            if trial.state in TRIAL_FINAL_STATES and new_state != trial.state:
                raise StoreError(
                    f"trial {number} of job {job_id} is {trial.state}; it cannot become {new_state}"
                )
            values = _trial_values(fields, new_state=new_state, old_state=trial.state)
            if "extra" in values:
                values["extra"] = {**(trial.extra or {}), **(values["extra"] or {})}
            for name, value in values.items():
                setattr(trial, name, value)
            session.flush()
            return TrialRecord.from_row(trial)

    def get_trial(self, job_id: int, number: int) -> TrialRecord:
        with self._read() as session:
            return TrialRecord.from_row(self._trial(session, job_id, number))

    def trials(self, job_id: int, states: Iterable[str] | None = None) -> list[TrialRecord]:
        """A job's trials ordered by number, optionally only those in ``states``."""
        query = select(Trial).where(Trial.job_id == job_id).order_by(Trial.number)
        if states is not None:
            wanted = list(states)
            for state in wanted:
                _check_state(state, TRIAL_STATES, "trial")
            query = query.where(Trial.state.in_(wanted))
        with self._read() as session:
            self._job(session, job_id)
            return [TrialRecord.from_row(trial) for trial in session.scalars(query)]

    def count_trials(self, job_id: int) -> int:
        """How many trials a job has, in any state (one COUNT query, no rows read)."""
        with self._read() as session:
            self._job(session, job_id)
            return int(session.scalar(select(func.count()).select_from(Trial)
                                      .where(Trial.job_id == job_id)) or 0)

    def reset_running_trials(self, job_id: int) -> int:
        """Put trials left running by a dead runner back to waiting (attempt + 1)."""
        with self._write() as session:
            self._job(session, job_id, lock=True)
            result = session.execute(
                update(Trial)
                .where(Trial.job_id == job_id, Trial.state == "running")
                .values(state="waiting", attempt=Trial.attempt + 1, started_at=None, worker=None)
                .execution_options(synchronize_session=False)
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

    # ---- devices and latency -----------------------------------------------------------
    def add_device(self, fingerprint: dict[str, Any]) -> int:
        """The id of the device with this fingerprint, created if new."""
        digest = fingerprint_hash(fingerprint)
        query = select(Device.id).where(Device.fingerprint_hash == digest)
        with self._write() as session:
            existing = session.scalar(query)
            if existing is not None:
                return existing
            try:
                with session.begin_nested():  # another process may insert it first (PostgreSQL)
                    device = Device(fingerprint_hash=digest,
                                    fingerprint=json.loads(json.dumps(fingerprint, default=str)))
                    session.add(device)
                return device.id
            except IntegrityError:
                found = session.scalar(query)
                assert found is not None
                return found

    def get_device(self, device_id: int) -> DeviceRecord:
        with self._read() as session:
            device = session.get(Device, device_id)
            if device is None:
                raise NotFoundError(f"no device {device_id}")
            return DeviceRecord.from_row(device)

    def devices(self) -> list[DeviceRecord]:
        with self._read() as session:
            return [DeviceRecord.from_row(d) for d in session.scalars(select(Device).order_by(Device.id))]

    def add_latency_measurement(
        self,
        device_id: int,
        backend: str,
        batch: int,
        seq_len: int,
        median_ms: float,
        *,
        threads: int | None = None,
        architecture_json: str | None = None,
        architecture_hash: str | None = None,
        operator: str | None = None,
        p10_ms: float | None = None,
        p90_ms: float | None = None,
        rounds: int = 1,
        extra: dict[str, Any] | None = None,
    ) -> LatencyMeasurementRecord:
        """Record one timing of an architecture (by hash) or an operator key, not both."""
        if (architecture_hash is None) == (operator is None):
            raise StoreError("a latency measurement is of an architecture or an operator (one of them)")
        with self._write() as session:
            if session.get(Device, device_id) is None:
                raise NotFoundError(f"no device {device_id}")
            row = LatencyMeasurement(
                device_id=device_id, backend=backend, batch=batch, seq_len=seq_len,
                threads=threads, architecture_json=architecture_json,
                architecture_hash=architecture_hash, operator=operator, median_ms=median_ms,
                p10_ms=p10_ms, p90_ms=p90_ms, rounds=rounds, extra=dict(extra or {}),
            )
            session.add(row)
            session.flush()
            return LatencyMeasurementRecord.from_row(row)

    def latency_measurements(
        self,
        device_id: int,
        *,
        backend: str | None = None,
        batch: int | None = None,
        seq_len: int | None = None,
        threads: int | None = None,
        operator: str | None = None,
        architecture_hash: str | None = None,
        kind: str | None = None,
    ) -> list[LatencyMeasurementRecord]:
        """A device's measurements (oldest first), filtered by whatever is given.

        ``kind`` is ``"operator"`` or ``"architecture"`` to keep only that subject.
        """
        query = select(LatencyMeasurement).where(LatencyMeasurement.device_id == device_id)
        for column, value in (
            (LatencyMeasurement.backend, backend), (LatencyMeasurement.batch, batch),
            (LatencyMeasurement.seq_len, seq_len), (LatencyMeasurement.threads, threads),
            (LatencyMeasurement.operator, operator),
            (LatencyMeasurement.architecture_hash, architecture_hash),
        ):
            if value is not None:
                query = query.where(column == value)
        if kind == "operator":
            query = query.where(LatencyMeasurement.operator.is_not(None))
        elif kind == "architecture":
            query = query.where(LatencyMeasurement.architecture_hash.is_not(None))
        elif kind is not None:
            raise StoreError(f"kind {kind!r}: expected 'operator' or 'architecture'")
        with self._read() as session:
            rows = session.scalars(query.order_by(LatencyMeasurement.id))
            return [LatencyMeasurementRecord.from_row(row) for row in rows]

    # ---- artifacts ---------------------------------------------------------------------
    def add_artifact(
        self,
        job_id: int,
        kind: str,
        uri: str,
        *,
        trial_number: int | None = None,
        content_hash: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> ArtifactRecord:
        """Record a file a job produced or used (of one of its trials when ``trial_number``)."""
        with self._write() as session:
            self._job(session, job_id)
            trial_id = None
            if trial_number is not None:
                trial_id = self._trial(session, job_id, trial_number).id
            row = Artifact(job_id=job_id, trial_id=trial_id, kind=kind, uri=uri,
                           content_hash=content_hash, extra=dict(extra or {}))
            session.add(row)
            session.flush()
            return ArtifactRecord.from_row(row, trial_number=trial_number)

    def artifacts(
        self,
        job_id: int | None = None,
        *,
        kind: str | None = None,
        trial_number: int | None = None,
        content_hash: str | None = None,
    ) -> list[ArtifactRecord]:
        """Artifacts (oldest first) filtered by job, kind, trial and content hash."""
        query = select(Artifact, Trial.number).outerjoin(Trial, Artifact.trial_id == Trial.id)
        if job_id is not None:
            query = query.where(Artifact.job_id == job_id)
        if kind is not None:
            query = query.where(Artifact.kind == kind)
        if trial_number is not None:
            query = query.where(Trial.number == trial_number)
        if content_hash is not None:
            query = query.where(Artifact.content_hash == content_hash)
        with self._read() as session:
            return [
                ArtifactRecord.from_row(row, trial_number=number)
                for row, number in session.execute(query.order_by(Artifact.id))
            ]

    # ---- helpers -----------------------------------------------------------------------
    @staticmethod
    def _job(session: Session, job_id: int, lock: bool = False) -> Job:
        job = session.get(Job, job_id, with_for_update=lock or None)
        if job is None:
            raise NotFoundError(f"no job {job_id}")
        return job

    @staticmethod
    def _trial(session: Session, job_id: int, number: int, lock: bool = False) -> Trial:
        query = select(Trial).where(Trial.job_id == job_id, Trial.number == number)
        if lock:
            query = query.with_for_update()
        trial = session.scalars(query).first()
        if trial is None:
            Store._job(session, job_id)
            raise NotFoundError(f"job {job_id} has no trial {number}")
        return trial


def _check_state(state: str, allowed: tuple[str, ...], what: str) -> None:
    if state not in allowed:
        raise StoreError(f"{state!r} is not a {what} state (one of {', '.join(allowed)})")


def _trial_values(fields: dict[str, Any], new_state: str, old_state: str | None) -> dict[str, Any]:
    """Validate trial keyword fields and add the timestamps a state change implies."""
    unknown = set(fields) - TRIAL_FIELDS - TRIAL_FLAGS
    if unknown:
        raise StoreError(f"unknown trial field(s): {', '.join(sorted(unknown))}")
    values = {k: v for k, v in fields.items() if k in TRIAL_FIELDS}
    now: datetime = utcnow()
    if fields.get("started") or (new_state == "running" and old_state != "running"):
        values.setdefault("started_at", now)
    entering_final = new_state in TRIAL_FINAL_STATES and old_state not in TRIAL_FINAL_STATES
    if fields.get("finished") or entering_final:
        values.setdefault("finished_at", now)
    if "extra" in values and values["extra"] is not None:
        values["extra"] = json.loads(json.dumps(values["extra"], default=str))
    elif "extra" in values:
        values["extra"] = {}
    return values
