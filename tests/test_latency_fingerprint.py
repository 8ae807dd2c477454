"""Device fingerprints and the trials-database bridge."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from autoprune.latency.fingerprint import (
    COMPARED_KEYS,
    device_fingerprint,
    differences,
    fingerprint_hash,
    matches,
)
from autoprune.latency.operators import OperatorKey
from autoprune.latency.protocol import Measurement
from autoprune.latency.records import MeasurementLog, parse_operator_label
from autoprune.space import Architecture


def test_fingerprint_names_cpu_cores_threads_backend_and_versions() -> None:
    fp = device_fingerprint("torch", threads=2)
    assert set(COMPARED_KEYS) <= set(fp)
    assert fp["threads"] == 2 and fp["backend"] == "torch"
    assert fp["libraries"]["torch"] == torch.__version__.split("+")[0] or fp["libraries"]["torch"].startswith(
        torch.__version__.split("+")[0])
    assert fp["logical_cpus"] >= 1 and fp["physical_cores"] >= 1 and fp["cpu_model"]
    assert "onnxruntime" in device_fingerprint("onnxruntime", 2)["libraries"]


def test_hash_is_stable_and_ignores_hostname() -> None:
    fp = device_fingerprint("torch", threads=1)
    other_host = {**fp, "hostname": "elsewhere"}
    assert fingerprint_hash(fp) == fingerprint_hash(other_host) and matches(fp, other_host)
    assert fingerprint_hash(fp) != fingerprint_hash({**fp, "threads": 4})


def test_differences_name_what_changed() -> None:
    fp = device_fingerprint("torch", threads=1)
    changed = {**fp, "cpu_model": "Other", "libraries": {**fp["libraries"], "torch": "0.1"}}
    found = differences(fp, changed)
    assert any(item.startswith("cpu_model") for item in found)
    assert any(item.startswith("torch ") for item in found)
    assert differences(fp, fp) == []


def test_the_same_model_name_on_another_cpu_generation_differs(tmp_path, monkeypatch) -> None:
    # Cloud VMs report a bare "AMD EPYC" for CPU generations whose int8 kernels differ 1.5x.
    from pathlib import Path

    import autoprune.latency.fingerprint as fingerprint

    def cpuinfo(family: str, flags: str) -> None:
        info = tmp_path / "cpuinfo"
        info.write_text(f"processor\t: 0\nmodel name\t: AMD EPYC\ncpu family\t: {family}\n"
                        f"model\t\t: 1\nstepping\t: 1\nflags\t\t: fpu {flags} sse2\n")
        monkeypatch.setattr(fingerprint, "Path", lambda p: info if p == "/proc/cpuinfo" else Path(p))

    cpuinfo("25", "avx2 avx512f avx512_vnni")
    zen4 = device_fingerprint("torch", threads=2)
    assert zen4["cpu_id"] == "25/1/1" and zen4["isa"] == ["avx2", "avx512_vnni", "avx512f"]
    cpuinfo("23", "avx2")
    zen2 = device_fingerprint("torch", threads=2)
    found = differences(zen4, zen2)
    assert any(item.startswith("cpu_id") for item in found) and any(item.startswith("isa") for item in found)
    assert zen4["cpu_model"] == zen2["cpu_model"] == "AMD EPYC"


class FakeStore:
    """The subset of ``autoprune.store.Store`` the latency code uses."""

    def __init__(self) -> None:
        self.devices: dict[str, int] = {}
        self.rows: list[dict[str, Any]] = []

    def add_device(self, fingerprint: dict[str, Any]) -> int:
        return self.devices.setdefault(fingerprint_hash(fingerprint), len(self.devices) + 1)

    def add_latency_measurement(self, **row: Any) -> int:
        self.rows.append(row)
        return len(self.rows)

    def latency_measurements(self, **where: Any) -> list[dict[str, Any]]:
        return [r for r in self.rows if all(r.get(k) == v for k, v in where.items())]


def test_measurements_are_written_and_reused_for_the_same_device() -> None:
    store = FakeStore()
    fp = device_fingerprint("torch", threads=1)
    log = MeasurementLog(store, fp, "torch", 1, 128, 1)
    arch = Architecture.dense(2, 4)
    m = Measurement(3.0, 2.9, 3.3, rounds=9, repeats=2)
    log.record_operator(OperatorKey("attention", 4, 8), m)
    log.record_architecture(arch, m)
    assert len(store.rows) == 2
    assert store.rows[0]["operator"] == "attention/4/b8" and store.rows[0]["device_id"] == 1
    assert store.rows[1]["architecture_hash"] == arch.hash and store.rows[1]["p90_ms"] == 3.3
    again = MeasurementLog(store, {**fp, "hostname": "same-cpu"}, "torch", 1, 128, 1)
    assert again.operators[OperatorKey("attention", 4, 8)].median_ms == 3.0
    assert again.architectures[arch.hash].p10_ms == 2.9
    other_batch = MeasurementLog(store, fp, "torch", 8, 128, 1)
    assert not other_batch.operators and not other_batch.architectures


def test_a_log_told_not_to_reuse_measures_again_and_still_writes() -> None:
    store = FakeStore()
    fp = device_fingerprint("torch", threads=1)
    MeasurementLog(store, fp, "torch", 1, 128, 1).record_operator(
        OperatorKey("embeddings"), Measurement(3.0, 2.9, 3.3, rounds=9, repeats=2))
    fresh = MeasurementLog(store, fp, "torch", 1, 128, 1, reuse=False)
    assert not fresh.operators and not fresh.architectures
    fresh.record_operator(OperatorKey("embeddings"), Measurement(2.4, 2.3, 2.6, rounds=9, repeats=2))
    assert len(store.rows) == 2  # the stale figure stays stored; a later reuse takes the newest
    assert MeasurementLog(store, fp, "torch", 1, 128, 1).operators[OperatorKey("embeddings")].median_ms == 2.4


def test_figures_a_fresh_profile_did_not_reach_are_not_reused_beside_its_own() -> None:
    store = FakeStore()
    fp = device_fingerprint("torch", threads=1)
    arch = Architecture.dense(2, 4)
    stale = MeasurementLog(store, fp, "torch", 1, 128, 1)
    stale.record_operator(OperatorKey("embeddings"), Measurement(3.0, 2.9, 3.3, rounds=9, repeats=2))
    stale.record_operator(OperatorKey("classifier"), Measurement(0.5, 0.4, 0.6, rounds=9, repeats=2))
    stale.record_architecture(arch, Measurement(20.0, 19.0, 22.0, rounds=9, repeats=2))
    fresh = MeasurementLog(store, fp, "torch", 1, 128, 1, reuse=False)
    fresh.record_operator(OperatorKey("embeddings"), Measurement(2.4, 2.3, 2.6, rounds=9, repeats=2))
    later = MeasurementLog(store, fp, "torch", 1, 128, 1)
    # Only the fresh epoch: the classifier and the architecture are measured again, not reused stale.
    assert set(later.operators) == {OperatorKey("embeddings")} and not later.architectures
    assert later.epoch == fresh.epoch > stale.epoch == ""
    later.record_operator(OperatorKey("classifier"), Measurement(0.4, 0.4, 0.5, rounds=9, repeats=2))
    # What a reusing profile adds joins the epoch it reused from.
    assert MeasurementLog(store, fp, "torch", 1, 128, 1).operators[OperatorKey("classifier")].median_ms == 0.4


def test_no_store_means_nothing_is_written() -> None:
    log = MeasurementLog(None, device_fingerprint("torch", 1), "torch", 1, 128, 1)
    log.record_operator(OperatorKey("embeddings"), Measurement(1.0, 1.0, 1.0, 1, 1))
    assert log.device_id is None and OperatorKey("embeddings") in log.operators


def test_operator_labels_round_trip() -> None:
    for key in (OperatorKey("embeddings"), OperatorKey("classifier"), OperatorKey("ffn", 768, 4)):
        assert parse_operator_label(key.label) == key
    assert parse_operator_label("ffn/x/b8") is None and parse_operator_label("conv/3/b8") is None


def test_the_real_store_on_sqlite_round_trips_measurements(tmp_path) -> None:
    store_module = __import__("pytest").importorskip("autoprune.store")
    store = store_module.Store(f"sqlite:///{tmp_path / 'trials.db'}")
    fp = device_fingerprint("torch", threads=2)
    log = MeasurementLog(store, fp, "torch", 8, 128, 2)
    arch = Architecture.dense(2, 4)
    log.record_operator(OperatorKey("ffn", 64, 32), Measurement(5.0, 4.8, 5.6, rounds=9, repeats=3))
    log.record_architecture(arch, Measurement(20.0, 19.0, 22.0, rounds=9, repeats=2))
    again = MeasurementLog(store, fp, "torch", 8, 128, 2)
    assert again.device_id == log.device_id
    assert again.operators[OperatorKey("ffn", 64, 32)] == Measurement(5.0, 4.8, 5.6, rounds=9, repeats=3)
    assert again.architectures[arch.hash].median_ms == 20.0
    assert not MeasurementLog(store, fp, "torch", 8, 128, 1).operators  # other thread count


def test_machine_load_and_oversubscription() -> None:
    from autoprune.latency.fingerprint import machine_load, oversubscribed

    load = machine_load()
    assert load["usable_cpus"] >= 1 and load["load_1min"] >= 0
    assert oversubscribed(2, {"load_1min": 1.9, "usable_cpus": 2.0})
    assert not oversubscribed(2, {"load_1min": 0.1, "usable_cpus": 2.0})


def _loads(*values: float) -> Any:
    """A machine_load stand-in whose other processes keep ``values`` CPUs busy in turn, then
    the last one for ever."""
    readings = iter(values)
    last = {"value": values[-1]}

    def machine_load() -> dict[str, float]:
        last["value"] = next(readings, last["value"])
        return {"load_1min": 2.0, "usable_cpus": 2.0, "others_busy_cpus": last["value"]}
    return machine_load


def test_wait_until_quiet_waits_for_other_processes_to_leave_the_cpus() -> None:
    from autoprune.latency.profile import wait_until_quiet

    slept: list[float] = []
    load = wait_until_quiet(2, timeout_s=300, poll_s=10, sleep=slept.append,
                            machine_load=_loads(1.6, 1.1, 0.7, 0.3, 0.1))
    assert load["others_busy_cpus"] == 0.3  # the first reading that leaves both CPUs free
    assert slept == [10, 10, 10]


def test_wait_until_quiet_gives_up_at_its_timeout_and_skips_a_quiet_machine() -> None:
    from autoprune.latency.profile import wait_until_quiet

    slept: list[float] = []
    assert wait_until_quiet(2, timeout_s=30, poll_s=10, sleep=slept.append,
                            machine_load=_loads(1.9))["others_busy_cpus"] == 1.9
    assert slept == [10, 10, 10]
    slept.clear()
    # a load average of 2.0 (this process's own threads, say) does not count against it
    assert wait_until_quiet(2, timeout_s=300, poll_s=10, sleep=slept.append,
                            machine_load=_loads(0.2))["others_busy_cpus"] == 0.2
    assert slept == []
    wait_until_quiet(2, timeout_s=0, sleep=slept.append, machine_load=_loads(1.9))
    assert slept == []


def test_others_busy_cpus_leaves_this_process_out() -> None:
    """This process's CPU time, a spinning thread's included, is read and set apart from the
    machine's, so its own work never reads as another process's load."""
    import os
    import sys
    import time

    from autoprune.latency.fingerprint import _busy_and_own_ticks, machine_load, others_busy_cpus, oversubscribed

    if not sys.platform.startswith("linux"):
        pytest.skip("/proc only")
    busy_before, own_before = _busy_and_own_ticks()
    deadline = time.process_time() + 0.5
    while time.process_time() < deadline:  # half a CPU-second of this process's own
        pass
    busy_after, own_after = _busy_and_own_ticks()
    ticks = os.sysconf("SC_CLK_TCK")
    assert 0.3 * ticks <= own_after - own_before <= busy_after - busy_before
    others = others_busy_cpus(0.2)
    assert others is not None and others >= 0.0
    assert "others_busy_cpus" in machine_load(window_s=0.1)
    assert "others_busy_cpus" not in machine_load()
    # judged by the sampled figure where there is one, not by the load average
    assert not oversubscribed(2, {"load_1min": 1.9, "usable_cpus": 2.0, "others_busy_cpus": 0.1})
    assert oversubscribed(2, {"load_1min": 0.0, "usable_cpus": 2.0, "others_busy_cpus": 1.0})
