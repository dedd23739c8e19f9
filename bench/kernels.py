"""The `kernels` scenario's parts: one weight MatMul in each weight format a bundle can ship (fp32 MatMul;
MatMulNBits 8-bit and 4-bit, float or int8 activations), timed on onnxruntime's CPU EP (Python) and in Chromium
(web/bench-pages/kernels.js, on WASM or WebGPU), the browser's outputs checked against onnxruntime's CPU EP on the same file.

The graphs are built here from seeded random weights and quantized by janusweb's own quantizer
(janusweb.quantize.matmul), so they hold exactly the ops a quantized bundle holds.
"""

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from janusweb.bench.pagerun import page_runner
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


def variant_models(k: int, n: int, folder: Path, names=tuple(VARIANTS)) -> dict:
    """Write each variant in `names` to folder/<name>.onnx; returns name -> path."""
    paths = {}
    for name in names:
        bits, level = VARIANTS[name]
        model = matmul_model(k, n)
        if bits is not None:
            model, _ = quantize_matmuls(model, bits, BLOCK_SIZE, level)
        paths[name] = folder / f"{name}.onnx"
        onnx.save_model(model, str(paths[name]))
    return paths


def kernel_input(m: int, k: int) -> np.ndarray:
    """x[i] = sin(i), as web/bench-pages/kernels.js builds it."""
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
        out[name] = {"ms": ms}
    return out


def browser(paths: dict, backend: str, m: int, k: int, warmup: int, repeats: int, executable: str | None,
            reference: dict, page: Path | None = None, driver: str = "auto", threads: int = 0) -> dict:
    """Times per variant, and the max abs diff of its output against onnxruntime's CPU EP on the same file.
    page: an already built page (web/build.mjs --bench output), for hosts without node; threads: WASM threads
    (0: the page's)."""
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
                "ep": backend, "m": m, "k": k, "warmup": warmup, "repeats": repeats, **({"threads": threads}
                                                                                      if threads else {})})
            version = runner.version
    results = {}
    for name, r in raw["results"].items():
        if "error" in r:
            results[name] = {"error": r["error"]}
            continue
        y = np.array(r["y"], np.float32).reshape(reference[name].shape)
        results[name] = {"ms": r["ms"], "max_abs_diff_vs_ort_cpu": float(np.abs(y - reference[name]).max())}
    return {"threads": raw["threads"], "adapter": raw["adapter"], "browser": version, "results": results}
