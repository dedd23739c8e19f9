"""The CPU engine's WebAssembly kernels (web/cpu, built with zig's clang) under Node against numpy: each matrix
kernel at fp32 / MatMulNBits int8 / q4 with column splits as threads share them, RMS norm, and whole decoder
passes (prefill then single steps over the KV cache, several rows, 1 and 2 threads) against a numpy forward over
whole sequences (tests/cpu_reference.py)."""

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


def run(tmp_path: Path, spec: dict, **files) -> np.ndarray:
    for name, array in files.items():
        (tmp_path / f"{name}.bin").write_bytes(np.ascontiguousarray(array).tobytes())
    spec = {**spec, "files": [f"{n}.bin" for n in files]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    done = subprocess.run(["node", str(CHECK), str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return np.frombuffer((tmp_path / "out.bin").read_bytes(), np.float32)


def assert_close(got, want, rtol=2e-5):
    scale = np.abs(want).max()
    diff = np.abs(got - want).max()
    assert diff <= rtol * max(scale, 1.0), f"NOT OK: max diff {diff:.3g} (reference max {scale:.3g})"


@pytest.mark.parametrize("dtype", ["fp32", "int8", "q4"])
@pytest.mark.parametrize("M", [1, 2, 5])
@pytest.mark.parametrize("mode", [0, 1])
def test_matmul(wasm, tmp_path, dtype, M, mode):
    rng = np.random.default_rng(M + 7 * mode)
    N, K = 40, 96
    arrays, w = ref.weights(rng, dtype, N, K)
    x = rng.standard_normal((M, K)).astype(np.float32)
    y0 = rng.standard_normal((M, N)).astype(np.float32)
    files = {"x": x, "w": arrays["w"], **({"s": arrays["scales"]} if "scales" in arrays else {}),
             **({"y": y0} if mode else {})}
    got = run(tmp_path, {"wasm": str(wasm / "kernels.wasm"), "op": "matmul", "dtype": dtype, "M": M, "K": K, "N": N,
                         "mode": mode, "splits": [[0, 13], [13, N]]}, **files).reshape(M, N)
    assert_close(got, x.astype(np.float64) @ w.T + (y0 if mode else 0))


@pytest.mark.parametrize("dtype", ["fp32", "int8", "q4"])
def test_gate_up(wasm, tmp_path, dtype):
    rng = np.random.default_rng(3)
    M, N, K = 3, 36, 64
    (ga, g), (ua, u) = ref.weights(rng, dtype, N, K), ref.weights(rng, dtype, N, K)
    x = rng.standard_normal((M, K)).astype(np.float32)
    scales = {"sg": ga["scales"], "su": ua["scales"]} if dtype != "fp32" else {}
    got = run(tmp_path, {"wasm": str(wasm / "kernels.wasm"), "op": "gate_up", "dtype": dtype, "M": M, "K": K, "N": N,
                         "splits": [[0, 20], [20, N]]}, x=x, wg=ga["w"], wu=ua["w"], **scales).reshape(M, N)
    a, b = x.astype(np.float64) @ g.T, x.astype(np.float64) @ u.T
    assert_close(got, a / (1 + np.exp(-a)) * b)


def test_rmsnorm(wasm, tmp_path):
    rng = np.random.default_rng(4)
    M, H = 3, 64
    x, w = rng.standard_normal((M, H)).astype(np.float32) * 3, rng.standard_normal(H).astype(np.float32)
    got = run(tmp_path, {"wasm": str(wasm / "kernels.wasm"), "op": "rmsnorm", "M": M, "H": H, "eps": 1e-6,
                         "splits": [[0, 30], [30, H]]}, x=x, w=w).reshape(M, H)
    assert_close(got, ref.rms(x.astype(np.float64), w, 1e-6))


@pytest.mark.parametrize("dtype", ["fp32", "int8", "q4"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("interleave", [False, True])
def test_decoder(wasm, tmp_path, dtype, threads, interleave):
    """A prefill of 5 positions then 3 single steps, 2 rows; a prefill of 70 positions (over MAX_TOKENS) too. With
    interleave, another state runs between the calls (several live at once, each with its own plan fields) and is
    released each time (its block is reused: the memory does not grow)."""
    weights = ref.write_pack(tmp_path / "pack", DECODER, dtype)
    rng = np.random.default_rng(5)
    for rows, calls in ((2, [5, 1, 1, 1]), (1, [70, 1])):
        T = sum(calls)
        x = rng.standard_normal((rows, T, DECODER["hidden_size"])).astype(np.float32)
        per_call = [x[:, sum(calls[:i]):sum(calls[:i + 1])] for i in range(len(calls))]
        wasm_file = wasm / ("kernels.wasm" if threads == 1 else "kernels-mt.wasm")
        got = run(tmp_path, {"wasm": str(wasm_file), "op": "decoder", "threads": threads, "pack": str(tmp_path / "pack"),
                             "rows": rows, "capacity": T + 2, "calls": calls, "interleave": interleave},
                  embeds=np.concatenate([c.reshape(-1) for c in per_call]))
        want = ref.decoder(weights, DECODER, x.astype(np.float64))
        # each call returns its positions, except a prompt over MAX_TOKENS: its last chunk only
        chunks, chunk = [], 64 // rows
        for i, S in enumerate(calls):
            last = S - (S - 1) // chunk * chunk
            end = sum(calls[:i + 1])
            chunks.append(want[:, end - last:end].reshape(-1))
        assert_close(got, np.concatenate(chunks), rtol=1e-4)
