"""Bench backends: one small class per backend, listed once in REGISTRY.

A backend says which rows it would give (`cases`), why it cannot run on this host (`unavailable`, then every
case is `skipped` with that reason), opens what its rows share (`session`: a browser, a GPU copy of the model)
and runs one case (`run`). An exception from `session` or `run` makes the case(s) `failed` with the error;
`janusweb.bench.driver` does that, so a backend never catches to hide a bug.

Adding a backend: one file in this folder with a Backend subclass, and one line in REGISTRY below.
Backends never change the shared model in place (native-cuda works on its own GPU copy), so the order in
which they run is the order asked for.
"""

import contextlib
import importlib
from dataclasses import dataclass, field
from pathlib import Path

from janusweb.bench.rows import Row
from janusweb.bench.workload import Inputs, Workload

# backend name -> "module:Class" (imported only when asked for: browser backends need no torch.cuda, and so on)
REGISTRY = {
    "webgpu": "janusweb.bench.backends.page:WebGpu",
    "wasm": "janusweb.bench.backends.page:Wasm",
    "native-cuda": "janusweb.bench.backends.native:NativeCuda",
    "native-cpu": "janusweb.bench.backends.native:NativeCpu",
    "ort-cpu": "janusweb.bench.backends.ort:OrtCpu",
    "ort-cuda": "janusweb.bench.backends.ort:OrtCuda",
    "tjs-webgpu": "janusweb.bench.backends.tjs:TjsWebGpu",
    "tjs-wasm": "janusweb.bench.backends.tjs:TjsWasm",
    "wllama": "janusweb.bench.backends.wllama:Wllama",
}
NAMES = tuple(REGISTRY)


@dataclass
class BenchContext:
    """What every backend of one run shares."""
    bundle: Path
    inp: Inputs
    w: Workload
    dtypes: list  # bundle variants asked for (fp32, int8, ...)
    model: object = None  # the PyTorch model in fp32 on the CPU; backends never modify it
    browser: str | None = None  # Chromium executable
    headed: bool = False
    page: Path | None = None  # an already built page (hosts without node)
    engines: list = field(default_factory=lambda: ["auto"])  # the page's decoder engines (WebGPU)
    driver: str = "auto"  # how Chromium is driven: playwright, http (no Playwright), auto


class Backend:
    name: str = ""

    def cases(self, ctx: BenchContext) -> list:
        """The rows this backend gives, not yet run (Row with name, dtype, variant)."""
        return [Row(self.name, d) for d in ctx.dtypes]

    def unavailable(self, ctx: BenchContext) -> str | None:
        """Why this backend cannot run on this host, or None."""
        return None

    @contextlib.contextmanager
    def session(self, ctx: BenchContext):
        """What the cases share while they run (yielded to `run`)."""
        yield None

    def run(self, ctx: BenchContext, case: Row, session) -> Row:
        raise NotImplementedError


class BrowserBackend(Backend):
    """A backend that runs in Chromium on a temporary site of the bundle (bench/browser.py); `ep`: webgpu or wasm."""
    ep = ""

    def unavailable(self, ctx: BenchContext) -> str | None:
        from janusweb.bench import browser
        return browser.unavailable(ctx)

    @contextlib.contextmanager
    def session(self, ctx: BenchContext):
        from janusweb.bench import browser
        with browser.site_runner(ctx, self.ep) as runner:
            yield runner


def load(name: str) -> Backend:
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)()
