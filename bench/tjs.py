"""The comparison backends tjs-webgpu and tjs-wasm: transformers.js (MultiModalityCausalLM with its own
onnxruntime-web) running the same bundle in the same Chromium, through web/tjs-bench.js.

Understanding is greedy on the workload's own input ids, pixels and masks, so its tokens join the parity table.
Image generation uses transformers.js's own sampler and unconditional prompt (pad tokens, masked): speed only,
no token parity. Per-step times come from a streamer that sees every new token.
"""


import numpy as np

from janusweb.bench.browser import understanding_speed
from janusweb.bench.timing import median, stats
from janusweb.bench.workload import Inputs, Workload


def config(inp: Inputs, w: Workload) -> dict:
    u = inp.understanding
    return {"understanding": {
        "input_ids": u["input_ids"].tolist(), "images_seq_mask": u["images_seq_mask"].tolist(),
        "images_emb_mask": {"dims": list(u["images_emb_mask"].shape), "data": u["images_emb_mask"].ravel().tolist()},
        "pixel_values": {"dims": list(inp.pixel_values.shape), "data": inp.pixel_values.ravel().tolist()}},
        "textTokens": w.text_tokens, "promptIds": inp.prompt_ids.tolist(), "imageTokens": inp.steps,
        "counts": list(w.image_counts), "repeats": w.repeats}


def aggregate(raw: dict) -> dict:
    out = {"understanding": understanding_speed(raw["understanding"]), "generation": {}}
    for n, runs in raw["generation"].items():
        best = sorted(runs, key=lambda r: r["total_ms"])[len(runs) // 2]
        times = np.array(best["step_times_ms"])
        out["generation"][str(n)] = {
            "ms_per_step": {**stats(np.diff(times)), "mean": float(np.diff(times).mean()) if times.size > 1 else None},
            "step_ms": np.diff(times).tolist(), "prefill_ms": float(times[0]) if times.size else None,
            "vq_decode_ms": best["total_ms"] - float(times[-1]) if times.size else None,
            "s_per_image": median([r["total_ms"] for r in runs]) / 1000 / int(n),
            "note": "transformers.js's own sampler and unconditional prompt: no token parity"}
    return out
