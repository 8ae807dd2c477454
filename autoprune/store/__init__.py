"""The trials database: jobs, trials, devices, latency measurements and artifacts.

Everything outside this package uses :class:`Store` and the frozen records it returns::

    store = Store("sqlite:///trials.db")       # or postgresql://..., or $AUTOPRUNE_DB
    job_id = store.create_job(spec.to_json(), spec.name)
    job = store.claim_job("host:pid", heartbeat_timeout_s=60)
"""

from autoprune.store.engine import default_url, resolve_url
from autoprune.store.records import (
    ArtifactRecord,
    DeviceRecord,
    JobRecord,
    JobSummary,
    LatencyMeasurementRecord,
    TrialRecord,
)
from autoprune.store.schema import JOB_FINAL_STATES, JOB_STATES, TRIAL_FINAL_STATES, TRIAL_STATES
from autoprune.store.store import Store, fingerprint_hash

__all__ = [
    "JOB_FINAL_STATES",
    "JOB_STATES",
    "TRIAL_FINAL_STATES",
    "TRIAL_STATES",
    "ArtifactRecord",
    "DeviceRecord",
    "JobRecord",
    "JobSummary",
    "LatencyMeasurementRecord",
    "Store",
    "TrialRecord",
    "default_url",
    "fingerprint_hash",
    "resolve_url",
]
