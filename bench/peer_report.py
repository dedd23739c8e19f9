"""The `peers` scenario's arithmetic: from the per-round numbers of one run to the ratios the WASM fallback's
targets are stated in, each marked met or not met.

`numbers` (all times in ms, one value per round):
  read_gbps: [numpy read bandwidth before, after]
  ours:   {threads: {"text_ms": [...], "image_ms": [...], "text_bytes": int, "image_bytes": int, "build": str,
                     "prefill_tokens_per_s": [...] (optional)}}
  wllama: {threads: {"ms_per_token": [...], "prompt_tokens_per_s": [...] (optional)}}
  ort:    {threads: {"text_ms": [...], "image_ms": [...]}}
"""

import numpy as np

TARGET_THREADS = 2
# key, what, comparison, target
TARGETS = [
    ("text_vs_wllama", "text decode tokens/s, ours / wllama Q8_0 (2 threads)", ">=", 1.5),
    ("prefill_vs_wllama", "prompt prefill tokens/s, ours / wllama Q8_0 (2 threads)", ">=", 1.5),
    ("image_step_ms", "CFG image step ms, ours (2 threads)", "<=", 300.0),
    ("image_vs_text", "CFG image step / text token time, ours (2 threads)", "<=", 1.3),
    ("image_read_bw_pct", "CFG image step's bytes read (weights, KV cache) / time, % of numpy read bandwidth "
                          "(2 threads)", ">=", 40.0),
    ("image_vs_ort", "CFG image step, onnxruntime-web WASM q4 / ours (2 threads)", ">=", 10.0),
]


def spread(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}


def measures(numbers: dict) -> dict:
    """Per thread count: medians and spreads of every row, and the derived ratios."""
    bw = max(numbers["read_gbps"])
    out = {"read_gbps": {"before": numbers["read_gbps"][0], "after": numbers["read_gbps"][-1], "best": bw}}
    for t, ours in numbers["ours"].items():
        text, image = spread(ours["text_ms"]), spread(ours["image_ms"])
        row = {"ours_build": ours["build"], "ours_text_ms": text, "ours_image_ms": image,
               "ours_text_tokens_per_s": 1000.0 / text["median"],
               "ours_text_read_bw_pct": 100.0 * ours["text_bytes"] / text["median"] / 1e6 / bw,
               "ours_image_read_bw_pct": 100.0 * ours["image_bytes"] / image["median"] / 1e6 / bw,
               "image_vs_text": image["median"] / text["median"]}
        if t in numbers.get("wllama", {}):
            w = spread(numbers["wllama"][t]["ms_per_token"])
            row |= {"wllama_ms_per_token": w, "wllama_tokens_per_s": 1000.0 / w["median"],
                    "text_vs_wllama": w["median"] / text["median"]}
            if ours.get("prefill_tokens_per_s") and numbers["wllama"][t].get("prompt_tokens_per_s"):
                ours_p, w_p = spread(ours["prefill_tokens_per_s"]), spread(numbers["wllama"][t]["prompt_tokens_per_s"])
                row |= {"ours_prefill_tokens_per_s": ours_p, "wllama_prompt_tokens_per_s": w_p,
                        "prefill_vs_wllama": ours_p["median"] / w_p["median"]}
        if t in numbers.get("ort", {}):
            o_text, o_image = spread(numbers["ort"][t]["text_ms"]), spread(numbers["ort"][t]["image_ms"])
            row |= {"ort_text_ms": o_text, "ort_image_ms": o_image, "text_vs_ort": o_text["median"] / text["median"],
                    "image_vs_ort": o_image["median"] / image["median"]}
        out[str(t)] = row
    return out


def verdicts(m: dict) -> list:
    """Each target at TARGET_THREADS: its value, met (True/False) or None where the row did not run."""
    row = m.get(str(TARGET_THREADS), {})
    values = {"text_vs_wllama": row.get("text_vs_wllama"), "prefill_vs_wllama": row.get("prefill_vs_wllama"),
              "image_step_ms": row.get("ours_image_ms", {}).get("median"),
              "image_vs_text": row.get("image_vs_text"), "image_read_bw_pct": row.get("ours_image_read_bw_pct"),
              "image_vs_ort": row.get("image_vs_ort")}
    out = []
    for key, what, op, target in TARGETS:
        v = values[key]
        met = None if v is None else (v >= target if op == ">=" else v <= target)
        out.append({"key": key, "what": what, "value": v, "target": f"{op} {target:g}", "met": met})
    return out
