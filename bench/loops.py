"""Measure the workload on any backend that runs the reference loops (onnxruntime sessions, or PyTorch
through TorchGraphs): the loops are janusweb.generate's, this module only times them."""

import numpy as np

from janusweb.bench.timing import Clock, median, stats
from janusweb.bench.workload import Inputs, Workload
from janusweb.generate import generate_images, generate_text


def understanding(graphs, inp: Inputs, tokens: int, sync=None) -> dict:
    clock = Clock(sync)
    first = {}

    def on_token(token, logits):
        if not first:
            first["logits"] = np.asarray(logits, np.float32)
        clock.mark()

    clock.start()
    out = generate_text(graphs, inp.dims, inp.understanding, tokens, pixel_values=inp.pixel_values,
                        on_token=on_token)
    d = clock.deltas
    decode_s = d[1:].sum() / 1000.0
    return {"ttft_ms": float(d[0]), "decode_tokens_per_s": (len(d) - 1) / decode_s if decode_s else None,
            "tokens": out, "first_logits": first["logits"]}


def generation(graphs, inp: Inputs, w: Workload, n: int, sync=None) -> dict:
    clock = Clock(sync)
    clock.start()
    result = generate_images(graphs, inp.dims, inp.ids, inp.prompt_ids, inp.draws[n], guidance=w.guidance,
                             temperature=w.temperature, on_step=clock.mark)
    clock.mark()
    d = clock.deltas
    steps = d[:-1]
    # the first delta holds the prompt prefill; per-step figures use the decode steps after it
    return {"ms_per_step": stats(steps[1:]), "step_ms": steps[1:].tolist(), "prefill_ms": float(steps[0]), "vq_decode_ms": float(d[-1]),
            "s_per_image": float(d.sum() / 1000.0 / n), "tokens": result.tokens.tolist(), "images": result.images}


def measure(graphs, inp: Inputs, w: Workload, sync=None) -> dict:
    """Warm-up, then `w.repeats` runs of each part; medians of the repeats, tokens of the last run."""
    understanding(graphs, inp, 2, sync)
    generation(graphs, inp, w, min(inp.draws), sync)
    u = [understanding(graphs, inp, w.text_tokens, sync) for _ in range(w.repeats)]
    out = {"understanding": {
        "ttft_ms": median([r["ttft_ms"] for r in u]),
        "decode_tokens_per_s": median([r["decode_tokens_per_s"] or 0 for r in u]),
        "tokens": u[-1]["tokens"], "first_logits": u[-1]["first_logits"]}, "generation": {}}
    for n in w.image_counts:
        g = [generation(graphs, inp, w, n, sync) for _ in range(w.repeats)]
        best = sorted(g, key=lambda r: r["s_per_image"])[len(g) // 2]  # the median run, whole
        out["generation"][str(n)] = {**best, "s_per_image": median([r["s_per_image"] for r in g]),
                                     "vq_decode_ms": median([r["vq_decode_ms"] for r in g])}
    return out
