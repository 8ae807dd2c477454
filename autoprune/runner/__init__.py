"""Running jobs: the search loop, the local and Ray executors, and the queue service."""

from __future__ import annotations

from autoprune.runner.session import (
    FINISHED,
    Candidate,
    JobCancelled,
    JobInterrupted,
    JobTakenOver,
    Outcome,
    Progress,
    SearchSession,
)

__all__ = [
    "FINISHED", "Candidate", "JobCancelled", "JobInterrupted", "JobTakenOver", "Outcome",
    "Progress", "SearchSession",
]
