"""Browser backends (WebGPU, WASM): Playwright drives Chromium on the static site; the bench page
(web/bench.js) runs the workload through the page's own worker, and this module turns its raw timings into
the same result shape as the Python backends."""

import base64
import contextlib
import json
import os
import shlex
import tempfile
from pathlib import Path

import numpy as np

from janusweb.bench.timing import median, stats
from janusweb.bench.workload import Inputs, Workload
from janusweb.env import chromium_path
from janusweb.log import step
from janusweb.site import build_site, serve_in_thread

BASE_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", "--disable-dev-shm-usage"]
TIMEOUT_MS = 3_600_000


def browser_args(backend: str) -> list:
    extra = shlex.split(os.environ.get("CHROMIUM_GPU_FLAGS", ""))  # set on a GPU host (Vulkan WebGPU)
    args = BASE_ARGS + extra
    if backend == "webgpu" and "--enable-unsafe-webgpu" not in args:
        args.append("--enable-unsafe-webgpu")
    return args


def _decode_images(run: dict, dims) -> np.ndarray:
    px = dims["decoded_image_size"]
    return np.stack([np.frombuffer(base64.b64decode(d), np.float32).reshape(3, px, px) for d in run["decoded"]])


def understanding_speed(runs: list) -> dict:
    """Time to first token and decode tokens/s (medians over runs) from each run's token arrival times, and the
    last run's tokens."""
    ttft = [r["token_times_ms"][0] for r in runs]
    tps = [(len(r["token_times_ms"]) - 1) / ((r["token_times_ms"][-1] - r["token_times_ms"][0]) / 1000) for r in runs]
    return {"ttft_ms": median(ttft), "decode_tokens_per_s": median(tps), "tokens": runs[-1]["tokens"]}


def _aggregate(raw: dict, inp: Inputs, dims: dict) -> dict:
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


def unavailable(executable: str | None) -> str | None:
    """Why no browser backend can run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Python Playwright is not installed"
    return None if executable else "no Chromium found (--browser PATH)"


@contextlib.contextmanager
def served_browser(site: Path, backend: str, executable: str, headed: bool = False):
    """(Chromium, base URL) over the site folder `site`, served with the page's headers."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        server, url = serve_in_thread(site)
        try:
            browser = p.chromium.launch(executable_path=executable, headless=not headed, args=browser_args(backend))
            try:
                yield browser, url
            finally:
                browser.close()
        finally:
            server.shutdown()


@contextlib.contextmanager
def site_browser(bundle: Path, backend: str, executable: str, headed: bool, page: Path | None):
    """(Chromium, base URL) over a temporary site of `bundle`, with the benchmark pages (the demo site has none)."""
    with tempfile.TemporaryDirectory(prefix="janusweb-bench-") as tmp:
        with served_browser(build_site(bundle, Path(tmp) / "site", page=page, bench=True), backend, executable, headed) as b:
            yield b


def rows(bundle: Path, backend: str, dtypes: list, inp: Inputs, w: Workload, executable: str | None = None,
         headed: bool = False, page: Path | None = None, kv_cache: str = "auto") -> list:
    """One row per dtype for `backend` ('webgpu' or 'wasm'); skipped rows say why. kv_cache: the page's
    choice of language model ('auto': the fused language_model_gqa where it runs, 'grow': language_model, 'wgsl': the
    page's WGSL decoder on the bundle's WGSL pack)."""
    executable = executable or chromium_path()
    why = unavailable(executable)
    if why is None and w.image_steps not in (None, inp.dims.num_image_tokens):
        why = "the page always generates whole images (--image-steps must be left at its default)"
    if why:
        return [{"name": backend, "dtype": d, "skipped": why} for d in dtypes]
    dims = json.loads((Path(bundle) / "config.json").read_text())["janusweb"]
    config = {"question": w.question, "imagePng": base64.b64encode(inp.image_png).decode(),
              "textTokens": w.text_tokens, "prompt": w.prompt, "counts": list(w.image_counts),
              "guidance": w.guidance, "temperature": w.temperature, "seed": w.draw_seed, "repeats": w.repeats,
              "kvCache": kv_cache}
    out = []
    with site_browser(bundle, backend, executable, headed, page) as (browser, url):
        for dtype in dtypes:
            with step(f"{backend} {dtype} in {browser.version}"):
                out.append(_one(browser, url, backend, dtype, config, inp, dims))
    return out


def _one(browser, url, backend, dtype, config, inp, dims) -> dict:
    page = browser.new_page()
    try:
        page.goto(url + "bench.html")
        page.wait_for_function("typeof window.runBench === 'function'")
        raw = page.evaluate("c => runBench(c)", {**config, "backend": backend, "dtype": dtype})
    except Exception as e:  # a backend that cannot run here is reported, not fatal
        return {"name": backend, "dtype": dtype, "skipped": f"{type(e).__name__}: {str(e).splitlines()[0]}"}
    finally:
        page.close()
    info = raw["backend"]
    if info["ep"] != backend:
        return {"name": backend, "dtype": dtype, "skipped": f"the page ran on {info['ep']}: {'; '.join(info['notes'])}"}
    adapter = info.get("adapter", "")
    software = backend == "webgpu" and software_adapter(adapter)
    label = {"device": ("software WebGPU (SwiftShader)" if software else "GPU") if backend == "webgpu" else "cpu",
             "ep": info["ep"], "adapter": adapter, "threads": info.get("threads"), "dtypes": info.get("dtypes"),
             "cpu_nodes": info.get("cpuNodes"), "kv_cache": info.get("kvCache"), "browser": browser.version,
             "user_agent": raw["userAgent"],
             "notes": info.get("notes")}
    return {"name": backend, "dtype": dtype, "label": label, "load_s": raw["load_ms"] / 1000,
            "load_sessions": raw["sessions"], "result": _aggregate(raw, inp, dims)}
