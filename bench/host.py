"""The machine a benchmark ran on, written once for every scenario: CPU, cores, memory, GPUs (nvidia-smi, when
there is one; no torch import), the load average before and after, and the short name results folders take."""

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path


def cpuinfo(field: str) -> str | None:
    """The first processor's `field` in /proc/cpuinfo ("model name", "flags"), or None where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":", 1)[0].strip() == field:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    return cpuinfo("model name") or platform.processor() or platform.machine()


def memory_bytes() -> int | None:
    try:
        found = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
    except OSError:
        return None
    return int(found.group(1)) * 1024 if found else None


def gpus() -> list:
    """[{name, memory_bytes, driver}] of the NVIDIA GPUs nvidia-smi lists; [] without one."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    done = subprocess.run([smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"],
                          capture_output=True, text=True, timeout=30)
    out = []
    for line in done.stdout.strip().splitlines() if done.returncode == 0 else []:
        name, mib, driver = (x.strip() for x in line.split(","))
        out.append({"name": name, "memory_bytes": int(float(mib)) * 2**20, "driver": driver})
    return out


def host() -> dict:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "memory_bytes": memory_bytes(),
            "machine": platform.machine(), "os": platform.platform(), "gpus": gpus()}


def load() -> list:
    """The 1, 5 and 15-minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def slug(h: dict) -> str:
    """A results folder's host part: the first GPU's model (e.g. h100), else cpu-<cores>core."""
    if h.get("gpus"):
        words = h["gpus"][0]["name"].lower().replace("nvidia", "").split()
        found = next((w for w in words if re.fullmatch(r"[a-z]+\d+", w)), None)  # h100, a100, l4
        return found or re.sub(r"[^a-z0-9]+", "-", " ".join(words)).strip("-")
    return f"cpu-{h['cores']}core"


def read_bandwidth_gbps(gib: float = 1.0, repeats: int = 5) -> float:
    """GB/s of a numpy sum over `gib` GiB of float32 (the best of `repeats`): the machine's read bandwidth now, the
    yardstick for a kernel's effective bandwidth (weight bytes / time)."""
    import time

    import numpy as np
    a = np.ones(int(gib * 2**30 / 4), np.float32)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a.sum()
        best = min(best, time.perf_counter() - t0)
    return a.nbytes / best / 1e9
