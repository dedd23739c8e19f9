"""The workload on any backend that runs the reference loops (onnxruntime sessions, or PyTorch through
TorchGraphs): the loops are janusweb.generate's, this module only records when each token and step arrived, in
the shape the page's runs have (bench/measures.py computes every figure from it)."""

import time

import numpy as np

from janusweb.bench.workload import Inputs, Workload
from janusweb.generate import generate_images, generate_text


class Clock:
    """Milliseconds since `start`, after `sync` (e.g. torch.cuda.synchronize) so that queued work counts."""

    def __init__(self, sync=None):
        self.sync = sync or (lambda: None)
        self.t0 = time.perf_counter()

    def start(self) -> None:
        self.sync()
        self.t0 = time.perf_counter()

    def now(self) -> float:
        self.sync()
        return (time.perf_counter() - self.t0) * 1000.0


def text_run(graphs, inp: Inputs, tokens: int, sync=None) -> dict:
    clock, times, first = Clock(sync), [], {}

    def on_token(token, logits):
        if not first:
            first["logits"] = np.asarray(logits, np.float32)
        times.append(clock.now())

    clock.start()
    out = generate_text(graphs, inp.dims, inp.understanding, tokens, pixel_values=inp.pixel_values, on_token=on_token)
    return {"token_times_ms": times, "tokens": out, "first_logits": first.get("logits")}


def image_run(graphs, inp: Inputs, w: Workload, sync=None, draws=None) -> dict:
    clock, steps = Clock(sync), []
    clock.start()
    result = generate_images(graphs, inp.dims, inp.ids, inp.prompt_ids, inp.draws if draws is None else draws,
                             guidance=w.guidance, temperature=w.temperature, on_step=lambda *_: steps.append(clock.now()))
    total = clock.now()  # generate_images decodes the images before it returns
    return {"step_times_ms": steps, "first_image_ms": total, "total_ms": total, "tokens": result.tokens.tolist(),
            "images": result.images}


def measure(graphs, inp: Inputs, w: Workload, sync=None) -> dict:
    """Warm-up (2 tokens, a 2-step image) unless w.warmup is off, then `w.repeats` runs of each part."""
    if w.warmup:
        if w.text_tokens:
            text_run(graphs, inp, 2, sync)
        if w.images:
            image_run(graphs, inp, w, sync, draws=inp.draws[:, :2])
    return {"text": [text_run(graphs, inp, w.text_tokens, sync) for _ in range(w.repeats)] if w.text_tokens else [],
            "image": [image_run(graphs, inp, w, sync) for _ in range(w.repeats)] if w.images else []}
