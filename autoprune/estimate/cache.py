"""A content-addressed disk cache for expensive, deterministic artefacts (teachers, scores).

An entry is a directory named by the sha256 of everything that determines its content
(model weights, task data, recipe, seed). It is built into a temporary directory and
renamed into place under a file lock, so parallel workers that ask for the same entry
build it once and never see a half-written one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock

COMPLETE = ".complete"


def default_cache_root() -> Path:
    """``$AUTOPRUNE_CACHE``, else ``~/.autoprune/cache``."""
    configured = os.environ.get("AUTOPRUNE_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".autoprune" / "cache"


def content_key(payload: Mapping[str, Any]) -> str:
    """The sha256 of a JSON-able mapping (key order does not matter)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def file_digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def model_fingerprint(resolved: str) -> str:
    """What identifies a base model: the content of a local directory's config and weight
    files (so a re-saved checkpoint at the same path is a new model), else the hub name."""
    path = Path(resolved)
    if not path.is_dir():
        return f"name:{resolved}"
    digest = hashlib.sha256()
    for file in sorted(path.iterdir()):
        weights = file.name == "config.json" or file.suffix in (".safetensors", ".bin")
        if file.is_file() and weights:
            digest.update(file.name.encode())
            digest.update(file_digest(file).encode())
    return f"files:{digest.hexdigest()}"


class DiskCache:
    """Entries ``<root>/<kind>/<key>/``, each built at most once."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_root()

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def has(self, kind: str, key: str) -> bool:
        return (self.path(kind, key) / COMPLETE).is_file()

    def get_or_build(self, kind: str, key: str, build: Callable[[Path], None]) -> tuple[Path, bool]:
        """The entry's directory and whether it was already there (a hit).

        ``build(tmp_dir)`` writes the entry's files; it runs only on a miss, under a lock.
        """
        target = self.path(kind, key)
        if (target / COMPLETE).is_file():
            return target, True
        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(target) + ".lock"):
            if (target / COMPLETE).is_file():  # another process built it while we waited
                return target, True
            work = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=target.parent))
            try:
                build(work)
                (work / COMPLETE).write_text("")
                if target.exists():  # a stale, incomplete entry from a killed run
                    shutil.rmtree(target)
                work.rename(target)
            finally:
                if work.exists():
                    shutil.rmtree(work, ignore_errors=True)
        return target, False
