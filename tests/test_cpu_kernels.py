"""The CPU engine's WebAssembly kernels (web/lib/engines/cpu, built with zig's clang) under Node against numpy: each matrix
kernel at fp32 / MatMulNBits int8 / q4 with column splits as threads share them, plain and relaxed-SIMD builds,
RMS norm, and whole decoder passes (prefill then single steps over the KV cache, several rows, 1 and 2 threads)
against a numpy forward over whole sequences (tests/cpu_reference.py). Quantized weights meet int8 activations
(per block of 32): the reference models that arithmetic, and is itself checked against onnxruntime's MatMulNBits
at accuracy_level 4, the Python reference of the page's CPU engine."""

import base64
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from janusweb.bench.host import cpuinfo

import cpu_reference as ref
from node_kernels import assert_close, needs_node, run

REPO = Path(__file__).resolve().parent.parent
# tokens per decoder call (model.js): a longer prompt goes in several calls
MAX_TOKENS = int(re.search(r"export const MAX_TOKENS = (\d+);",
                           (REPO / "web" / "lib" / "engines" / "cpu" / "model.js").read_text())[1])

pytest.importorskip("ziglang", reason="the kernels are built with PyPI ziglang: pip install -e .")
pytestmark = needs_node
DECODER = {"hidden_size": 64, "intermediate_size": 96, "num_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
           "num_layers": 2, "epsilon": 1e-6, "max_positions": 320}


# Relaxed-SIMD builds run in Chromium, the page's browser: Node 20's V8 (11.3, the proposal behind a flag) returns
# twice the sum from i32x4.relaxed_dot_i8x16_i7x16_add_s, where Chromium 156 gives the specified one. As the
# engine's runtime does, the page first lets the kernels choose whether int8 runs on the unsigned byte dot (qmat.h).
MATMUL_PAGE = """async (a) => {
  const bytes = (t) => Uint8Array.from(atob(t), (c) => c.charCodeAt(0));
  const memory = new WebAssembly.Memory({ initial: 512, maximum: 65535 });
  const e = (await WebAssembly.instantiate(bytes(a.wasm), { env: { memory } })).instance.exports;
  const unsigned = a.choose ? e.choose_u8_dot(127, 255) : 0;
  let top = e.__heap_base.value;
  const put = (t) => { if (!t) return 0; const b = bytes(t), at = Math.ceil(top / 64) * 64;
    new Uint8Array(memory.buffer, at, b.length).set(b); top = at + b.length; return at; };
  const x = put(a.x), y = a.y ? put(a.y) : put(btoa(String.fromCharCode(...new Uint8Array(4 * a.M * a.N))));
  const matrix = (t) => { const at = put(t); if (a.dtype) e.repack(a.dtype, at, a.K, 0, a.N); return at; };
  const [w, wg, wu] = a.op === 'matmul' ? [matrix(a.w), 0, 0] : [0, matrix(a.wg), matrix(a.wu)];
  for (const [n0, n1] of a.splits) {
    if (a.op === 'matmul') e.matmul(a.dtype, x, a.M, a.K, w, put(a.s), y, a.N, n0, n1, a.mode);
    else e.gate_up(a.dtype, x, a.M, a.K, wg, put(a.sg), wu, put(a.su), y, a.N, n0, n1);
  }
  return [Array.from(new Float32Array(memory.buffer, y, a.M * a.N)), unsigned];
}"""


@pytest.fixture(scope="module")
def chromium():
    sync_api = pytest.importorskip("playwright.sync_api", reason="relaxed SIMD runs in Chromium: pip install -e '.[test]'")
    from janusweb.env import chromium_path
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True)
        yield browser.new_page()
        browser.close()


def relaxed_kernel(request, spec: dict, choose: bool = True, **files) -> tuple:
    """One matmul / gate_up over column splits in Chromium with the relaxed build: (y, whether int8 ran on the
    unsigned byte dot); choose=False keeps int8 on the i16 dot."""
    wasm = request.getfixturevalue("kernels_wasm")
    page = request.getfixturevalue("chromium")
    b64 = lambda a: base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()  # noqa: E731
    args = {**spec, "dtype": {"fp32": 0, "int8": 1, "q4": 2}[spec["dtype"]],  # runtime.js's DTYPE
            "wasm": base64.b64encode((wasm / "kernels-relaxed.wasm").read_bytes()).decode(), "choose": choose,
            **{name: b64(a) for name, a in files.items()}}
    y, unsigned = page.evaluate(MATMUL_PAGE, args)
    return np.array(y, np.float32), bool(unsigned)


