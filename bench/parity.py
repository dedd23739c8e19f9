"""Parity of one backend's outputs against a reference run of the same workload."""

import numpy as np

from janusweb.export.validate import first_divergence


def psnr(a: np.ndarray, b: np.ndarray) -> float | None:
    """PSNR in dB of two decoded images in [-1, 1] (peak-to-peak 2)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return None if mse == 0 else 10 * np.log10(4.0 / mse)


def agreement(a, b) -> float:
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    n = min(a.size, b.size)
    return float((a[:n] == b[:n]).mean() * 100) if n else 0.0


def parity(run: dict, ref: dict) -> dict:
    ua, ub = run["understanding"], ref["understanding"]
    out = {"text_token_agreement_pct": agreement(ua["tokens"], ub["tokens"]),
           "text_first_divergence": first_divergence(list(ua["tokens"]), list(ub["tokens"]))}
    if ua.get("first_logits") is not None:  # the page does not return logits
        out["first_step_logits_max_abs_diff"] = float(np.abs(np.asarray(ua["first_logits"], np.float32)
                                                              - np.asarray(ub["first_logits"], np.float32)).max())
    for n, g in run.get("generation", {}).items():
        r = ref["generation"].get(n)
        if r is None or "tokens" not in g:
            continue
        out[f"image_token_agreement_pct_{n}"] = agreement(g["tokens"], r["tokens"])
        if g.get("images") is not None:
            p = psnr(g["images"], r["images"])
            out[f"image_psnr_db_{n}"] = "identical" if p is None else round(p, 2)
    return out
