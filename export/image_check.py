"""End-to-end check of CFG image generation, teacher-forced: onnxruntime samples a whole image from seeded
draws; PyTorch is then fed the same token sequence, so every step is compared on its own (one flipped draw no
longer makes every later step differ).

Per step: the gen_head logits (conditional and unconditional rows) within LOGIT_TOLERANCE x max(1, max |ref|);
and the token PyTorch draws with the same uniform number equal to onnxruntime's, except where the draw lies
within ε of a boundary of PyTorch's CDF (a tie, counted and reported). ε is stated per step from the measured
CFG-logit difference D: a change of at most D in every logit moves each normalised CDF value by at most
e^(2D) - 1, so a draw farther than that from every boundary cannot change sides by rounding (ε = max(e^(2D) - 1,
TIE_FLOOR); TIE_FLOOR covers the float64 summation). A token that differs beyond ε, or logits beyond the limit,
is a real defect.
"""

from dataclasses import dataclass

import numpy as np

from janusweb.generate import generate_images
from janusweb.sampling import cfg_logits

LOGIT_TOLERANCE = 1e-3  # relative to max(1, max |reference logits|), per step
IMAGE_TOLERANCE = 1e-3  # decoded pixels of the same tokens, in [-1, 1]
TIE_FLOOR = 1e-9


@dataclass
class ImageCheck:
    steps: int
    logits_max_abs_diff: float  # over every step
    logits_worst_ratio: float  # max over steps of diff / limit (<= 1 passes)
    logits_failed_steps: int
    token_mismatches: int  # differing tokens with the draw farther than ε from a CDF boundary
    ties: int  # differing tokens with the draw within ε of a boundary (rounding, not a defect)
    max_epsilon: float
    image_max_abs_diff: float
    first_failure: int | None  # first step with logits over the limit or a token mismatch

    @property
    def ok(self) -> bool:
        return (self.logits_failed_steps == 0 and self.token_mismatches == 0
                and self.image_max_abs_diff <= IMAGE_TOLERANCE)

    def summary(self) -> str:
        at = "" if self.first_failure is None else f", first failure at step {self.first_failure}"
        return (f"CFG image {self.steps} steps teacher-forced: logits max abs diff {self.logits_max_abs_diff:.2e} "
                f"({self.logits_failed_steps} steps over {LOGIT_TOLERANCE:g} x max(1, |ref|)), tokens "
                f"{self.token_mismatches} differ, {self.ties} ties within ε of a CDF boundary (ε <= "
                f"{self.max_epsilon:.1e}){at}; decoded image max abs diff {self.image_max_abs_diff:.2e} "
                f"(limit {IMAGE_TOLERANCE:g})")


def tie_distance(logits: np.ndarray, u: float, token: int, temperature: float) -> float:
    """How far the draw `u` lies outside the interval [c(token-1), c(token)) of the normalised CDF of `logits`
    (0 when inside: `logits` would pick `token` too)."""
    z = np.asarray(logits, np.float64) / temperature
    p = np.exp(z - z.max())
    cdf = np.cumsum(p) / p.sum()
    lo = 0.0 if token == 0 else cdf[token - 1]
    hi = cdf[token]
    return 0.0 if lo <= u < hi else float(min(abs(u - lo), abs(u - hi)))


def compare_steps(raw_a, raw_b, tokens_a, tokens_b, draws, guidance: float, temperature: float,
                  image_diff: float) -> ImageCheck:
    """raw_*: per step the gen_head logits [2n, V] (rows [0, n) conditional); tokens_* [n, T]: what each side
    drew at each step from the same sequence; draws [n, T]."""
    n, steps = tokens_a.shape
    max_diff, worst, failed, mismatches, ties, max_eps, first = 0.0, 0.0, 0, 0, 0, TIE_FLOOR, None
    for t in range(steps):
        a, b = np.asarray(raw_a[t], np.float64), np.asarray(raw_b[t], np.float64)
        diff = float(np.abs(a - b).max())
        limit = LOGIT_TOLERANCE * max(1.0, float(np.abs(b).max()))
        max_diff, worst = max(max_diff, diff), max(worst, diff / limit)
        bad = diff > limit
        cfg_a, cfg_b = cfg_logits(a[:n], a[n:], guidance), cfg_logits(b[:n], b[n:], guidance)
        eps = max(float(np.expm1(2 * np.abs(cfg_a - cfg_b).max() / temperature)), TIE_FLOOR)
        max_eps = max(max_eps, eps)
        for i in range(n):
            if tokens_a[i, t] == tokens_b[i, t]:
                continue
            u = float(draws[i, t])  # a tie: each side's token lies within ε of the draw under the other's CDF
            if max(tie_distance(cfg_b[i], u, int(tokens_a[i, t]), temperature),
                   tie_distance(cfg_a[i], u, int(tokens_b[i, t]), temperature)) <= eps:
                ties += 1
            else:
                mismatches += 1
                bad = True
        failed += int(diff > limit)
        if bad and first is None:
            first = t
    return ImageCheck(steps, max_diff, worst, failed, mismatches, ties, max_eps, image_diff, first)


def image_end_to_end(ort_graphs, torch_graphs, dims, ids, prompt: np.ndarray, draws: np.ndarray,
                     guidance: float = 5.0, temperature: float = 1.0) -> ImageCheck:
    """onnxruntime draws an image from `draws`; PyTorch follows the same tokens; every step compared."""
    raw_a, raw_b = [], []
    a = generate_images(ort_graphs, dims, ids, prompt, draws, guidance, temperature,
                        on_logits=lambda step, raw: raw_a.append(raw.astype(np.float32)))
    b = generate_images(torch_graphs, dims, ids, prompt, draws, guidance, temperature, forced=a.tokens,
                        on_logits=lambda step, raw: raw_b.append(raw.astype(np.float32)))
    return compare_steps(raw_a, raw_b, a.tokens, b.tokens, draws, guidance, temperature,
                         float(np.abs(a.images - b.images).max()))