def run_kernel(request, tmp_path: Path, build: str, spec: dict, **files) -> np.ndarray:
    """One matmul / gate_up over column splits: the plain build under Node, the relaxed one in Chromium."""
    if build == "plain":
        return run(tmp_path, {**spec, "wasm": str(request.getfixturevalue("kernels_wasm") / "kernels.wasm")}, **files)
    return relaxed_kernel(request, spec, **files)[0]


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
@pytest.mark.parametrize("K", [96, 160, 288])
def test_matmul(request, tmp_path, dtype, M, mode, build, K):
    """Rows 1-4 (one pass), 5 (two), 17 (over the 16 rows quantized at a time); columns split at odd places;
    K of 3 blocks (after the last group of 4: one block at a time), 5 (a group, then one) and 9 (two groups, then one)."""
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


@pytest.mark.parametrize("M", [1, 4, 6, 17])
def test_int8_on_the_unsigned_byte_dot(request, M):
    """Where Chromium computes relaxed SIMD's byte dot exactly on unsigned bytes (x86 with AVX-VNNI), int8 weights
    run on it (one instruction per 16 products) and give the same sums as the i16 path: bytes 0 and 255 in every
    block, activations at +-127 (block maxima), K with a block after the last group; both paths in one page."""
    rng = np.random.default_rng(40 + M)
    N, K = 24, 288
    arrays, w = ref.weights(rng, "int8", N, K)
    arrays["w"][:, :, :2] = [0, 255]  # the extremes of the unsigned operand in every block
    w = ref.Quantized((arrays["w"].astype(np.float64) - 128).reshape(N, K), arrays["scales"])
    x = rng.standard_normal((M, K)).astype(np.float32)
    x[:, ::32] = 50 * np.sign(rng.standard_normal((M, K // 32)))  # each block's max: +-127 after quantizing
    spec = {"op": "matmul", "dtype": "int8", "M": M, "K": K, "N": N, "mode": 0, "splits": [[0, 11], [11, N]]}
    files = {"x": x, "w": arrays["w"], "s": arrays["scales"]}
    got, unsigned = relaxed_kernel(request, spec, **files)
    i16, off = relaxed_kernel(request, spec, choose=False, **files)
    assert not off
    if not unsigned:
        vnni = "avx_vnni" in (cpuinfo("flags") or "").split()
        assert not vnni, "this x86 CPU has AVX-VNNI, yet the kernels chose the i16 dot"
        pytest.skip("this browser's relaxed byte dot is not exact on unsigned bytes here: int8 stays on the i16 dot")
    want = ref.matmul(x, w)
    assert_rounding(got, want.reshape(-1), ref.magnitude(x, w).reshape(-1), K // 32)
    assert_rounding(i16, want.reshape(-1), ref.magnitude(x, w).reshape(-1), K // 32)
    np.testing.assert_array_equal(got, i16)  # same integer sums, same float steps


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


def test_rmsnorm(kernels_wasm, tmp_path):
    rng = np.random.default_rng(4)
    M, H = 3, 64
    x, w = rng.standard_normal((M, H)).astype(np.float32) * 3, rng.standard_normal(H).astype(np.float32)
    got = run(tmp_path, {"wasm": str(kernels_wasm / "kernels.wasm"), "op": "rmsnorm", "M": M, "H": H, "eps": 1e-6,
                         "splits": [[0, 30], [30, H]]}, x=x, w=w).reshape(M, H)
    assert_close(got, ref.rms(x.astype(np.float64), w, 1e-6))


@pytest.mark.parametrize("dtype,threads,build,interleave", [
    (d, t, b, i) for d in ("fp32", "int8", "q4") for t, b in ((1, "kernels.wasm"), (2, "kernels-mt.wasm"),
                                                               (2, "kernels-mt-relaxed.wasm"), (1, "kernels-m64.wasm"),
                                                               (2, "kernels-mt-m64.wasm"))
    for i in ((True,) if "m64" in b else (False, True))
    if not (d == "q4" and "relaxed" in b)])  # Node 20's relaxed integer dot is wrong (MATMUL_PAGE): q4 in Chromium
def test_decoder(kernels_wasm, tmp_path, dtype, threads, build, interleave):
    """A prefill of 5 positions then 3 single steps, 2 rows; 2 rows of 20 (a prompt's path: each matrix input
    quantized once, attention by tiles of positions); 3 rows of a prefill over MAX_TOKENS too (in two calls). The
    relaxed build under Node for fp32 / int8 (fused multiply-adds; int8 weights take the plain integer path); the
    Memory64 builds (64-bit addresses in the plan and at the module's boundary) with interleave. With interleave,
    another state runs between the calls (several live at once, each with its own plan fields) and is released
    each time (its block is reused: the memory does not grow), and the pack is in parts of 32 KiB."""
    weights = ref.write_pack(tmp_path / "pack", DECODER, dtype, part_bytes=2**15 if interleave else ref.PART_BYTES)
    parts = {t["part"] for t in json.loads((tmp_path / "pack.json").read_text())["tensors"].values()}
    assert (len(parts) > 1) == interleave
    rng = np.random.default_rng(5)
    for rows, calls in ((2, [5, 1, 1, 1]), (2, [20, 1]), (3, [MAX_TOKENS // 3 + 2, 1])):
        T = sum(calls)
        x = rng.standard_normal((rows, T, DECODER["hidden_size"])).astype(np.float32)
        per_call = [x[:, sum(calls[:i]):sum(calls[:i + 1])] for i in range(len(calls))]
        got = run(tmp_path, {"wasm": str(kernels_wasm / build), "op": "decoder", "threads": threads, "pack": str(tmp_path / "pack"),
                             "rows": rows, "capacity": T + 2, "calls": calls, "interleave": interleave},
                  embeds=np.concatenate([c.reshape(-1) for c in per_call]))
        want = ref.decoder(weights, DECODER, x.astype(np.float64))
        # each call returns its positions, except a prompt over MAX_TOKENS: its last chunk only
        chunks, chunk = [], MAX_TOKENS // rows
        for i, S in enumerate(calls):
            last = S - (S - 1) // chunk * chunk
            end = sum(calls[:i + 1])
            chunks.append(want[:, end - last:end].reshape(-1))
        want = np.concatenate(chunks)
        if dtype == "fp32":
            assert_close(got, want, rtol=1e-4)
        else:
            ref.assert_ties(got, want)


MEMORY = """
import { readFileSync } from 'node:fs';
const { CpuRuntime } = await import(process.argv[1]);
const [wasm, reserve, more] = JSON.parse(process.argv[2]);
try {
  const rt = await CpuRuntime.create(readFileSync(wasm), 1, reserve, null);
  rt.alloc(more);
  console.log(JSON.stringify({ bits: rt.bits, maxPages: rt.maxPages, bytes: rt.memory.buffer.byteLength }));
} catch (e) {
  console.log(JSON.stringify({ name: e.name, message: e.message }));
}
"""


def test_memory_the_engine_cannot_get_is_one_line(kernels_wasm):
    """The engine asks for its memory and says in one line what the engine (here Node 20, whose Memory64 memories
    stop at 65536 pages) would not give: a reservation over it names the size and the engine's own error; the
    module's 16 GiB maximum is lowered to what the engine takes; past that, an allocation names both sizes; within
    it, the memory grows (32- and 64-bit alike)."""
    def attempt(build, reserve, more):
        done = subprocess.run(["node", "--experimental-wasm-memory64", "--input-type=module", "-e", MEMORY,
                               (REPO / "web" / "lib" / "engines" / "cpu" / "runtime.js").as_uri(),
                               json.dumps([str(kernels_wasm / build), reserve, more])],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)
    refused = attempt("kernels-m64.wasm", 12e9, 0)
    assert refused["name"] == "BackendError" and "\n" not in refused["message"]
    assert refused["message"].startswith("this browser would not give the CPU engine 12.00 GB of 64-bit WebAssembly "
                                         "memory (RangeError: "), refused
    assert "initial" in refused["message"]  # the engine's own reason
    assert attempt("kernels-m64.wasm", 1e8, 5e9) == {"name": "BackendError", "message": (
        "the CPU engine needs 5.00 GB of memory, more than its 64-bit WebAssembly memory may have (4.29 GB)")}
    for build, bits, pages in (("kernels-m64.wasm", 64, 65536), ("kernels.wasm", 32, 65535)):
        got = attempt(build, 1e8, 3e8)
        assert got["bits"] == bits and got["maxPages"] == pages and got["bytes"] >= 3e8, got  # grown past 1e8
