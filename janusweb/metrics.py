"""How close one run is to another: the definitions every report uses (the quantization report, export's
end-to-end check and the bench).

- psnr: peak signal-to-noise ratio in dB of two images in [-1, 1], with the peak the full range (2):
  10 * log10(2**2 / mean((a - b)**2)); None when the images are identical.
- agreement: the FRACTION (0..1, not a percentage) of positions, over the shorter of the two sequences, where
  they hold the same value; 1.0 when both are empty, 0.0 when only one is.
- first_divergence: the first index where two sequences differ (the shorter one's length when one is a prefix
  of the other), None when they are equal.
- kl_divergence: KL(p || q) in nats per position, p and q the softmax of the logits' last axis.
- cosine: cosine similarity of two arrays (flattened); 1.0 for two zero arrays, 0.0 for one.
"""

import math

import numpy as np


def psnr(a, b) -> float | None:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return None if mse == 0 else 10 * math.log10(4.0 / mse)


def agreement(a, b) -> float:
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    n = min(a.size, b.size)
    if n == 0:
        return 1.0 if a.size == b.size else 0.0
    return float((a[:n] == b[:n]).mean())


def first_divergence(a, b) -> int | None:
    a, b = list(a), list(b)
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def kl_divergence(p_logits: np.ndarray, q_logits: np.ndarray) -> np.ndarray:
    lp, lq = log_softmax(p_logits), log_softmax(q_logits)
    return (np.exp(lp) * (lp - lq)).sum(-1)


def cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom else float(np.array_equal(a, b))
