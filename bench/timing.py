"""Small timing helpers: step timestamps and the statistics the report quotes."""

import time

import numpy as np


class Clock:
    """Marks the start and each step of a run; `deltas` are per-step milliseconds."""

    def __init__(self, sync=None):
        self.sync = sync or (lambda: None)
        self.marks = []

    def start(self) -> None:
        self.sync()
        self.marks = [time.perf_counter()]

    def mark(self, *_args) -> None:
        self.sync()
        self.marks.append(time.perf_counter())

    @property
    def deltas(self) -> np.ndarray:
        return np.diff(np.array(self.marks)) * 1000.0


def stats(ms) -> dict:
    ms = np.asarray(ms, dtype=np.float64)
    if ms.size == 0:
        return {"mean": None, "p50": None, "p95": None, "n": 0}
    return {"mean": float(ms.mean()), "p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
            "n": int(ms.size)}


def median(values) -> float:
    return float(np.median(np.asarray(values, dtype=np.float64)))


def timed(fn):
    """(fn(), milliseconds it took)."""
    t0 = time.perf_counter()
    value = fn()
    return value, (time.perf_counter() - t0) * 1000.0
