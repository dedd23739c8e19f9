"""onnxruntime-web's own WASM path per step, on q4 where it fits: the janus-pro-1b q4 bundle does not fit ORT's
WASM heap (out of memory at the first run), so the per-step time is built from graphs that do fit, holding the
bundle's own op (MatMulNBits, 4 bits, block 32, janusweb's quantizer) at the 1B decoder's real shapes:

- `layer`: one decoder layer's weight matrices in a chain, x[M,2048] -> qkv (2048x6144) -> o (2048x2048, on the
  first 2048 columns) -> gate, up (2048x5632) -> gate*up -> down (5632x2048);
- `image_head`: the image head's matrices, 2048x2048 then 2048x16384;
- `head_16384`: one 2048x16384 matrix, from which lm_head (2048x102400) is scaled by 102400/16384 = 6.25 (ORT's
  WASM MatMulNBits dequantizes the whole matrix to fp32 on every call, so its time is linear in the matrix).

text token = 24 x layer(M=1) + 6.25 x head_16384(M=1); CFG image step = 24 x layer(M=2) + image_head(M=2).
Attention, norms, rotary and the embedding lookup are left out: a lower bound on ORT's step, so a ratio against
it understates the difference.
"""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from janusweb.bench.kernels import kernel_input
from janusweb.quantize.matmul import quantize_matmuls

HIDDEN, INTER, QKV, VOCAB, IMAGE_VOCAB, LAYERS = 2048, 5632, 6144, 102400, 16384, 24
HEAD_SLICE = 16384
LM_HEAD_SCALE = VOCAB / HEAD_SLICE
BITS, BLOCK = 4, 32


def _graph(name: str, nodes: list, weights: dict, out_dim: int, seed: int) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array((rng.standard_normal(shape, dtype=np.float32) / np.sqrt(shape[0])).astype(np.float32), w)
             for w, shape in weights.items()]
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["M", HIDDEN])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["M", out_dim])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    return quantize_matmuls(model, BITS, BLOCK, 0)[0]


def layer_model(seed: int = 0) -> onnx.ModelProto:
    mm = lambda a, w, y: helper.make_node("MatMul", [a, w], [y], name=y)  # noqa: E731
    nodes = [mm("x", "W_qkv", "qkv"),
             helper.make_node("Slice", ["qkv", "s0", "s1", "ax"], ["attn"], name="attn"),
             mm("attn", "W_o", "o"), mm("o", "W_gate", "gate"), mm("o", "W_up", "up"),
             helper.make_node("Mul", ["gate", "up"], ["h"], name="h"), mm("h", "W_down", "y")]
    model = _graph("layer", nodes, {"W_qkv": (HIDDEN, QKV), "W_o": (HIDDEN, HIDDEN), "W_gate": (HIDDEN, INTER),
                                    "W_up": (HIDDEN, INTER), "W_down": (INTER, HIDDEN)}, HIDDEN, seed)
    model.graph.initializer.extend([numpy_helper.from_array(np.array([v], np.int64), n)
                                    for n, v in (("s0", 0), ("s1", HIDDEN), ("ax", 1))])
    return model


def image_head_model(seed: int = 1) -> onnx.ModelProto:
    nodes = [helper.make_node("MatMul", ["x", "W_proj"], ["p"], name="p"),
             helper.make_node("MatMul", ["p", "W_vision"], ["y"], name="y")]
    return _graph("image_head", nodes, {"W_proj": (HIDDEN, HIDDEN), "W_vision": (HIDDEN, IMAGE_VOCAB)},
                  IMAGE_VOCAB, seed)


def head_slice_model(seed: int = 2) -> onnx.ModelProto:
    return _graph("head_16384", [helper.make_node("MatMul", ["x", "W"], ["y"], name="y")],
                  {"W": (HIDDEN, HEAD_SLICE)}, HEAD_SLICE, seed)


def write_models(folder: Path) -> dict:
    """name -> path of the three q4 graphs, written to `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, build in (("layer", layer_model), ("image_head", image_head_model), ("head_16384", head_slice_model)):
        paths[name] = folder / f"ort-{name}-q4.onnx"
        onnx.save_model(build(), str(paths[name]))
    return paths


def reference(paths: dict, m: int) -> dict:
    """Each graph's output on onnxruntime's CPU EP for kernel_input(m, 2048): the browser's must match."""
    import onnxruntime as ort
    x = kernel_input(m, HIDDEN)
    return {n: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
            for n, p in paths.items()}


def measure(runner, paths: dict, url_dir: str, m: int, threads: int, repeats: int = 5) -> dict:
    """One kernels.html call: every graph at M=m on `threads` WASM threads; times (ms) and the last output."""
    return runner.call("kernels.html", "runKernels", {
        "models": [{"name": n, "url": f"{url_dir}/{p.name}"} for n, p in paths.items()],
        "ep": "wasm", "m": m, "k": HIDDEN, "warmup": 1, "repeats": repeats, "threads": threads})


def step_ms(medians: dict, rows: int) -> float:
    """ORT's per-step time from the graphs' median ms at M=rows (see the module's docstring)."""
    if rows == 1:
        return LAYERS * medians["layer"] + LM_HEAD_SCALE * medians["head_16384"]
    return LAYERS * medians["layer"] + medians["image_head"]


def checked_medians(raw: dict, ref: dict) -> dict:
    """Median ms per graph of one measure() call, after checking the browser's output against onnxruntime's CPU EP
    (within 1e-2 of the output's scale)."""
    out = {}
    for name, r in raw["results"].items():
        if "error" in r:
            raise RuntimeError(f"onnxruntime-web could not run {name}: {r['error']}")
        diff = float(np.abs(np.array(r["y"], np.float32).reshape(ref[name].shape) - ref[name]).max())
        if diff > 1e-2 * max(1.0, float(np.abs(ref[name]).max())):
            raise RuntimeError(f"onnxruntime-web's {name} differs from onnxruntime CPU by {diff}")
        out[name] = float(np.median(r["ms"]))
    return out
