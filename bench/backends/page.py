"""webgpu and wasm: the demo page's own worker in Chromium (web/bench.js through bench/browser.py), one row per
bundle dtype and, on WebGPU, per decoder engine asked for (--kv-cache ort-gqa,ort-grow,wgsl)."""

import base64
import json

from janusweb.bench import browser
from janusweb.bench.backends import BenchContext, BrowserBackend
from janusweb.bench.rows import Row


class _Page(BrowserBackend):
    def engines(self, ctx: BenchContext) -> list:
        return ["auto"]

    def cases(self, ctx: BenchContext) -> list:
        engines = self.engines(ctx)
        return [Row(self.name, d, e if len(engines) > 1 else "") for d in ctx.dtypes for e in engines]

    def unavailable(self, ctx: BenchContext) -> str | None:
        if ctx.w.image_steps not in (None, ctx.inp.dims.num_image_tokens):
            return "the page always generates whole images (--image-steps must be left at its default)"
        return super().unavailable(ctx)

    def run(self, ctx: BenchContext, case: Row, runner) -> Row:
        w, inp = ctx.w, ctx.inp
        engine = case.variant or self.engines(ctx)[0]
        config = {"question": w.question, "imagePng": base64.b64encode(inp.image_png).decode(),
                  "textTokens": w.text_tokens, "prompt": w.prompt, "counts": list(w.image_counts),
                  "guidance": w.guidance, "temperature": w.temperature, "seed": w.draw_seed, "repeats": w.repeats,
                  "kvCache": engine, "backend": self.name, "dtype": case.dtype}
        raw = runner.call("bench.html", "runBench", config)
        info = raw["backend"]
        if info["ep"] != self.name:
            return case.skipped(f"the page ran on {info['ep']}: {'; '.join(info['notes'])}")
        adapter = info.get("adapter", "")
        label = {"device": browser.webgpu_device(self.name, adapter), "ep": info["ep"], "adapter": adapter,
                 "threads": info.get("threads"), "dtypes": info.get("dtypes"), "cpu_nodes": info.get("cpuNodes"),
                 "engine": info.get("engine"), "kv_cache": info.get("kvCache"), "browser": runner.version, "user_agent": raw["userAgent"],
                 "notes": info.get("notes")}
        dims = json.loads((ctx.bundle / "config.json").read_text())["janusweb"]
        return Row(case.name, case.dtype, case.variant, label=label, load_s=raw["load_ms"] / 1000,
                   extra={"load_sessions": raw["sessions"]}, result=browser.aggregate(raw, inp, dims))


class WebGpu(_Page):
    name = ep = "webgpu"

    def engines(self, ctx: BenchContext) -> list:
        return list(ctx.engines)


class Wasm(_Page):
    name = ep = "wasm"
