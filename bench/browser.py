"""Browser backends' shared parts: a temporary site of the bundle with a page runner on it (bench/pagerun.py:
Playwright, or plain Chromium + a local server where Playwright is missing), and turning the bench page's raw
timings (web/bench.js) into the same result shape as the Python backends."""

import base64
import contextlib
import tempfile
from pathlib import Path

import numpy as np

from janusweb.bench.pagerun import page_runner, pick_driver, playwright_missing
from janusweb.bench.timing import median, stats
from janusweb.bench.workload import Inputs
from janusweb.env import chromium_path
from janusweb.site import build_site


def _decode_images(run: dict, dims) -> np.ndarray:
    px = dims["decoded_image_size"]
    return np.stack([np.frombuffer(base64.b64decode(d), np.float32).reshape(3, px, px) for d in run["decoded"]])


def understanding_speed(runs: list) -> dict:
    """Time to first token and decode tokens/s (medians over runs) from each run's token arrival times, and the
    last run's tokens."""
    ttft = [r["token_times_ms"][0] for r in runs]
    tps = [(len(r["token_times_ms"]) - 1) / ((r["token_times_ms"][-1] - r["token_times_ms"][0]) / 1000) for r in runs]
    return {"ttft_ms": median(ttft), "decode_tokens_per_s": median(tps), "tokens": runs[-1]["tokens"]}


def aggregate(raw: dict, inp: Inputs, dims: dict) -> dict:
    u = raw["understanding"]
    out = {"understanding": {**understanding_speed(u), "gpu_reads": u[-1]["gpu_reads"]},
           "generation": {}, "memory": raw.get("memory")}
    for n, runs in raw["generation"].items():
        best = sorted(runs, key=lambda r: r["total_ms"])[len(runs) // 2]
        steps = np.diff(np.array(best["step_times_ms"]))
        out["generation"][str(n)] = {
            "ms_per_step": {**stats(steps), "mean": (best["step_times_ms"][-1] - best["step_times_ms"][0])
                            / max(1, len(best["step_times_ms"]) - 1)},
            "step_ms": steps.tolist(), "prefill_ms": best["step_times_ms"][0],
            "vq_decode_ms": best["first_image_ms"] - best["step_times_ms"][-1],
            "s_per_image": median([r["total_ms"] for r in runs]) / 1000 / int(n),
            "tokens": best["tokens"], "images": _decode_images(best, dims), "gpu_reads": best["gpu_reads"],
            "note": "per-step times are when the worker reported each step; on WebGPU the queue may run behind"}
    return out


def software_adapter(adapter: str) -> bool:
    """Whether a WebGPU adapter description names a software implementation (SwiftShader, a fallback)."""
    return any(k in adapter.lower() for k in ("swiftshader", "fallback", "cpu"))


def webgpu_device(backend: str, adapter: str) -> str:
    if backend != "webgpu":
        return "cpu"
    return "software WebGPU (SwiftShader)" if software_adapter(adapter) else "GPU"


def unavailable(ctx) -> str | None:
    """Why no browser backend can run here (ctx: a BenchContext), or None."""
    if not (ctx.browser or chromium_path()):
        return "no Chromium found (--browser PATH)"
    return playwright_missing() if pick_driver(ctx.driver) == "playwright" else None


@contextlib.contextmanager
def site_runner(ctx, backend: str):
    """A page runner (bench/pagerun.py) over a temporary site of ctx.bundle, with the benchmark pages (the demo
    site has none), Chromium set up for `backend`."""
    with tempfile.TemporaryDirectory(prefix="janusweb-bench-") as tmp:
        site = build_site(ctx.bundle, Path(tmp) / "site", page=ctx.page, bench=True)
        with page_runner(site, backend, ctx.browser or chromium_path(), ctx.headed, ctx.driver) as runner:
            yield runner
