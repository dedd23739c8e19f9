"""The `run` scenario's backends: one small class per backend, listed once in REGISTRY.

A backend says which dtypes it runs (`dtypes`: the bundle's variants, or its own: native PyTorch runs the
source model at fp32/bf16, wllama its Q8_0 GGUF, whatever `--dtype` asks) and which of the page's parameters it
takes (`engine`, `threads`: for the others they are left out of its cases), why it cannot run on this host
(`unavailable`), opens what its cases on one bundle share (`session`: a browser, a GPU copy of the model) and runs
one case (`run`), returning what it recorded (bench/measures.py's measurement). An exception from `session` or
`run` makes the case(s) failed rows with the error (bench/driver.py); a backend never catches to hide a bug.

Adding a backend: one file in this folder with a Backend subclass, and one line in REGISTRY below.
Backends never change the shared model in place (native-cuda works on its own GPU copy).
"""

import contextlib
import importlib
import json
from pathlib import Path

# backend name -> "module:Class" (imported only when asked for: browser backends need no torch.cuda, and so on)
REGISTRY = {
    "webgpu": "janusweb.bench.backends.page:WebGpu",
    "wasm": "janusweb.bench.backends.page:Wasm",
    "native-cuda": "janusweb.bench.backends.native:NativeCuda",
    "native-cuda-generate": "janusweb.bench.backends.native:NativeCudaGenerate",
    "native-cuda-compiled": "janusweb.bench.backends.native:NativeCudaCompiled",
    "native-cpu": "janusweb.bench.backends.native:NativeCpu",
    "ort-cpu": "janusweb.bench.backends.ort:OrtCpu",
    "ort-cuda": "janusweb.bench.backends.ort:OrtCuda",
    "tjs-webgpu": "janusweb.bench.backends.tjs:TjsWebGpu",
    "tjs-wasm": "janusweb.bench.backends.tjs:TjsWasm",
    "wllama": "janusweb.bench.backends.wllama:Wllama",
}
NAMES = tuple(REGISTRY)


def bundle_dtypes(bundle: Path) -> list:
    """fp32, then every dtype `janusweb quantize` wrote for the language model (other graphs without that
    variant run at fp32, as on the page)."""
    graphs = json.loads((Path(bundle) / "manifest.json").read_text())["graphs"]
    return ["fp32", *graphs["language_model"].get("variants", {})]


class Backend:
    name: str = ""
    own_dtypes: tuple = ()  # the dtypes it always runs (not the bundle's variants): --dtype does not apply
    takes_engine = False  # the page's decoder engine (?engine=)
    takes_threads = False  # a thread count

    def dtypes(self, bundle: Path) -> list:
        return list(self.own_dtypes) or bundle_dtypes(bundle)

    def refuses(self, case: dict) -> str | None:
        """Why this backend cannot run the case's parameters on its bundle, or None."""
        if case["dtype"] not in self.dtypes(case["bundle"]):
            return f"{case['bundle']} has no {case['dtype']} variant ({', '.join(self.dtypes(case['bundle']))})"
        return None

    def unavailable(self, ctx) -> str | None:
        """Why this backend cannot run on this host, or None."""
        return None

    def session_key(self, case: dict) -> tuple:
        """Consecutive cases with the same key share one session."""
        return (self.name, case["bundle"])

    @contextlib.contextmanager
    def session(self, ctx, bundle: Path):
        """What the cases on one bundle share while they run (yielded to `run`)."""
        yield None

    def run(self, ctx, case: dict, work, session) -> dict:
        """work: bench.scenarios.run.Work (the bundle, its inputs, the workload). Returns the measurement."""
        raise NotImplementedError


class BrowserBackend(Backend):
    """A backend that runs in Chromium on a temporary site of the bundle (bench/browser.py); `ep`: webgpu or wasm."""
    ep = ""

    def unavailable(self, ctx) -> str | None:
        from janusweb.bench import browser
        return browser.unavailable(ctx.browser, ctx.driver)

    @contextlib.contextmanager
    def session(self, ctx, bundle: Path):
        from janusweb.bench import browser
        with browser.site_runner(bundle, self.ep, ctx.browser, ctx.headed, ctx.page, ctx.driver) as runner:
            yield runner


def load(name: str) -> Backend:
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)()
