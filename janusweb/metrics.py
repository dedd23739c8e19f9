"""The definitions every report uses (the quantization report, export's end-to-end check and every bench
scenario): how close one run is to another, and how fast one ran. Reports may change units (the bench prints
agreement as a percentage), never definitions.

How close:

- psnr: peak signal-to-noise ratio in dB of two images in [-1, 1], with the peak the full range (2):
  10 * log10(2**2 / mean((a - b)**2)); None when the images are identical.
- agreement: the FRACTION (0..1, not a percentage) of positions, over the shorter of the two sequences, where
  they hold the same value; 1.0 when both are empty, 0.0 when only one is.
- first_divergence: the first index where two sequences differ (the shorter one's length when one is a prefix
  of the other), None when they are equal.
- kl_divergence: KL(p || q) in nats per position, p and q the softmax of the logits' last axis.
- cosine: cosine similarity of two arrays (flattened); 1.0 for two zero arrays, 0.0 for one.

How fast (times in ms, each measured from the moment the request was sent; a run's figure is its own, a row's
figure is the median over its runs):
- ttft_ms: time to first token, the first token's arrival (the prompt's prefill, an image's encoding, included).
- image_encode_ms / prompt_prefill_ms: ttft's two parts where the run reports its phases: from the start of the
  image's encoding (the vision tower and aligner) to the start of the prompt's prefill, and from there to the
  first token.
- decode_ms_per_token: (t_last - t_first) / (n - 1) over one run's n token arrivals: the mean time of a decode
  step after the first token (llama.cpp's `predicted_per_token_ms` is the same mean); None below 2 tokens.
- decode_tokens_per_s: 1000 / decode_ms_per_token.
- image_prefill_ms: the first image step's report, which holds the prompt's prefill (both CFG rows).
- image_step_ms: (t_last - t_first) / (n - 1) over one image request's n step reports: the mean CFG step after
  the first (every image of the request advances one token per step); None below 2 steps.
- vq_decode_ms: from the last step's report to the first decoded image.
- s_per_image: the whole request (prompt to the last decoded image) / the images it made.
- per_step: a count over a request (GPU dispatches, submits, reads, bytes read) / the steps it ran.
- spread / stats: the distribution of a list of times (median, min, max / mean, p50, p95), shown beside the
  figures above, never in place of them.
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


def _times(times) -> np.ndarray:
    return np.asarray(times, np.float64).ravel()


def ttft_ms(token_times_ms) -> float | None:
    t = _times(token_times_ms)
    return float(t[0]) if t.size else None


def ttft_parts(token_times_ms, phases) -> dict:
    """{image_encode_ms, prompt_prefill_ms} from a run's phases ([{name, ms}], the library's phase names
    PHASE_ENCODE and PHASE_PREFILL) and its first token; a part the run did not report is left out."""
    start = {p["name"]: p["ms"] for p in phases or []}
    first, out = ttft_ms(token_times_ms), {}
    if PHASE_ENCODE in start and PHASE_PREFILL in start:
        out["image_encode_ms"] = float(start[PHASE_PREFILL] - start[PHASE_ENCODE])
    if PHASE_PREFILL in start and first is not None:
        out["prompt_prefill_ms"] = float(first - start[PHASE_PREFILL])
    return out


PHASE_ENCODE, PHASE_PREFILL = "encoding the image", "reading the prompt"  # web/lib/generate.js: PHASES


def decode_ms_per_token(token_times_ms) -> float | None:
    t = _times(token_times_ms)
    return float((t[-1] - t[0]) / (t.size - 1)) if t.size >= 2 else None


def decode_tokens_per_s(token_times_ms) -> float | None:
    ms = decode_ms_per_token(token_times_ms)
    return 1000.0 / ms if ms else None


def image_prefill_ms(step_times_ms) -> float | None:
    return ttft_ms(step_times_ms)


def image_step_ms(step_times_ms) -> float | None:
    return decode_ms_per_token(step_times_ms)


def vq_decode_ms(step_times_ms, first_image_ms: float) -> float | None:
    t = _times(step_times_ms)
    return float(first_image_ms - t[-1]) if t.size and first_image_ms is not None else None


def s_per_image(total_ms: float, images: int) -> float:
    return total_ms / 1000.0 / images


def per_step(count, steps: int) -> float | None:
    return None if count is None or not steps else count / steps


def median(values) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.median(np.asarray(v, np.float64))) if v else None


def spread(values) -> dict:
    v = np.asarray([x for x in values if x is not None], np.float64)
    if not v.size:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}


def stats(ms) -> dict:
    ms = np.asarray(ms, np.float64).ravel()
    if ms.size == 0:
        return {"mean": None, "p50": None, "p95": None, "n": 0}
    return {"mean": float(ms.mean()), "p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
            "n": int(ms.size)}
