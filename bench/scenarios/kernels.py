"""One weight MatMul in every weight format a bundle can ship, per backend (onnxruntime CPU EP, Chromium WASM/WebGPU).

It answers which format the WASM fallback should run: weight-only MatMulNBits kernels differ a lot between CPU
builds, and a 1B model must be 8- or 4-bit to fit in WASM's 4 GB memory at all. The graphs are built from seeded
random weights and quantized by janusweb's own quantizer (janusweb.quantize.matmul), so they hold exactly the
ops a quantized bundle holds. Browser times include reading the result back; their outputs are checked against
onnxruntime's CPU EP on the same file (max abs diff; outputs are ~N(0, 1)).
"""

import contextlib
import tempfile
from pathlib import Path

from janusweb.bench.pagerun import browser_params
from janusweb.bench.scenario import Metric, Param, Result, Scenario, unique

FORMATS = ("fp32", "int8", "int8-acc4", "q4", "q4-acc4")  # bench/kernels.py's VARIANTS


def shape(text: str) -> str:
    parts = text.split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"{text!r} is not MxKxN")
    return text


class Kernels(Scenario):
    """One MatMul per weight format on onnxruntime's CPU EP and in Chromium (WASM, WebGPU)."""
    name = "kernels"
    params = (
        Param("backend", str, ("ort-cpu", "wasm", "webgpu"), "where it runs", choices=("ort-cpu", "wasm", "webgpu")),
        Param("shape", shape, ("2x2048x5632",), "MxKxN (2x2048x5632: one Janus-Pro-1B MLP projection, 2 rows)"),
        Param("format", str, FORMATS, "weight formats (-acc4: int8 activations, MatMulNBits accuracy_level 4)",
              choices=FORMATS),
        Param("threads", int, (0,), "WASM threads (0: the page's; wasm only)"),
        Param("repeats", int, 20, "timed calls after the warm-up ones", multi=False),
        Param("warmup", int, 3, "untimed calls first", multi=False),
        *browser_params(),
    )
    metrics = (
        Metric("ms", "ms", "one call, median over the timed calls"),
        Metric("ms_p95", "ms", "one call, 95th percentile"),
        Metric("weight_gb_per_s", "GB/s", "the weight file's bytes / median call"),
        Metric("max_abs_diff_vs_ort_cpu", "", "output against onnxruntime's CPU EP on the same file"),
    )

    def cases(self, values: dict) -> list:
        """threads is a parameter of wasm only: left out (None) of the others' cases."""
        return unique({**c, "threads": c["threads"] if c["backend"] == "wasm" else None}
                      for c in super().cases(values))

    @contextlib.contextmanager
    def context(self, run):
        """The bench page built once for every browser session (unless --page gives one)."""
        with tempfile.TemporaryDirectory(prefix="janusweb-kernels-page-") as tmp:
            page = run.values["page"]
            if page is None and any(b != "ort-cpu" for b in run.values["backend"]):
                from janusweb.site import build_page
                page = Path(tmp) / "page"
                build_page(page, bench=True)
            yield {"values": run.values, "page": page}

    def unavailable(self, ctx, case: dict) -> str | None:
        from janusweb.bench.browser import unavailable
        return None if case["backend"] == "ort-cpu" else unavailable(case["browser"], case["driver"])

    def session_key(self, case: dict):
        return (case["backend"], case["shape"], case["threads"])

    @contextlib.contextmanager
    def session(self, ctx, case: dict):
        """Every asked format of this backend and shape, timed in one go (one page call in the browser)."""
        from janusweb.bench import kernels
        from janusweb.bench.browser import software_adapter
        from janusweb.env import chromium_path
        m, k, n = (int(v) for v in case["shape"].split("x"))
        with tempfile.TemporaryDirectory(prefix="janusweb-kernels-") as tmp:
            paths = kernels.variant_models(k, n, Path(tmp), ctx["values"]["format"])
            sizes = {name: p.stat().st_size for name, p in paths.items()}
            if case["backend"] == "ort-cpu":
                import onnxruntime as ort
                yield {"results": kernels.ort_cpu(paths, m, k, case["warmup"], case["repeats"]), "sizes": sizes,
                       "label": {"device": "cpu", "runner": f"onnxruntime {ort.__version__} CPU EP (Python)"}}
                return
            reference = kernels.reference_outputs(paths, m, k)
            r = kernels.browser(paths, case["backend"], m, k, case["warmup"], case["repeats"],
                                case["browser"] or chromium_path(), reference, ctx["page"], case["driver"],
                                case["threads"] or 0)
            adapter = r["adapter"] or ""
            where = (f"WASM, {r['threads']} threads" if case["backend"] == "wasm" else
                     f"WebGPU, {adapter or 'no adapter'}"
                     + (" (software WebGPU: not a GPU figure)" if software_adapter(adapter) else ""))
            yield {"results": r["results"], "sizes": sizes,
                   "label": {"device": "gpu" if case["backend"] == "webgpu" and not software_adapter(adapter)
                             else "cpu", "runner": f"Chromium {r['browser']} {where}", "threads": r["threads"],
                             "adapter": adapter}}

    def run(self, ctx, case: dict, session) -> Result:
        from janusweb import metrics
        r = session["results"][case["format"]]
        if "error" in r:
            raise RuntimeError(r["error"])
        s = metrics.stats(r["ms"])
        figures = {"ms": s["p50"], "ms_p95": s["p95"], "weight_gb_per_s": session["sizes"][case["format"]]
                   / s["p50"] / 1e6, "max_abs_diff_vs_ort_cpu": r.get("max_abs_diff_vs_ort_cpu")}
        return Result({k: v for k, v in figures.items() if v is not None}, session["label"], {"ms": r["ms"]})
