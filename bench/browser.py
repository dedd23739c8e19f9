"""Browser backends' shared parts: a temporary site of the bundle with a page runner on it (bench/pagerun.py:
Playwright, or plain Chromium + a local server where Playwright is missing), and the bench page's raw runs
(web/bench-pages/bench.js) as a measurement (bench/measures.py)."""

import base64
import contextlib
import tempfile
from pathlib import Path

import numpy as np

from janusweb.bench.pagerun import page_runner, pick_driver, playwright_missing
from janusweb.env import chromium_path


def decoded_images(run: dict, size: int) -> np.ndarray:
    return np.stack([np.frombuffer(base64.b64decode(d), np.float32).reshape(3, size, size) for d in run["decoded"]])


GPU_COUNTERS = ("gpu", "gpu_per_token", "gpu_per_step", "gpu_reads")


def measurement(raw: dict, image_size: int, gpu: bool) -> dict:
    """web/bench-pages/bench.js's runBench value as a measurement: the same run shape as the Python loops'. gpu
    False: the WebGPU counters are left out (a WASM row has none)."""
    keep = lambda r: {k: v for k, v in r.items() if gpu or k not in GPU_COUNTERS}  # noqa: E731
    text = [keep(r) for r in raw["understanding"]]
    image = []
    for runs in raw["generation"].values():
        for r in runs:
            image.append({**keep(r), "images": decoded_images(r, image_size) if r.get("decoded") else None})
            image[-1].pop("decoded", None)
    return {"text": text, "image": image, "load_s": raw["load_ms"] / 1000}


def software_adapter(adapter: str) -> bool:
    """Whether a WebGPU adapter description names a software implementation (SwiftShader, a fallback)."""
    return any(k in adapter.lower() for k in ("swiftshader", "fallback", "cpu"))


def webgpu_device(backend: str, adapter: str) -> str:
    if backend != "webgpu":
        return "cpu"
    return "software WebGPU (SwiftShader)" if software_adapter(adapter) else "GPU"


def unavailable(browser: str | None, driver: str) -> str | None:
    """Why no browser backend can run here, or None."""
    if not (browser or chromium_path()):
        return "no Chromium found (--browser PATH)"
    return playwright_missing() if pick_driver(driver) == "playwright" else None


@contextlib.contextmanager
def site_runner(bundle: Path, backend: str, browser: str | None = None, headed: bool = False,
                page: Path | None = None, driver: str = "auto"):
    """A page runner (bench/pagerun.py) over a temporary site of `bundle`, with the benchmark pages (the demo
    site has none), Chromium set up for `backend`."""
    from janusweb.site import build_site
    with tempfile.TemporaryDirectory(prefix="janusweb-bench-") as tmp:
        site = build_site(bundle, Path(tmp) / "site", page=page, bench=True)
        with page_runner(site, backend, browser or chromium_path(), headed, driver) as runner:
            yield runner
