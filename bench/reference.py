"""The `run` scenario's references, against which a row's tokens and pixels are compared:

- `native`: the reference loop on transformers' model at fp32 (CUDA where there is one, else the CPU), the
  bundle's source; a measurement of the row's workload, one run, no warm-up;
- `ort`: the reference loop on onnxruntime over the same bundle's graphs at the dtypes the row ran them (the page
  reports its own: the fused decoder's weights for the ort-gqa, wgsl and cpu engines, `language_model` for
  ort-grow; the CPU engine's token table, heads and vision tower at theirs), with every MatMulNBits of the decoder,
  lm_head, gen_head and gen_img_embeds at the engine's arithmetic: accuracy_level 4 (int8 activations per block) for the CPU engine's
  integer kernels, as exported for the others; `--accuracy-level` sets one level for every row. The row should
  then give the very same tokens: `run` states it as a verdict.
"""

import dataclasses
import tempfile
from pathlib import Path

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


def ort(work, dtypes: dict, engine: str, accuracy_level: int | None) -> dict:
    """dtypes: the page's reported dtypes, or {graph: dtype} for a Python row. engine: the decoder the row ran."""
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
        m = measure(graphs, work.inputs, _one_run(work.workload))
    at = f", MatMulNBits accuracy_level {level}" if level is not None and quantized else ""
    return {**m, "name": f"onnxruntime over the row's graphs ({'fused ' if fused else ''}decoder {decoder}{at})"}
