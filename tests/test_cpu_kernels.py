"""The CPU engine's WebAssembly kernels (web/cpu, built with zig's clang) under Node against numpy: each matrix
kernel at fp32 / MatMulNBits int8 / q4 with column splits as threads share them, plain and relaxed-SIMD builds,
RMS norm, and whole decoder passes (prefill then single steps over the KV cache, several rows, 1 and 2 threads)
against a numpy forward over whole sequences (tests/cpu_reference.py). Quantized weights meet int8 activations
(per block of 32): the reference models that arithmetic, and is itself checked against onnxruntime's MatMulNBits
at accuracy_level 4, the Python reference of the page's CPU engine."""

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cpu_reference as ref

pytest.importorskip("ziglang", reason="the kernels are built with PyPI ziglang: pip install -e .")
REPO = Path(__file__).resolve().parent.parent
CHECK = REPO / "tests" / "js" / "cpu_check.mjs"
pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node runs the kernels")
DECODER = {"hidden_size": 64, "intermediate_size": 96, "num_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
           "num_layers": 2, "epsilon": 1e-6, "max_positions": 80}


@pytest.fixture(scope="module")
def wasm(tmp_path_factory) -> Path:
    sys.path.insert(0, str(REPO / "web" / "cpu"))
    from build import build
    return build(tmp_path_factory.mktemp("cpu-wasm"))


# Relaxed-SIMD builds run in Chromium, the page's browser: Node 20's V8 (11.3, the proposal behind a flag) returns
# twice the sum from i32x4.relaxed_dot_i8x16_i7x16_add_s, where Chromium 156 gives the specified one.
MATMUL_PAGE = """async (a) => {
  const bytes = (t) => Uint8Array.from(atob(t), (c) => c.charCodeAt(0));
  const memory = new WebAssembly.Memory({ initial: 512, maximum: 65535 });
  const e = (await WebAssembly.instantiate(bytes(a.wasm), { env: { memory } })).instance.exports;
  let top = e.__heap_base.value;
  const put = (t) => { if (!t) return 0; const b = bytes(t), at = Math.ceil(top / 64) * 64;
    new Uint8Array(memory.buffer, at, b.length).set(b); top = at + b.length; return at; };
  const x = put(a.x), y = a.y ? put(a.y) : put(btoa(String.fromCharCode(...new Uint8Array(4 * a.M * a.N))));
  for (const [n0, n1] of a.splits) {
    if (a.op === 'matmul') e.matmul(a.dtype, x, a.M, a.K, put(a.w), put(a.s), y, a.N, n0, n1, a.mode);
    else e.gate_up(a.dtype, x, a.M, a.K, put(a.wg), put(a.sg), put(a.wu), put(a.su), y, a.N, n0, n1);
  }
  return Array.from(new Float32Array(memory.buffer, y, a.M * a.N));
}"""


@pytest.fixture(scope="module")
def chromium():
    sync_api = pytest.importorskip("playwright.sync_api", reason="relaxed SIMD runs in Chromium: pip install -e '.[test]'")
    from janusweb.env import chromium_path
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True)
        yield browser.new_page()
        browser.close()


def run_kernel(request, tmp_path: Path, build: str, spec: dict, **files) -> np.ndarray:
    """One matmul / gate_up over column splits: the plain build under Node, the relaxed one in Chromium."""
    wasm = request.getfixturevalue("wasm")
    if build == "plain":
        return run(tmp_path, {**spec, "wasm": str(wasm / "kernels.wasm")}, **files)
    page = request.getfixturevalue("chromium")
    b64 = lambda a: base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()  # noqa: E731
    args = {**spec, "dtype": {"fp32": 0, "int8": 1, "q4": 2}[spec["dtype"]],  # runtime.js's DTYPE
            "wasm": base64.b64encode((wasm / "kernels-relaxed.wasm").read_bytes()).decode(),
            **{name: b64(a) for name, a in files.items()}}
    return np.array(page.evaluate(MATMUL_PAGE, args), np.float32)


