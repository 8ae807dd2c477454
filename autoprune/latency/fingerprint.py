"""Which machine and software a latency figure belongs to.

A latency model is only meaningful on the device it was measured on: another CPU, another
core count, another thread setting or another kernel library (torch, onnxruntime) changes
every figure. The fingerprint records those facts; :func:`differences` names the ones that
differ so a caller can warn (or, when strict, refuse) with a one-line reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

# Keys that make latency figures incomparable when they differ. The hostname and the date are
# recorded for people, not compared: two identical cloud VMs are the same device.
# "cpu_id" and "isa" exist because cloud VMs report a bare "AMD EPYC" for both Zen 3 and Zen 4:
# measured on both, the Zen 4 one (AVX-512 VNNI) ran dynamic int8 at 2.3x dense, the Zen 3 one
# at 1.5x, under the same model name.
COMPARED_KEYS: tuple[str, ...] = (
    "cpu_model", "cpu_id", "isa", "machine", "physical_cores", "logical_cpus", "threads", "backend",
    "libraries",
)
# Instruction-set extensions that change which kernels torch / onnxruntime pick.
KERNEL_FLAGS: tuple[str, ...] = (
    "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
    "amx_tile", "amx_int8", "amx_bf16", "asimd", "sve", "i8mm", "bf16",
)

_BACKEND_LIBRARIES: dict[str, tuple[str, ...]] = {
    "torch": ("torch", "transformers"),
    "onnxruntime": ("torch", "transformers", "onnxruntime", "onnx"),
}


def _cpuinfo() -> tuple[str, int, str, list[str]]:
    """(CPU model name, physical core count, "family/model/stepping", kernel-relevant ISA
    flags) from /proc/cpuinfo; platform data elsewhere."""
    model, cores = platform.processor() or platform.machine(), set()
    ident: dict[str, str] = {}
    flags: set[str] = set()
    path = Path("/proc/cpuinfo")
    if path.is_file():
        physical = core = ""
        for line in path.read_text(errors="replace").splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "model name" and value:
                model = value
            elif key in ("cpu family", "model", "stepping", "CPU implementer", "CPU part"):
                ident.setdefault(key, value)
            elif key in ("flags", "Features"):
                flags.update(value.split())
            elif key == "physical id":
                physical = value
            elif key == "core id":
                core = value
                cores.add((physical, core))
    logical = os.cpu_count() or 1
    return model, len(cores) or logical, "/".join(ident.values()), sorted(flags & set(KERNEL_FLAGS))


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def usable_cpus() -> int:
    """CPUs this process may run on (the affinity mask, e.g. under a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def machine_load(window_s: float = 0.0) -> dict[str, float]:
    """The 1-minute load average and the CPUs this process may use; with ``window_s``, also
    the CPUs other processes kept busy over that many seconds (``others_busy_cpus``).

    Recorded with every profile and validation: on a shared machine, a load near the CPU
    count means the threads of a timed model compete with other processes, and OpenMP
    threads that must meet at barriers then slow down by up to 40x (measured on 2 cores).
    The load average counts this process's own threads too, and decays over a minute, so
    right after loading a model or training it reads as busy a machine that is quiet; the
    sampled figure leaves this process out and is the one ``oversubscribed`` judges by.
    """
    try:
        one_minute = os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - not Unix
        one_minute = float("nan")
    load = {"load_1min": round(one_minute, 2), "usable_cpus": float(usable_cpus())}
    others = others_busy_cpus(window_s) if window_s > 0 else None
    if others is not None:
        load["others_busy_cpus"] = round(others, 2)
    return load


def _busy_and_own_ticks() -> tuple[int, int]:
    """Clock ticks every CPU spent busy since boot (/proc/stat) and those of this process,
    its threads and its waited-for children (/proc/self/stat)."""
    cpu = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in cpu[:8])
    # Fields after the command name, which may hold spaces: utime stime cutime cstime are
    # the 14th to 17th fields of the whole line.
    own = Path("/proc/self/stat").read_text().rpartition(")")[2].split()
    return user + nice + system + irq + softirq + steal, sum(int(v) for v in own[11:15])


def others_busy_cpus(window_s: float = 1.0) -> float | None:
    """How many CPUs other processes kept busy over the next ``window_s`` seconds (this
    process sleeps through it); None where /proc cannot tell (not Linux)."""
    try:
        busy_before, own_before = _busy_and_own_ticks()
        started = time.monotonic()
        time.sleep(window_s)
        busy_after, own_after = _busy_and_own_ticks()
    except (OSError, ValueError, IndexError):
        return None
    ticks_per_second = os.sysconf("SC_CLK_TCK")
    elapsed = time.monotonic() - started
    return max(0.0, (busy_after - busy_before) - (own_after - own_before)) / (ticks_per_second * elapsed)


def others_load(load: dict[str, float]) -> float:
    """The CPUs other work occupies in a ``machine_load`` reading: those other processes kept
    busy where that was sampled, else the load average."""
    return load.get("others_busy_cpus", load["load_1min"])


def oversubscribed(threads: int, load: dict[str, float] | None = None) -> bool:
    """Whether other work already occupies the CPUs that ``threads`` would need."""
    load = load or machine_load()
    return others_load(load) + threads > load["usable_cpus"] + 0.5


def device_fingerprint(backend: str, threads: int) -> dict[str, Any]:
    """The facts about this machine and software that a latency figure depends on."""
    model, physical, cpu_id, isa = _cpuinfo()
    libraries = {name: _version(name) for name in _BACKEND_LIBRARIES.get(backend, ("torch",))}
    return {
        "cpu_model": model,
        "cpu_id": cpu_id,
        "isa": isa,
        "machine": platform.machine(),
        "physical_cores": physical,
        "logical_cpus": usable_cpus(),
        "threads": int(threads),
        "backend": backend,
        "libraries": {k: v for k, v in libraries.items() if v is not None},
        "python": platform.python_version(),
        "hostname": platform.node(),
    }


def fingerprint_hash(fingerprint: dict[str, Any]) -> str:
    """A short stable hash of the compared keys (the same device gives the same hash)."""
    compared = {key: fingerprint.get(key) for key in COMPARED_KEYS}
    text = json.dumps(compared, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable differences in the compared keys, empty when the devices match."""
    found = []
    for key in COMPARED_KEYS:
        if key == "libraries":
            old, new = recorded.get(key) or {}, current.get(key) or {}
            for name in sorted(set(old) | set(new)):
                if old.get(name) != new.get(name):
                    found.append(f"{name} {old.get(name)} != {new.get(name)}")
        elif recorded.get(key) != current.get(key):
            found.append(f"{key} {recorded.get(key)!r} != {current.get(key)!r}")
    return found


def matches(recorded: dict[str, Any], current: dict[str, Any]) -> bool:
    return not differences(recorded, current)
