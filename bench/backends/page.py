"""webgpu and wasm: the demo page's own worker in Chromium (web/bench-pages/bench.js's runBench through bench/browser.py), any
page engine on either backend (`engine`: auto, ort-gqa, ort-grow, wgsl, cpu), `threads` (WASM threads; 0: the
page's choice), image steps, warm-up on or off, and the browser's memory (`memory`: its processes sampled while
the case runs)."""

import base64
import re

from janusweb.bench import browser
from janusweb.bench.backends import BrowserBackend
from janusweb.bench.memory import ProcessTreeMemory
from janusweb.bench.scenario import Skipped

# the page's decoder engines (web/lib/engines/list.js)
ENGINES = ("auto", "ort-gqa", "ort-grow", "wgsl", "cpu")


def page_config(backend: str, case: dict, work) -> dict:
    w, inp = work.workload, work.inputs
    config = {"backend": backend, "dtype": case["dtype"], "engine": case["engine"], "kvCache": case["engine"],
              "countGpuWork": backend == "webgpu", "question": w.question,
              "imagePng": base64.b64encode(inp.image_png).decode(), "textTokens": w.text_tokens, "prompt": w.prompt,
              "counts": [w.images] if w.images else [], "guidance": w.guidance, "temperature": w.temperature,
              "seed": w.draw_seed, "repeats": w.repeats, "warmup": w.warmup}
    if case["threads"]:
        config["threads"] = case["threads"]
    if w.image_steps:
        config["steps"] = w.image_steps
    if work.centred_on:  # the draws themselves: [images, T], the steps drawn from inp.draws, the rest the seed's
        import numpy as np

        from janusweb.bench.workload import seeded_draws
        full = seeded_draws(w, inp.dims.num_image_tokens)
        full[:, :inp.steps] = inp.draws
        config["draws"] = full.astype(np.float32).ravel().tolist()
    return config


def engine_memory_bytes(raw: dict) -> int | None:
    """The engine's own memory (the CPU engine's WebAssembly memory) after the runs, as the page reports it, or as
    an older page's description gives it ("... N MiB of its own memory")."""
    after = ((raw.get("info") or {}).get("engineInfo") or {}).get("memoryBytes")
    if after is not None:
        return after
    found = re.search(r"([\d.]+) MiB of its own memory", raw["backend"].get("kvCache") or "")
    return int(float(found.group(1)) * 2**20) if found else None


class _Page(BrowserBackend):
    takes_engine = takes_threads = True

    def run(self, ctx, case: dict, work, runner) -> dict:
        config = page_config(self.name, case, work)
        if case["memory"]:
            with ProcessTreeMemory(name="chrom") as mem:
                raw = runner.call("bench.html", "runBench", config)
            memory = mem.report()
        else:
            raw, memory = runner.call("bench.html", "runBench", config), {}
        info = raw["backend"]
        if info["ep"] != self.name:
            raise Skipped(f"the page ran on {info['ep']}: {'; '.join(info['notes'])}")
        asked = case["engine"]
        if asked != "auto" and info.get("engine") != asked:
            raise Skipped(f"the page ran the {info.get('engine')} engine on {self.name}, not {asked}: "
                          f"{'; '.join(info['notes']) or 'it does not run there'}")
        adapter = info.get("adapter") or ""
        m = browser.measurement(raw, work.config["decoded_image_size"], gpu=self.name == "webgpu")
        for r in m["image"]:  # a shortened image's tokens after its steps are 0: the tokens drawn, as Python's
            r["tokens"] = [t[:work.inputs.steps] for t in r["tokens"]]
        m["memory"] = {**memory, "engine_memory_bytes": engine_memory_bytes(raw)}
        m["label"] = {"device": browser.webgpu_device(self.name, adapter), "ep": info["ep"], "adapter": adapter,
                      "threads": info.get("threads"), "engine": info.get("engine"), "kv_cache": info.get("kvCache"),
                      "dtype": info.get("dtype"), "browser": runner.version, "notes": info.get("notes")}
        m["dtypes"] = info.get("dtypes")
        m["extra"] = {"load_sessions": raw["sessions"], "dtypes": info.get("dtypes"), "cpu_nodes": info.get("cpuNodes"),
                      "user_agent": raw["userAgent"], "js_heap": raw.get("memory")}
        return m


class WebGpu(_Page):
    name = ep = "webgpu"


class Wasm(_Page):
    name = ep = "wasm"