def run(tmp_path: Path, spec: dict, **files) -> np.ndarray:
    for name, array in files.items():
        (tmp_path / f"{name}.bin").write_bytes(np.ascontiguousarray(array).tobytes())
    spec = {**spec, "files": [f"{n}.bin" for n in files]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    done = subprocess.run(["node", "--experimental-wasm-relaxed-simd", str(CHECK), str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return np.frombuffer((tmp_path / "out.bin").read_bytes(), np.float32)


def assert_close(got, want, rtol=2e-5):
    scale = np.abs(want).max()
    diff = np.abs(got - want).max()
    assert diff <= rtol * max(scale, 1.0), f"NOT OK: max diff {diff:.3g} (reference max {scale:.3g})"


def assert_rounding(got, want, magnitude, steps):
    """Equal up to float32 summation order: the integer products are exact, each output adds `steps` float32
    terms per SIMD lane (K/32 blocks, or K/4 products for fp32 weights) plus the lanes' sum, each addition
    rounding by at most 2^-24 of a running sum bounded by sum |terms| (`magnitude`)."""
    bound = (steps + 4) * 2.0**-24 * magnitude + 1e-30
    worst = float((np.abs(got - want) / bound).max())
    assert worst <= 1, f"NOT OK: {worst:.2f} x the float32 rounding bound (max diff {np.abs(got - want).max():.3g})"


@pytest.mark.parametrize("dtype", ["fp32", "int8", "q4"])
@pytest.mark.parametrize("M", [1, 2, 3, 4, 5, 17])
@pytest.mark.parametrize("mode", [0, 1])
@pytest.mark.parametrize("build", ["plain", "relaxed"])
@pytest.mark.parametrize("K", [96, 160])
def test_matmul(request, tmp_path, dtype, M, mode, build, K):
    """Rows 1-4 (one pass), 5 (two), 17 (over the 16 rows quantized at a time); columns split at odd places;
    K of 3 blocks (the kernels' one-block path) and 5 (four blocks at a time, then one)."""
    rng = np.random.default_rng(M + 7 * mode + K)
    N = 40
    arrays, w = ref.weights(rng, dtype, N, K)
    x = (rng.standard_normal((M, K)) * rng.random((M, 1)) * 4).astype(np.float32)
    x[0, 32:64] = 0  # a block of zeros: scale 0
    y0 = rng.standard_normal((M, N)).astype(np.float32)
    files = {"x": x, "w": arrays["w"], **({"s": arrays["scales"]} if "scales" in arrays else {}),
             **({"y": y0} if mode else {})}
    spec = {"op": "matmul", "dtype": dtype, "M": M, "K": K, "N": N, "mode": mode,
            "splits": [[0, 13], [13, 27], [27, N]]}
    got = run_kernel(request, tmp_path, build, spec, **files).reshape(M, N)
    want = ref.matmul(x, w) + (y0 if mode else 0)
    assert_rounding(got, want, ref.magnitude(x, w) + (np.abs(y0) if mode else 0), K // (4 if dtype == "fp32" else 32))
    if dtype != "fp32":  # the int8 activations are what the kernels compute, not the float product
        assert np.abs(got - (x.astype(np.float64) @ w.dequantized().T + (y0 if mode else 0))).max() > 1e-4


@pytest.mark.parametrize("dtype", ["fp32", "int8", "q4"])
@pytest.mark.parametrize("build", ["plain", "relaxed"])
def test_gate_up(request, tmp_path, dtype, build):
    rng = np.random.default_rng(3)
    M, N, K = 3, 36, 64
    (ga, g), (ua, u) = ref.weights(rng, dtype, N, K), ref.weights(rng, dtype, N, K)
    x = rng.standard_normal((M, K)).astype(np.float32)
    scales = {"sg": ga["scales"], "su": ua["scales"]} if dtype != "fp32" else {}
    spec = {"op": "gate_up", "dtype": dtype, "M": M, "K": K, "N": N, "splits": [[0, 19], [19, N]]}
    got = run_kernel(request, tmp_path, build, spec, x=x, wg=ga["w"], wu=ua["w"], **scales).reshape(M, N)
    a, b = ref.matmul(x, g), ref.matmul(x, u)
    assert_close(got, a / (1 + np.exp(-a)) * b)


@pytest.mark.parametrize("dtype", ["int8", "q4"])
def test_reference_is_onnxruntimes_accuracy_level_4(dtype):
    """The page's Python reference is onnxruntime on graphs quantized with --accuracy-level 4: its MatMulNBits
    quantizes activations as cpu_reference.matmul does (and the kernels), equal up to float summation order."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from janusweb.quantize.matmul import quantize_matmuls
    rng = np.random.default_rng(11)
    M, K, N = 5, 256, 48
    w = (rng.standard_normal((K, N)) * 0.05).astype(np.float32)
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [M, K])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [M, N])], [onnx.numpy_helper.from_array(w, "w")])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model, _ = quantize_matmuls(model, 8 if dtype == "int8" else 4, 32, 4)
    node = next(n for n in model.graph.node if n.op_type == "MatMulNBits")
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    packed, scales = inits[node.input[1]], inits[node.input[2]].reshape(N, K // 32)
    if dtype == "int8":
        values = packed.reshape(N, K).astype(np.float64) - 128
    else:
        nib = np.stack([packed & 15, packed >> 4], -1).reshape(N, K)
        values = nib.astype(np.float64) - 8
    matrix = ref.Quantized(values, scales.astype(np.float32))
    x = rng.standard_normal((M, K)).astype(np.float32)
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    floats = x.astype(np.float64) @ matrix.dequantized().T
    if np.abs(got - floats).max() < 1e-5 * np.abs(floats).max():
        pytest.skip("this CPU's onnxruntime runs MatMulNBits in floats at accuracy_level 4 (no int8 kernel for it)")
    assert_rounding(got, ref.matmul(x, matrix), ref.magnitude(x, matrix), K)


def test_rmsnorm(wasm, tmp_path):
    rng = np.random.default_rng(4)
    M, H = 3, 64
    x, w = rng.standard_normal((M, H)).astype(np.float32) * 3, rng.standard_normal(H).astype(np.float32)
    got = run(tmp_path, {"wasm": str(wasm / "kernels.wasm"), "op": "rmsnorm", "M": M, "H": H, "eps": 1e-6,
                         "splits": [[0, 30], [30, H]]}, x=x, w=w).reshape(M, H)
    assert_close(got, ref.rms(x.astype(np.float64), w, 1e-6))


@pytest.mark.parametrize("dtype,threads,build", [
    (d, t, b) for d in ("fp32", "int8", "q4") for t, b in ((1, "kernels.wasm"), (2, "kernels-mt.wasm"),
                                                            (2, "kernels-mt-relaxed.wasm"))
    if not (d == "q4" and "relaxed" in b)])  # Node 20's relaxed integer dot is wrong (MATMUL_PAGE): q4 in Chromium
@pytest.mark.parametrize("interleave", [False, True])
def test_decoder(wasm, tmp_path, dtype, threads, build, interleave):
    """A prefill of 5 positions then 3 single steps, 2 rows; a prefill of 70 positions (over MAX_TOKENS) too. The
    relaxed build under Node for fp32 / int8 (fused multiply-adds; int8 weights take the plain integer path). With
    interleave, another state runs between the calls (several live at once, each with its own plan fields) and is
    released each time (its block is reused: the memory does not grow), and the pack is in parts of 32 KiB."""
    weights = ref.write_pack(tmp_path / "pack", DECODER, dtype, part_bytes=2**15 if interleave else ref.PART_BYTES)
    parts = {t["part"] for t in json.loads((tmp_path / "pack.json").read_text())["tensors"].values()}
    assert (len(parts) > 1) == interleave
    rng = np.random.default_rng(5)
    for rows, calls in ((2, [5, 1, 1, 1]), (1, [70, 1])):
        T = sum(calls)
        x = rng.standard_normal((rows, T, DECODER["hidden_size"])).astype(np.float32)
        per_call = [x[:, sum(calls[:i]):sum(calls[:i + 1])] for i in range(len(calls))]
        got = run(tmp_path, {"wasm": str(wasm / build), "op": "decoder", "threads": threads, "pack": str(tmp_path / "pack"),
                             "rows": rows, "capacity": T + 2, "calls": calls, "interleave": interleave},
                  embeds=np.concatenate([c.reshape(-1) for c in per_call]))
        want = ref.decoder(weights, DECODER, x.astype(np.float64))
        # each call returns its positions, except a prompt over MAX_TOKENS: its last chunk only
        chunks, chunk = [], 64 // rows
        for i, S in enumerate(calls):
            last = S - (S - 1) // chunk * chunk
            end = sum(calls[:i + 1])
            chunks.append(want[:, end - last:end].reshape(-1))
        want = np.concatenate(chunks)
        if dtype == "fp32":
            assert_close(got, want, rtol=1e-4)
        else:
            ref.assert_ties(got, want)
