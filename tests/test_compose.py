"""docker-compose.yml is checked by parsing (no Docker engine here): commands, ports, URLs."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from sqlalchemy.engine import make_url

from autoprune.cli import app


@pytest.fixture(scope="module")
def compose(repo_root: Path) -> dict[str, Any]:
    return yaml.safe_load((repo_root / "docker-compose.yml").read_text())


def _commands(text: str) -> list[list[str]]:
    """``sh -c "a && b"`` -> [[a...], [b...]]; a plain command -> [[...]]."""
    words = shlex.split(text)
    if words[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in words[2].split("&&")]
    return [words]


def _check_autoprune_command(words: list[str]) -> None:
    """Every subcommand and option must exist in the real CLI, and parse."""
    assert words[0] == "autoprune"
    # Typer bundles its own click: use the command objects' own classes, not the click package.
    command: Any = typer.main.get_command(app)
    args = words[1:]
    while hasattr(command, "get_command"):
        command = command.get_command(command.context_class(command), args[0])
        assert command is not None, f"unknown subcommand {args[0]!r}"
        args = args[1:]
    command.make_context(command.name, list(args))  # raises on an unknown option or bad value


def test_services_and_their_commands(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "ray-head", "ray-worker", "serve"} <= set(services)
    serve = _commands(services["serve"]["command"])
    assert [words[:2] for words in serve] == [["autoprune", "db"], ["autoprune", "serve"]]
    for words in serve:
        _check_autoprune_command(words)


def test_ports_and_addresses_agree(compose: dict[str, Any]) -> None:
    services = compose["services"]
    head = shlex.split(services["ray-head"]["command"])
    assert head[:3] == ["ray", "start", "--head"]
    options = dict(word.split("=", 1) for word in head if word.startswith("--") and "=" in word)
    assert "8265:8265" in services["ray-head"]["ports"]
    assert options["--dashboard-port"] == "8265" and options["--dashboard-host"] == "0.0.0.0"
    gcs = f"ray-head:{options['--port']}"
    worker = shlex.split(services["ray-worker"]["command"])
    assert f"--address={gcs}" in worker
    serve = _commands(services["serve"]["command"])[-1]
    assert serve[serve.index("--ray-address") + 1] == gcs


def test_database_url_matches_postgres_service(compose: dict[str, Any]) -> None:
    environment = compose["x-autoprune"]["environment"]
    url = make_url(environment["AUTOPRUNE_DB"])
    postgres = compose["services"]["postgres"]["environment"]
    assert url.drivername == "postgresql+psycopg"
    assert (url.username, url.password, url.database) == (
        postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"])
    assert url.host == "postgres" and (url.port or 5432) == 5432


def test_workers_share_the_cache(compose: dict[str, Any]) -> None:
    anchor = compose["x-autoprune"]
    cache = anchor["environment"]["AUTOPRUNE_CACHE"]
    mounts = [volume.split(":")[1] for volume in anchor["volumes"]]
    assert any(cache.startswith(mount) for mount in mounts)
    for name in ("ray-head", "ray-worker", "serve"):
        assert compose["services"][name]["volumes"] == anchor["volumes"]
