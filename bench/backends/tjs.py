"""tjs-webgpu and tjs-wasm: transformers.js on the same bundle in the same Chromium (bench/tjs.py)."""

from janusweb.bench import browser, tjs
from janusweb.bench.backends import BenchContext, BrowserBackend
from janusweb.bench.rows import Row


class _Tjs(BrowserBackend):
    def run(self, ctx: BenchContext, case: Row, runner) -> Row:
        raw = runner.call("tjs-bench.html", "runTransformersJs",
                          {**tjs.config(ctx.inp, ctx.w), "backend": self.ep, "dtype": case.dtype})
        adapter = raw["adapter"] or ""
        label = {"device": browser.webgpu_device(self.ep, adapter), "adapter": adapter,
                 "runner": f"transformers.js {raw['transformers']}", "onnxruntime_web": raw["ort"],
                 "browser": runner.version, "user_agent": raw["userAgent"]}
        return Row(case.name, case.dtype, label=label, load_s=raw["load_ms"] / 1000, result=tjs.aggregate(raw))


class TjsWebGpu(_Tjs):
    name, ep = "tjs-webgpu", "webgpu"


class TjsWasm(_Tjs):
    name, ep = "tjs-wasm", "wasm"
