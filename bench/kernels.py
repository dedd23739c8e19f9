"""`janusweb bench-kernels`: one weight MatMul of Janus-Pro-1B's shapes in each weight format the bundle can ship
(fp32 MatMul; MatMulNBits 8-bit and 4-bit, float or int8 activations), timed on onnxruntime's CPU EP and in
Chromium on WASM (and WebGPU where an adapter exists). It answers which format the WASM fallback should run:
weight-only MatMulNBits kernels differ a lot between CPU builds, and a 1B model must be 8- or 4-bit to fit in
WASM's 4 GB memory at all.

The graphs are built here from seeded random weights and quantized by janusweb's own quantizer
(janusweb.quantize.matmul), so they hold exactly the ops a quantized bundle holds.
"""

import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from janusweb.atomic import atomic_dir
from janusweb.bench.browser import software_adapter
from janusweb.bench.pagerun import page_runner
from janusweb.bench.timing import stats
from janusweb.env import chromium_path, versions
from janusweb.log import step
from janusweb.quantize.matmul import quantize_matmuls
from janusweb.site import build_page

# name -> (bits, accuracy_level); None bits: the fp32 MatMul
VARIANTS = {"fp32": (None, None), "int8": (8, 0), "int8-acc4": (8, 4), "q4": (4, 0), "q4-acc4": (4, 4)}
BLOCK_SIZE = 32


def matmul_model(k: int, n: int, seed: int = 0) -> onnx.ModelProto:
    """y[M,N] = x[M,K] @ W[K,N], W ~ N(0, 1/K)."""
    w = (np.random.default_rng(seed).standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="matmul")], "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["M", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["M", n])],
        [numpy_helper.from_array(w, "W")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


def variant_models(k: int, n: int, folder: Path) -> dict:
    """Write every variant to folder/<name>.onnx; returns name -> path."""
    paths = {}
    for name, (bits, level) in VARIANTS.items():
        model = matmul_model(k, n)
        if bits is not None:
            model, _ = quantize_matmuls(model, bits, BLOCK_SIZE, level)
        paths[name] = folder / f"{name}.onnx"
        onnx.save_model(model, str(paths[name]))
    return paths


def kernel_input(m: int, k: int) -> np.ndarray:
    """x[i] = sin(i), as web/kernels.js builds it."""
    return np.sin(np.arange(m * k, dtype=np.float64)).astype(np.float32).reshape(m, k)


def reference_outputs(paths: dict, m: int, k: int) -> dict:
    """Each variant's output on onnxruntime's CPU EP: what the browser's must match."""
    x = kernel_input(m, k)
    return {name: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
            for name, path in paths.items()}


def ort_cpu(paths: dict, m: int, k: int, warmup: int, repeats: int) -> dict:
    """Times per variant on onnxruntime's CPU EP (its default threads)."""
    x = kernel_input(m, k)
    out = {}
    for name, path in paths.items():
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        ms = []
        for r in range(warmup + repeats):
            t0 = time.perf_counter()
            session.run(None, {"x": x})
            if r >= warmup:
                ms.append((time.perf_counter() - t0) * 1000)
        out[name] = {"ms": stats(np.array(ms))}
    return out


def browser(paths: dict, backend: str, m: int, k: int, warmup: int, repeats: int, executable: str | None,
            reference: dict, page: Path | None = None, driver: str = "auto") -> dict:
    """Times per variant, and the max abs diff of its output against onnxruntime's CPU EP on the same file.
    page: an already built page (web/build.mjs --bench output), for hosts without node."""
    with tempfile.TemporaryDirectory(prefix="janusweb-kernels-") as tmp:
        site = Path(tmp) / "site"
        if page:
            shutil.copytree(page, site)
        else:
            build_page(site, bench=True)
        (site / "kernels").mkdir()
        for path in paths.values():
            shutil.copyfile(path, site / "kernels" / path.name)
        with page_runner(site, backend, executable, driver=driver) as runner:
            raw = runner.call("kernels.html", "runKernels", {
                "models": [{"name": name, "url": f"kernels/{path.name}"} for name, path in paths.items()],
                "ep": backend, "m": m, "k": k, "warmup": warmup, "repeats": repeats})
            version = runner.version
    results = {}
    for name, r in raw["results"].items():
        if "error" in r:
            results[name] = {"error": r["error"]}
            continue
        y = np.array(r["y"], np.float32).reshape(reference[name].shape)
        results[name] = {"ms": stats(np.array(r["ms"])),
                         "max_abs_diff_vs_ort_cpu": float(np.abs(y - reference[name]).max())}
    return {"threads": raw["threads"], "adapter": raw["adapter"], "browser": version, "results": results}


def report_md(rep: dict) -> str:
    s = rep["shape"]
    lines = [f"# One MatMul, M={s['m']} K={s['k']} N={s['n']} (Janus-Pro-1B's MLP up projection), {rep['date']}",
             "", f"CPU: {rep['cpu']}; {rep['versions']}", "",
             "Median ms per call (p95); the browser times include reading the result back. d: max abs diff of the "
             "browser's output against onnxruntime's CPU EP on the same file (outputs are ~N(0, 1)).", "",
             "| backend | " + " | ".join(VARIANTS) + " |", "|---|" + "---|" * len(VARIANTS)]
    for name, row in rep["backends"].items():
        cells = []
        for v in VARIANTS:
            r = row.get("results", row).get(v, {})
            diff = f" d={r['max_abs_diff_vs_ort_cpu']:.0e}" if "max_abs_diff_vs_ort_cpu" in r else ""
            cells.append(r["error"][:60] if "error" in r else f"{r['ms']['p50']:.2f} ({r['ms']['p95']:.2f}){diff}")
        label = row.get("label", name)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_kernels(out: Path, backends: list, m: int = 2, k: int = 2048, n: int = 5632, warmup: int = 3,
                repeats: int = 20, executable: str | None = None, page: Path | None = None,
                driver: str = "auto") -> dict:
    executable = executable or chromium_path()
    rep = {"date": time.strftime("%Y-%m-%d"), "shape": {"m": m, "k": k, "n": n}, "block_size": BLOCK_SIZE,
           "cpu": platform.processor() or platform.machine(), "versions": versions(), "backends": {}}
    with atomic_dir(Path(out)) as tmp:
        paths = variant_models(k, n, tmp)
        reference = reference_outputs(paths, m, k)
        for backend in backends:
            with step(f"kernels on {backend}"):
                if backend == "ort-cpu":
                    rep["backends"][backend] = {"label": "onnxruntime CPU EP (Python)",
                                                "results": ort_cpu(paths, m, k, warmup, repeats)}
                elif not executable:
                    rep["backends"][backend] = {"label": backend, "results": {
                        v: {"error": "no Chromium found (--browser PATH)"} for v in VARIANTS}}
                else:
                    r = browser(paths, backend, m, k, warmup, repeats, executable, reference, page, driver)
                    adapter = r["adapter"] or "no adapter"
                    software = software_adapter(adapter)
                    where = (f"WASM, {r['threads']} threads" if backend == "wasm" else
                             f"WebGPU, {adapter}{' (software WebGPU: not a GPU figure)' if software else ''}")
                    rep["backends"][backend] = {**r, "label": f"Chromium {r['browser']} {where}"}
        for path in paths.values():
            path.unlink()
        (tmp / "report.json").write_text(json.dumps(rep, indent=2) + "\n")
        (tmp / "report.md").write_text(report_md(rep))
    return rep

