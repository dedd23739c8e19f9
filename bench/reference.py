"""The `run` scenario's references, against which a row's tokens and pixels are compared:

- `native`: the reference loop on transformers' model at fp32 (CUDA where there is one, else the CPU), the
  bundle's source; a measurement of the row's workload, one run, no warm-up;
- `ort`: the reference loop on onnxruntime over the same bundle's graphs at the dtypes the row ran them (the page
  reports its own: the fused decoder's weights for the ort-gqa, wgsl and cpu engines, `language_model` for
  ort-grow; the CPU engine's token table, heads and vision tower at theirs), with every MatMulNBits of the decoder,
  lm_head, gen_head and gen_img_embeds at the engine's arithmetic: accuracy_level 4 (int8 activations per block) for the CPU engine's
  integer kernels, as exported for the others; `--accuracy-level` sets one level for every row. The row should
  then give the very same tokens: `run` states it as a verdict.

`centred_draws` (`run --draws centred`) moves each image draw to the middle of its token's interval in that
reference, so that a comparison of image tokens is not decided by a draw that lies within rounding of an edge.
"""

import contextlib
import dataclasses
import tempfile
from pathlib import Path

import numpy as np

from janusweb.bench.loops import measure

FUSED_ENGINES = ("ort-gqa", "wgsl", "cpu")
ENGINE_ACCURACY_LEVEL = {"cpu": 4}  # the CPU engine's integer kernels compute as MatMulNBits at accuracy_level 4
LEVEL_GRAPHS = ("lm_head", "gen_head", "gen_img_embeds")  # beside the decoder


def _one_run(w):
    return dataclasses.replace(w, repeats=1, warmup=False)


def native(model, work) -> dict:
    import torch

    from janusweb.bench.native import reference_loop
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        m = reference_loop(model if device == "cpu" else model.to("cuda"), work.inputs, _one_run(work.workload),
                           device, torch.float32)
    finally:
        model.to("cpu")
    return {**m, "name": f"native-{device} fp32 (reference loop on transformers)"}


def graph_dtypes(page_dtypes: dict) -> tuple:
    """(decoder dtype, {graph: dtype}, image graph dtype or None) from the dtypes a page row reports."""
    d = dict(page_dtypes)
    decoder = d.pop("language_model", d.pop("language_model_gqa", "fp32"))
    if "embed_tokens" in d:  # the CPU engine embeds token rows from its pack's table (the graph at that dtype)
        d["prepare_inputs_embeds"] = d.pop("embed_tokens")
    if "gen_step" in d:  # the image step graph holds gen_head and gen_img_embeds at its dtype
        d.setdefault("gen_head", d["gen_step"])
        d.setdefault("gen_img_embeds", d["gen_step"])
    image = d.pop("prepare_inputs_embeds@image", None)
    return decoder, d, image


@contextlib.contextmanager
def ort_graphs(work, dtypes: dict, engine: str, accuracy_level: int | None):
    """(graphs, name): onnxruntime over the bundle's graphs at `dtypes`, the decoder's MatMulNBits (and the heads')
    at the engine's accuracy_level (or `accuracy_level`). dtypes: the page's reported dtypes, or {graph: dtype} for
    a Python row. engine: the decoder the row ran."""
    from janusweb.dtypes import graph_file
    from janusweb.fused import STEM, FusedGraphs
    from janusweb.graphs import ImagePromptGraphs, OrtGraphs
    decoder, others, image = graph_dtypes(dtypes)
    fused = engine in FUSED_ENGINES
    level = ENGINE_ACCURACY_LEVEL.get(engine) if accuracy_level is None else accuracy_level
    quantized = [graph_file(name, d) for name, d in ((STEM if fused else "language_model", decoder),
                                                     *((g, others.get(g, "fp32")) for g in LEVEL_GRAPHS))
                 if d != "fp32"]
    with tempfile.TemporaryDirectory(prefix="janusweb-reference-") as tmp:
        bundle = work.bundle
        if level is not None and quantized:
            from janusweb.accuracy_level import accuracy_view
            bundle = accuracy_view(bundle, Path(tmp) / "view", quantized, level)
        graphs = (FusedGraphs(bundle, decoder, others) if fused
                  else OrtGraphs(bundle, {**others, "language_model": decoder}))
        if image is not None:
            graphs = ImagePromptGraphs(graphs, bundle / graph_file("prepare_inputs_embeds", image))
        at = f", MatMulNBits accuracy_level {level}" if level is not None and quantized else ""
        yield graphs, f"onnxruntime over the row's graphs ({'fused ' if fused else ''}decoder {decoder}{at})"


def ort(work, dtypes: dict, engine: str, accuracy_level: int | None) -> dict:
    """The workload once on onnxruntime over the row's graphs (ort_graphs)."""
    with ort_graphs(work, dtypes, engine, accuracy_level) as (graphs, name):
        m = measure(graphs, work.inputs, _one_run(work.workload))
    return {**m, "name": name}


def centred_draws(work, dtypes: dict, engine: str, accuracy_level: int | None) -> np.ndarray:
    """The workload's image draws, each moved to the middle of the probability interval of the token it picks in
    the ort reference, as float32 (what the page holds). The reference's tokens stay the same; a row then draws
    another token only where its CFG distribution is off the reference's by about half that token's probability,
    not wherever a seeded draw happens to lie within rounding of an interval's edge. Greedy (temperature 0): as
    given."""
    from janusweb.generate import generate_images
    from janusweb.sampling import cfg_logits, sample
    w, inp = work.workload, work.inputs
    draws = inp.draws.astype(np.float64)
    if w.temperature == 0:
        return draws

    def centre(step, logits):
        n = draws.shape[0]
        z = cfg_logits(logits[:n], logits[n:], w.guidance).astype(np.float64)
        token = sample(z, draws[:, step], w.temperature)
        p = np.exp(z / w.temperature - (z / w.temperature).max(-1, keepdims=True))
        cdf = np.cumsum(p, -1)
        rows = np.arange(n)
        lo = np.where(token > 0, cdf[rows, np.maximum(token - 1, 0)], 0.0)
        draws[:, step] = np.float32((lo + cdf[rows, token]) / 2 / cdf[:, -1])
        if not (sample(z, draws[:, step], w.temperature) == token).all():
            raise RuntimeError(f"image step {step}: a centred draw picks another token")

    with ort_graphs(work, dtypes, engine, accuracy_level) as (graphs, _):
        generate_images(graphs, inp.dims, inp.ids, inp.prompt_ids, draws, guidance=w.guidance,
                        temperature=w.temperature, on_logits=centre)
    return draws
