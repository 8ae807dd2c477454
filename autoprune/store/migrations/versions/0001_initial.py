"""The initial schema: jobs, trials, devices, latency measurements, artifacts.

Revision ID: 0001
Revises:
Create Date: 2026-11-24

Written against plain SQLAlchemy types (not ``autoprune.store.schema``) so that this file
keeps creating the same tables however the models evolve later.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _time(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("spec_json", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=True),
        _time("heartbeat_at"),
        sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        _time("created_at", nullable=False),
        _time("started_at"),
        _time("finished_at"),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'completed', 'failed', 'cancelled')",
            name=op.f("ck_jobs_state"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index(op.f("ix_jobs_state_id"), "jobs", ["state", "id"])

    op.create_table(
        "trials",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("architecture_json", sa.Text(), nullable=False),
        sa.Column("architecture_hash", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("fidelity", sa.Integer(), nullable=True),
        sa.Column("predicted_latency_ms", sa.Float(), nullable=True),
        sa.Column("measured_latency_ms", sa.Float(), nullable=True),
        sa.Column("metric_name", sa.String(length=64), nullable=True),
        sa.Column("metric_value", sa.Float(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("reward", sa.Float(), nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("attempt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("extra", JSON, nullable=False),
        _time("created_at", nullable=False),
        _time("started_at"),
        _time("finished_at"),
        sa.CheckConstraint(
            "state IN ('waiting', 'running', 'complete', 'pruned', 'failed')",
            name=op.f("ck_trials_state"),
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_trials_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trials")),
        sa.UniqueConstraint(
            "job_id", "architecture_hash", name=op.f("uq_trials_job_id_architecture_hash")
        ),
        sa.UniqueConstraint("job_id", "number", name=op.f("uq_trials_job_id_number")),
    )
    op.create_index(op.f("ix_trials_job_id_state"), "trials", ["job_id", "state"])

    op.create_table(
        "devices",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("fingerprint_hash", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", JSON, nullable=False),
        _time("created_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("fingerprint_hash", name=op.f("uq_devices_fingerprint_hash")),
    )

    op.create_table(
        "latency_measurements",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("backend", sa.String(length=32), nullable=False),
        sa.Column("batch", sa.Integer(), nullable=False),
        sa.Column("seq_len", sa.Integer(), nullable=False),
        sa.Column("threads", sa.Integer(), nullable=True),
        sa.Column("architecture_json", sa.Text(), nullable=True),
        sa.Column("architecture_hash", sa.String(length=64), nullable=True),
        sa.Column("operator", sa.String(length=200), nullable=True),
        sa.Column("median_ms", sa.Float(), nullable=False),
        sa.Column("p10_ms", sa.Float(), nullable=True),
        sa.Column("p90_ms", sa.Float(), nullable=True),
        sa.Column("rounds", sa.Integer(), nullable=False),
        sa.Column("extra", JSON, nullable=False),
        _time("created_at", nullable=False),
        sa.CheckConstraint(
            "(architecture_hash IS NULL) <> (operator IS NULL)",
            name=op.f("ck_latency_measurements_subject"),
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"],
            name=op.f("fk_latency_measurements_device_id_devices"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_latency_measurements")),
    )
    op.create_index(
        op.f("ix_latency_measurements_device_id_backend_batch_seq_len"),
        "latency_measurements",
        ["device_id", "backend", "batch", "seq_len"],
    )

    op.create_table(
        "artifacts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("trial_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(length=128), nullable=True),
        sa.Column("extra", JSON, nullable=False),
        _time("created_at", nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_artifacts_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["trial_id"], ["trials.id"], name=op.f("fk_artifacts_trial_id_trials"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifacts")),
    )
    op.create_index(op.f("ix_artifacts_job_id_kind"), "artifacts", ["job_id", "kind"])


def downgrade() -> None:
    for index, table in (
        ("ix_artifacts_job_id_kind", "artifacts"),
        ("ix_latency_measurements_device_id_backend_batch_seq_len", "latency_measurements"),
        ("ix_trials_job_id_state", "trials"),
        ("ix_jobs_state_id", "jobs"),
    ):
        op.drop_index(op.f(index), table_name=table)
    for table in ("artifacts", "latency_measurements", "devices", "trials", "jobs"):
        op.drop_table(table)
