"""Parity of one backend's outputs against a reference run of the same workload (the metrics are
janusweb.metrics'; agreements are reported here as percentages)."""

import numpy as np

from janusweb.metrics import agreement, first_divergence, psnr


def agreement_pct(a, b) -> float:
    """janusweb.metrics.agreement as a percentage (the bench report's unit)."""
    return agreement(a, b) * 100


def parity(run: dict, ref: dict) -> dict:
    ua, ub = run["understanding"], ref["understanding"]
    out = {"text_token_agreement_pct": agreement_pct(ua["tokens"], ub["tokens"]),
           "text_first_divergence": first_divergence(list(ua["tokens"]), list(ub["tokens"]))}
    if ua.get("first_logits") is not None:  # the page does not return logits
        out["first_step_logits_max_abs_diff"] = float(np.abs(np.asarray(ua["first_logits"], np.float32)
                                                              - np.asarray(ub["first_logits"], np.float32)).max())
    for n, g in run.get("generation", {}).items():
        r = ref["generation"].get(n)
        if r is None or "tokens" not in g:
            continue
        out[f"image_token_agreement_pct_{n}"] = agreement_pct(g["tokens"], r["tokens"])
        if g.get("images") is not None:
            p = psnr(g["images"], r["images"])
            out[f"image_psnr_db_{n}"] = "identical" if p is None else round(p, 2)
    return out
