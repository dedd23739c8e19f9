"""The `run` scenario's figures from what a backend recorded, every one by janusweb.metrics' definition.

A backend's measurement: {"text": [run...], "image": [run...], "figures": {...}, "memory": {...}, "load_s": s}
- a text run: token_times_ms (each token's arrival, ms since the request), tokens, first_logits (optional), and on
  WebGPU its GPU counters;
- an image run: step_times_ms (each step's report), first_image_ms, total_ms, tokens [n][T], images (decoded,
  optional), GPU counters;
- figures: numbers a backend measures its own way (llama.cpp's per-token time), used as they are;
- dtypes: {graph: dtype} as the row ran them (the page reports its own), for the ort reference; label: what ran it;
  extra: details for report.json;
- GPU counters of a request (WebGPU, the page's countGpuWork): per event, one per token or image step (the first
  holds the prefill), `gpu_per_token` / `gpu_per_step` [{dispatches, submits, reads, read_bytes}, ...], or the
  request's totals `gpu` {...}; pages without them gave `gpu_reads` (mapAsync calls over the request).
"""

import numpy as np

from janusweb import metrics

COUNTERS = ("dispatches", "submits", "reads", "read_bytes")
PER_EVENT = ("gpu_per_token", "gpu_per_step")


def _last(runs: list):
    return runs[-1] if runs else None


def _count(event: dict, key: str):
    return event.get(key, event.get("readBytes")) if key == "read_bytes" else event.get(key)


def counters_per_step(run: dict, steps: int) -> dict:
    """Per step: the median over the events after the first (which holds the prefill) where the page counted per
    event, else the request's total / its steps (the prefill's share included)."""
    per = next((run[k] for k in PER_EVENT if run.get(k)), None)
    if per and len(per) > 1:
        return {k: metrics.median([_count(e, k) for e in per[1:]]) for k in COUNTERS}
    total = run.get("gpu") or ({"reads": run["gpu_reads"]} if run.get("gpu_reads") is not None else {})
    return {k: metrics.per_step(_count(total, k), steps) for k in COUNTERS}


def speed(m: dict, images: int) -> dict:
    """Time figures: each run's own, then the median over the runs."""
    text, image = m.get("text", []), m.get("image", [])
    out = {"load_s": m.get("load_s")}
    if text:
        parts = [metrics.ttft_parts(r["token_times_ms"], r.get("phases")) for r in text]
        out |= {k: metrics.median([p[k] for p in parts]) for k in ("image_encode_ms", "prompt_prefill_ms")
                if all(k in p for p in parts)}
        out |= {"ttft_ms": metrics.median([metrics.ttft_ms(r["token_times_ms"]) for r in text]),
                "decode_ms_per_token": metrics.median([metrics.decode_ms_per_token(r["token_times_ms"]) for r in text])}
        counts = counters_per_step(_last(text), len(_last(text)["token_times_ms"]))
        out |= {f"{k}_per_token": v for k, v in counts.items()}
    if image:
        out |= {"image_prefill_ms": metrics.median([metrics.image_prefill_ms(r["step_times_ms"]) for r in image]),
                "image_step_ms": metrics.median([metrics.image_step_ms(r["step_times_ms"]) for r in image]),
                "vq_decode_ms": metrics.median([metrics.vq_decode_ms(r["step_times_ms"], r.get("first_image_ms"))
                                                for r in image]),
                "s_per_image": metrics.median([metrics.s_per_image(r["total_ms"], images) for r in image])}
        counts = counters_per_step(_last(image), len(_last(image)["step_times_ms"]))
        out |= {f"{k}_per_image_step": v for k, v in counts.items()}
    out |= m.get("figures", {})
    if out.get("decode_ms_per_token"):
        out["decode_tokens_per_s"] = 1000.0 / out["decode_ms_per_token"]
    return out


def memory(m: dict) -> dict:
    mem = m.get("memory") or {}
    return {k: mem.get(k) for k in ("peak_rss_sum_bytes", "peak_pss_sum_bytes", "peak_pss_largest_bytes",
                                    "gpu_peak_bytes", "engine_memory_bytes") if mem.get(k) is not None}


def parity(m: dict, ref: dict) -> dict:
    """This measurement's last runs against the reference's: token agreement (percent) and first divergence of
    the text, first-step logits, image tokens over the steps both drew, decoded pixels (max abs diff, PSNR)."""
    out = {}
    text, rtext = _last(m.get("text", [])), _last(ref.get("text", []))
    if text and rtext:
        out["text_token_agreement_pct"] = metrics.agreement(text["tokens"], rtext["tokens"]) * 100
        out["text_first_divergence"] = metrics.first_divergence(text["tokens"], rtext["tokens"])
        if text.get("first_logits") is not None and rtext.get("first_logits") is not None:
            out["first_logits_max_abs_diff"] = float(np.abs(np.asarray(text["first_logits"], np.float32)
                                                            - np.asarray(rtext["first_logits"], np.float32)).max())
    image, rimage = _last(m.get("image", [])), _last(ref.get("image", []))
    if image and rimage and image.get("tokens") is not None:
        steps = len(rimage["tokens"][0])
        out["image_token_agreement_pct"] = metrics.agreement([t[:steps] for t in image["tokens"]],
                                                             rimage["tokens"]) * 100
        if image.get("images") is not None and rimage.get("images") is not None:
            a, b = np.asarray(image["images"], np.float32), np.asarray(rimage["images"], np.float32)
            out["pixels_max_abs_diff"] = float(np.abs(a - b).max())
            out["image_psnr_db"] = metrics.psnr(a, b)
    return out


def detail(m: dict) -> dict:
    """report.json's per-row detail: the last runs' tokens and per-step times, and their spread."""
    out = {k: v for k, v in m.get("extra", {}).items()}
    text, image = _last(m.get("text", [])), _last(m.get("image", []))
    if text:
        times = np.asarray(text["token_times_ms"], np.float64)
        out["text"] = {"tokens": list(text["tokens"]), "token_ms": np.diff(times).tolist(),
                       "token_ms_stats": metrics.stats(np.diff(times))}
    if image:
        times = np.asarray(image["step_times_ms"], np.float64)
        out["image"] = {"tokens": image.get("tokens"), "step_ms": np.diff(times).tolist(),
                        "step_ms_stats": metrics.stats(np.diff(times))}
    if m.get("memory", {}).get("processes"):
        out["processes"] = m["memory"]["processes"]
    return out
