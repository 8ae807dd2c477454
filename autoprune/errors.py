"""Every error a user can see.

The CLI maps :class:`UserInputError` subclasses to exit code 2 (bad input: one line naming
what and where) and every other :class:`AutopruneError` to exit code 1.
"""

from __future__ import annotations


class AutopruneError(Exception):
    """Base class of every error autoprune raises on purpose."""


class UserInputError(AutopruneError):
    """The user gave something wrong: a spec, a path, a URL, an argument. Exit code 2."""


class SpecError(UserInputError):
    """A job spec is malformed: unknown key, wrong type, out-of-range value, missing file."""


class SpaceError(UserInputError):
    """A search-space file or an architecture does not fit the space or the base model."""


class StoreError(AutopruneError):
    """The trials database refused an operation (duplicate, missing row, bad state)."""


class DatabaseURLError(StoreError, UserInputError):
    """A database URL that cannot be opened."""


class NotFoundError(StoreError, UserInputError):
    """A job or trial the user named does not exist."""


class DuplicateError(StoreError):
    """A row that must be unique already exists (same architecture in one job, same number)."""


class LatencyModelError(UserInputError):
    """A latency-model file is missing, corrupt, foreign, or does not cover a shape."""


class FingerprintMismatch(LatencyModelError):
    """A latency model measured on another device is used with ``strict``."""


class DataError(UserInputError):
    """A task's data is missing, empty, or holds labels outside the task's label set."""


class ModelError(UserInputError):
    """A base model cannot be loaded, or its head does not fit the task."""


class InfeasibleError(AutopruneError):
    """No candidate can meet the constraints (e.g. a latency budget below the smallest model)."""


class VerifyError(UserInputError):
    """A verification that cannot be run (no latency model, no candidate within the budget)."""


class ExportError(UserInputError):
    """An export request that cannot be honoured (failed trial, non-empty directory)."""

