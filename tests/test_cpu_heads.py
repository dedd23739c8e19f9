"""The CPU engine's head kernels (web/lib/engines/cpu/heads.c) under Node against numpy: the token-embedding gather at fp32 /
int8 / q4 (GatherBlockQuantized's dequantization, exact), a layer's bias and exact-erf GELU, and the image step's
CFG + temperature + inverse-CDF sampling against janusweb.sampling (the Python reference's rule) on the same
draws, token for token."""

import math

import numpy as np
import pytest

import cpu_reference as ref
from janusweb.sampling import cfg_logits, sample, uniforms
from node_kernels import needs_node, run

pytestmark = needs_node


@pytest.mark.parametrize("dtype", ["fp32", "int8", "q4"])
def test_embed_rows(kernels_wasm, tmp_path, dtype):
    rng = np.random.default_rng(11)
    V, H = 50, 64
    arrays, table = ref.weights(rng, dtype, V, H)
    ids = np.array([3, 0, 49, 3, 17], np.uint32)
    files = {"table": arrays["w"], "ids": ids, **({"s": arrays["scales"]} if "scales" in arrays else {})}
    got = run(tmp_path, {"wasm": str(kernels_wasm / "kernels.wasm"), "op": "embed_rows", "dtype": dtype, "M": len(ids), "H": H},
              **files).reshape(len(ids), H)
    if dtype == "fp32":
        want = arrays["w"][ids]
    else:  # as GatherBlockQuantized computes it: (q - zero point) * scale in float32
        q = arrays["w"] if dtype == "int8" else np.stack([arrays["w"] & 15, arrays["w"] >> 4], -1).reshape(V, -1, 32)
        want = ((q.reshape(V, H).astype(np.float32) - (128 if dtype == "int8" else 8))
                * np.repeat(arrays["scales"], 32, 1))[ids]
    assert np.array_equal(got, want.astype(np.float32)), f"NOT OK: max diff {np.abs(got - want).max():.3g}"
    dense = table.dequantized() if isinstance(table, ref.Quantized) else table
    assert np.abs(got - dense[ids]).max() < 1e-6


@pytest.mark.parametrize("gelu", [0, 1])
def test_bias_act(kernels_wasm, tmp_path, gelu):
    rng = np.random.default_rng(12)
    M, N = 3, 40
    y = (rng.standard_normal((M, N)) * 3).astype(np.float32)
    y[0, :6] = [0, -1e-8, 5.5, -5.5, 40, -40]
    b = rng.standard_normal(N).astype(np.float32)
    got = run(tmp_path, {"wasm": str(kernels_wasm / "kernels.wasm"), "op": "bias_act", "M": M, "N": N, "gelu": gelu},
              y=y, b=b).reshape(M, N)
    x = y + b
    if not gelu:
        assert np.array_equal(got, x)
        return
    erf = np.vectorize(math.erf)
    want = x.astype(np.float64) * 0.5 * (1 + erf(x.astype(np.float64) / math.sqrt(2)))
    diff = np.abs(got - want).max()
    assert diff <= 4e-7 * max(1.0, np.abs(want).max()), f"NOT OK: max diff {diff:.3g}"


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
@pytest.mark.parametrize("n", [1, 3])
def test_cfg_sample_is_the_reference_rule(kernels_wasm, tmp_path, n, temperature):
    rng = np.random.default_rng(13 + n)
    V, guidance, steps = 300, 5.0, 40
    tokens = []
    logits = (rng.standard_normal((steps, 2 * n, V)) * 2).astype(np.float32)
    u = uniforms(9, steps * n).reshape(steps, n).astype(np.float32)
    for s in range(steps):
        got = run(tmp_path, {"wasm": str(kernels_wasm / "kernels.wasm"), "op": "cfg_sample", "n": n, "V": V,
                             "guidance": guidance, "temperature": temperature}, logits=logits[s], u=u[s])
        want = sample(cfg_logits(logits[s, :n], logits[s, n:], guidance), u[s].astype(np.float64), temperature)
        assert got.astype(np.int64).tolist() == want.tolist(), f"step {s}"
        tokens += want.tolist()
    assert len(set(tokens)) > steps * n // 2  # the draws pick varied tokens, not one
