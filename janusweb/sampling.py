"""Seeded uniform draws and the CFG sampling rule shared by every backend (Python, page, GPU shader).

The draws come from a counter-based integer hash, so the page (JS or WGSL) reproduces them exactly:
    x = fmix32(seed * 0x9E3779B9 + index)  (uint32 arithmetic),  u = (x >> 8) / 2**24  in [0, 1).
"""

import numpy as np

_M32 = 0xFFFFFFFF


def _fmix32(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64)
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & _M32
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & _M32
    x ^= x >> 16
    return x


def uniforms(seed: int, count: int, offset: int = 0) -> np.ndarray:
    """`count` draws in [0, 1) for `seed`, starting at draw number `offset`."""
    index = np.arange(offset, offset + count, dtype=np.uint64)
    x = (np.uint64((seed * 0x9E3779B9) & _M32) + index) & _M32
    return (_fmix32(x) >> 8).astype(np.float64) / 2**24


def cfg_logits(cond: np.ndarray, uncond: np.ndarray, scale: float) -> np.ndarray:
    """Classifier-free guidance as in Janus: uncond + scale * (cond - uncond)."""
    return uncond + scale * (cond - uncond)


def sample(logits: np.ndarray, u: np.ndarray, temperature: float) -> np.ndarray:
    """Inverse-CDF sampling, one row per draw: the first index whose cumulative probability exceeds u.

    temperature 0 means greedy (argmax)."""
    logits = np.asarray(logits, dtype=np.float64)
    if temperature == 0:
        return logits.argmax(-1)
    z = logits / temperature
    p = np.exp(z - z.max(-1, keepdims=True))
    cdf = np.cumsum(p, -1)
    threshold = (u * cdf[:, -1])[:, None]
    return np.minimum((cdf <= threshold).sum(-1), logits.shape[-1] - 1)
