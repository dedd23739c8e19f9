"""numpy references for the CPU engine's tests (tests/test_cpu_kernels.py): MatMulNBits' weight layouts, the
matrix product's arithmetic on them (activations quantized to int8 per block of 32, as onnxruntime's MatMulNBits
does at accuracy_level 4 and the kernels do), a pack writer in the WGSL/CPU pack format, and the decoder's forward
pass computed over whole sequences (no KV cache), independently of the kernels."""

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

from janusweb.pack.parts import PART_BYTES, PartWriter

BLOCK = 32


class Quantized(NamedTuple):
    """A MatMulNBits matrix: values [N, K] (the integers q - zero point, as float64) and scales [N, K/32] f32."""
    values: np.ndarray
    scales: np.ndarray

    def dequantized(self) -> np.ndarray:
        n, k = self.values.shape
        return (self.values.reshape(n, k // BLOCK, BLOCK) * self.scales[..., None]).reshape(n, k)


def quantize_activations(x: np.ndarray, levels: int = 127) -> tuple:
    """x [..., K] per block of 32 along K: (q [..., K/32, 32] integers as float32, scale [..., K/32] float32) with
    scale = amax / levels and q = round-half-even(x * (levels / amax)), every step in float32 (onnxruntime's
    MatMulNBits at accuracy_level 4 with levels 127; q is 0 where amax is)."""
    xb = x.astype(np.float32).reshape(*x.shape[:-1], x.shape[-1] // BLOCK, BLOCK)
    amax = np.abs(xb).max(-1)
    inv = (np.float32(levels) / np.where(amax > 0, amax, np.float32(1))).astype(np.float32) * (amax > 0)
    return np.rint((xb * inv[..., None]).astype(np.float32)), (amax / np.float32(levels)).astype(np.float32)


def matmul(x: np.ndarray, w, levels: int = 127) -> np.ndarray:
    """x [..., K] times W^T: float64 products for a float matrix; for a Quantized one, the kernels' arithmetic:
    per block, the exact integer sum of q_x * q_w, times scale_x * scale_w (a float32 product), summed in float64."""
    if not isinstance(w, Quantized):
        return x @ w.T
    q, sx = quantize_activations(x, levels)
    n, k = w.values.shape
    isum = np.einsum("...bk,nbk->...nb", q.astype(np.float64), w.values.reshape(n, k // BLOCK, BLOCK))
    return (isum * (sx[..., None, :] * w.scales).astype(np.float64)).sum(-1)


def magnitude(x: np.ndarray, w) -> np.ndarray:
    """sum_k |x_k w_k| of each output as `matmul` computes it (the scale of its float rounding errors)."""
    if not isinstance(w, Quantized):
        return np.abs(x) @ np.abs(w.T)
    q, sx = quantize_activations(x)
    n, k = w.values.shape
    isum = np.einsum("...bk,nbk->...nb", np.abs(q).astype(np.float64), np.abs(w.values).reshape(n, k // BLOCK, BLOCK))
    return (isum * (sx[..., None, :] * w.scales)).sum(-1)


def q8_weights(rng, n: int, k: int):
    """MatMulNBits bits 8 block 32: bytes [N, K/32, 32] uint8, scales [N, K/32]; and the Quantized matrix."""
    q = rng.integers(0, 256, (n, k // 32, 32), dtype=np.uint8)
    s = (rng.random((n, k // 32)) * 0.02 + 0.001).astype(np.float32)
    return q, s, Quantized((q.astype(np.float64) - 128).reshape(n, k), s)


def q4_weights(rng, n: int, k: int):
    """MatMulNBits bits 4 block 32: bytes [N, K/32, 16] (element 2i low nibble of byte i), scales, Quantized."""
    v = rng.integers(0, 16, (n, k // 32, 32), dtype=np.uint8)
    q = (v[..., 0::2] | (v[..., 1::2] << 4)).astype(np.uint8)
    s = (rng.random((n, k // 32)) * 0.05 + 0.001).astype(np.float32)
    return q, s, Quantized((v.astype(np.float64) - 8).reshape(n, k), s)


def weights(rng, dtype: str, n: int, k: int):
    """(arrays for the pack, the matrix for `matmul`: [N, K] float64, or Quantized) of a random [N, K] `dtype`."""
    if dtype == "fp32":
        w = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
        return {"w": w}, w.astype(np.float64)
    q, s, m = (q8_weights if dtype == "int8" else q4_weights)(rng, n, k)
    return {"w": q, "scales": s}, m


def write_pack(path: Path, cfg: dict, dtype: str, seed: int = 0, part_bytes: int = PART_BYTES) -> dict:
    """A random pack (path.json + its parts path.0.bin, ..., as pack/parts.py writes them) of the decoder `cfg`;
    returns its matrices (`matmul`) and vectors."""
    rng = np.random.default_rng(seed)
    H, I, NH, KVH, HD = (cfg[k] for k in ("hidden_size", "intermediate_size", "num_heads", "num_key_value_heads",
                                          "head_dim"))
    writer, ref = PartWriter(path.parent, path.name, part_bytes), {}
    put = writer.put

    shapes = {"qkv": ((NH + 2 * KVH) * HD, H), "o": (H, NH * HD), "gate": (I, H), "up": (I, H), "down": (H, I)}
    for i in range(cfg["num_layers"]):
        for role in ("ln1", "qkv", "o", "ln2", "gate", "up", "down"):
            if role.startswith("ln"):
                w = (1 + 0.1 * rng.standard_normal(H)).astype(np.float32)
                put(f"layers.{i}.{role}", w)
                ref[(i, role)] = w.astype(np.float64)
                continue
            arrays, ref[(i, role)] = weights(rng, dtype, *shapes[role])
            put(f"layers.{i}.{role}", arrays["w"])
            if "scales" in arrays:
                put(f"layers.{i}.{role}.scales", arrays["scales"])
    final = (1 + 0.1 * rng.standard_normal(H)).astype(np.float32)
    put("final_norm", final)
    ref["final_norm"] = final.astype(np.float64)
    inv = 1.0 / 10000 ** (np.arange(0, HD, 2) / HD)
    angles = np.arange(cfg["max_positions"])[:, None] * inv[None]
    for name, table in (("cos", np.cos(angles)), ("sin", np.sin(angles))):
        put(name, table.astype(np.float32))
        ref[name] = table.astype(np.float32).astype(np.float64)
    writer.close()
    desc = {**cfg, "format": "janusweb-wgsl/1", "dtype": dtype, "block_size": None if dtype == "fp32" else 32,
            "scale": HD ** -0.5, "tensors": writer.tensors}
    Path(str(path) + ".json").write_text(json.dumps(desc))
    return ref


def rms(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def rotate(x, cos, sin):
    """rotate-half rotary of x [..., T, HD] with tables [T, HD/2]."""
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    return np.concatenate([a * cos - b * sin, b * cos + a * sin], -1)


def decoder(ref: dict, cfg: dict, x: np.ndarray) -> np.ndarray:
    """Final-norm hidden states [rows, T, H] of the whole sequences x [rows, T, H] (float64, causal; the matrix
    products through `matmul`: quantized activations for quantized weights)."""
    B, T, H = x.shape
    NH, KVH, HD, eps = cfg["num_heads"], cfg["num_key_value_heads"], cfg["head_dim"], cfg["epsilon"]
    cos, sin = ref["cos"][:T], ref["sin"][:T]
    causal = np.tril(np.ones((T, T), bool))
    for i in range(cfg["num_layers"]):
        qkv = matmul(rms(x, ref[(i, "ln1")], eps), ref[(i, "qkv")])
        q = qkv[..., :NH * HD].reshape(B, T, NH, HD).transpose(0, 2, 1, 3)
        k = qkv[..., NH * HD:(NH + KVH) * HD].reshape(B, T, KVH, HD).transpose(0, 2, 1, 3)
        v = qkv[..., (NH + KVH) * HD:].reshape(B, T, KVH, HD).transpose(0, 2, 1, 3)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        k, v = np.repeat(k, NH // KVH, 1), np.repeat(v, NH // KVH, 1)
        scores = np.where(causal, q @ k.transpose(0, 1, 3, 2) * HD ** -0.5, -np.inf)
        p = np.exp(scores - scores.max(-1, keepdims=True))
        att = (p / p.sum(-1, keepdims=True)) @ v
        x = x + matmul(att.transpose(0, 2, 1, 3).reshape(B, T, NH * HD), ref[(i, "o")])
        h = rms(x, ref[(i, "ln2")], eps)
        g = matmul(h, ref[(i, "gate")])
        x = x + matmul(g / (1 + np.exp(-g)) * matmul(h, ref[(i, "up")]), ref[(i, "down")])
    return rms(x, ref["final_norm"], eps)


def assert_ties(got, want, mean=1e-3, flipped=2e-2):
    """Whole passes with int8 activations (the matrix kernels themselves are exact, test_matmul): a rounding step
    at every matrix input, and the kernels' float32 norms / softmax / rotary (1e-7 from the reference's) now
    and then put one activation on the other side of a tie, one step of its block's scale (~1 in 1e5 activations
    here; a prompt of 70 positions has ~4e4). A flip in layer 0's keys reaches every later position. So: the mean
    difference within `mean` of the output's scale and none over `flipped` of it (a wiring error is O(scale))."""
    scale = max(float(np.abs(want).max()), 1.0)
    diff = np.abs(got - want)
    assert diff.mean() <= mean * scale and diff.max() <= flipped * scale, \
        f"NOT OK: mean diff {diff.mean():.3g}, max diff {diff.max():.3g} (scale {scale:.3g})"
