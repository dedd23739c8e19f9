"""The end-to-end check of a bundle's language model at one dtype, from either weight source (export.sources):
greedy text after an image prompt (onnxruntime vs transformers.generate) and CFG image steps (onnxruntime vs
PyTorch, teacher-forced: export.image_check), on language_model<suffix> with the other graphs in fp32, against
transformers' model given the weights the graph computes with: the source's for fp32, for a quantized language
model its own packed weights and scales read back and dequantized (weights.GraphWeights).

How much of the model PyTorch holds:
- whole: the whole source model (it holds it already), or every weight made at once where the whole fp32 model
  fits; at the asked length (or export.memory.plan's shortened image check);
- layers on demand: the model without its decoder layers fits, plus one layer and the onnxruntime sessions; each
  decoder layer's fp32 weights exist only while it runs (weights.layers_on_demand), so every forward pass makes
  all of them again, and the run is shortened to ON_DEMAND_TEXT_STEPS tokens and ON_DEMAND_IMAGE_STEPS image
  steps (stated in the manifest);
- skipped: not even that fits; the manifest says why.

`janusweb end-to-end BUNDLE` runs it on a bundle already written (one exported with --text-steps 0, or before
this run existed): the source is opened again as the export opened it (the manifest's `source` and
`export.streamed`), the packed weights are found by tracing the language model again over meta weights, and the
result is recorded in the manifest's validation.
"""

from contextlib import nullcontext
from pathlib import Path

import numpy as np
import onnx
from tokenizers import Tokenizer

from janusweb import manifest as manifests
from janusweb.dtypes import graph_file
from janusweb.errors import UserError
from janusweb.export.image_check import image_end_to_end
from janusweb.export.memory import BASE_BYTES, LANGUAGE_MODEL, budget, needs
from janusweb.export.validate import EndToEnd, transformers_greedy
from janusweb.export.weights import BuffersOnMeta, GraphWeights, layers_on_demand, materialized
from janusweb.generate import ModelDims, generate_text
from janusweb.graphs import GRAPH_NAMES, OrtGraphs, TorchGraphs
from janusweb.integrity import graph_files, read_manifest, verify_files
from janusweb.log import step
from janusweb.metrics import first_divergence
from janusweb.prompts import SpecialIds, generation_prompt, understanding_inputs
from janusweb.sampling import uniforms

TEXT_PROMPT = "Describe this image in detail."
IMAGE_PROMPT = "A watercolor painting of mountains at sunset."
ON_DEMAND_TEXT_STEPS = 4
ON_DEMAND_IMAGE_STEPS = 4
SESSION_FACTOR = 1.2  # onnxruntime's memory for a session over its graph file's weights
WHOLE, ON_DEMAND = "whole", "layers on demand"
SKIPPED = ("the whole fp32 model needs about {whole:.1f} GB and the model with its decoder layers made on demand "
           "about {demand:.1f} GB with onnxruntime's sessions; {available:.1f} GB may be used")


def reference_run(model, specs, bundle: Path, tokenizer_dir: Path, seed: int, text_steps: int,
                  image_steps: int | None, dtypes: dict | None = None) -> EndToEnd:
    """Text after an image prompt (ORT vs transformers.generate) and CFG image generation (ORT vs PyTorch) on the
    bundle's graphs (`dtypes`: their variants, OrtGraphs'; default fp32)."""
    tok = Tokenizer.from_file(str(Path(tokenizer_dir) / "tokenizer.json"))
    ids = SpecialIds.from_tokenizer(tok)
    ort_graphs = OrtGraphs(bundle, dtypes)
    dims = ModelDims.from_bundle_config(ort_graphs.config)
    rng = np.random.default_rng(seed)
    pixels = rng.uniform(-1, 1, (1, 1, 3, dims.image_size, dims.image_size)).astype(np.float32)
    inputs = understanding_inputs(tok, ids, TEXT_PROMPT, dims.num_image_tokens)
    with step(f"end to end: greedy text, {text_steps} tokens (onnxruntime vs transformers.generate)"):
        # both stop at EOS: transformers' generate stops there even with eos_token_id=None in the generation
        # config (a trained model answers in a few tokens; a random one runs all text_steps)
        ours = generate_text(ort_graphs, dims, inputs, text_steps, pixel_values=pixels, eos_id=ids.eos)
        ref = transformers_greedy(model, inputs, pixels, text_steps)
    steps = min(image_steps or dims.num_image_tokens, dims.num_image_tokens)
    draws = uniforms(seed, steps).reshape(1, steps)
    prompt = generation_prompt(tok, ids, IMAGE_PROMPT)
    with step(f"end to end: CFG image, {steps} tokens (onnxruntime vs PyTorch, teacher-forced)"):
        image = image_end_to_end(ort_graphs, TorchGraphs(model, specs), dims, ids, prompt, draws)
    return EndToEnd(len(ref), ours == ref, first_divergence(ours, ref),
                    image.__dict__ | {"ok": image.ok, "summary": image.summary()})


def on_demand_bytes(model, bundle: Path, dtype: str) -> int:
    """Peak memory of the run with layers on demand: the fp32 weights outside the decoder layers, the largest
    layer twice (its dequantized weights and their fp32 copies), the sessions over the graph files it runs."""
    layers = model.model.language_model.layers
    inside = {id(p) for layer in layers for p in layer.parameters()}
    rest = 4 * sum(p.numel() for p in model.parameters() if id(p) not in inside)
    layer = 4 * max(sum(p.numel() for p in layer.parameters()) for layer in layers)
    files = 0
    for name in GRAPH_NAMES:
        path = Path(bundle) / graph_file(name, dtype if name == LANGUAGE_MODEL else "fp32")
        files += sum(p.stat().st_size for p in (path, Path(f"{path}_data")) if p.is_file())
    return BASE_BYTES + rest + 2 * layer + int(SESSION_FACTOR * files)


def choose(config, model, bundle: Path, dtype: str, image_steps: int | None = None,
           available: int | None = None) -> tuple:
    """(WHOLE, ON_DEMAND or None, why None) for a source that does not hold the whole model, against MemAvailable
    (or `available`) less export.memory's margin."""
    room = budget(available)
    whole, demand = needs(config).whole_bytes(image_steps), on_demand_bytes(model, bundle, dtype)
    if whole <= room:
        return WHOLE, None
    if demand <= room:
        return ON_DEMAND, None
    return None, SKIPPED.format(whole=whole / 1e9, demand=demand / 1e9, available=room / 1e9)


def lengths(mode: str, text_steps: int, image_steps: int | None, image_tokens: int) -> tuple:
    """(text tokens, image steps, what was shortened or None)."""
    image = min(image_steps or image_tokens, image_tokens)
    if mode == WHOLE:
        return text_steps, image, None
    text, short = min(text_steps, ON_DEMAND_TEXT_STEPS), min(image, ON_DEMAND_IMAGE_STEPS)
    why = (f"{text} of {text_steps} text tokens, {short} of {image} image steps: with its decoder layers made on "
           "demand, every forward pass makes each layer's fp32 weights again")
    return text, short, why if (text, short) != (text_steps, image) else None


def check(src, specs, bundle: Path, seed: int, quant, packed: dict | None, text_steps: int,
          image_steps: int | None, planned: str | None = None) -> tuple:
    """The run on language_model at the quantizer's dtype (quant None: fp32) of the bundle written in `bundle`:
    (validate.EndToEnd or None when skipped, the manifest's entry for it). planned: export.memory.plan's line
    when it shortened the image check."""
    name = quant.name if quant else "fp32"
    if quant is None and src.holds_model:
        model, mode, weights = src.model, WHOLE, None
    else:
        model = src.model if quant is None else src.meta
        mode, why = choose(src.config, model, bundle, name, image_steps)
        if mode is None:
            return None, {"ok": None, "skipped": why}
        if quant is None:
            weights = src.store
        else:
            path = Path(bundle) / graph_file(LANGUAGE_MODEL, name)
            graph = onnx.load(str(path), load_external_data=False).graph
            weights = GraphWeights(src.store, graph, path.parent, packed, quant)
    text, image, shortened = lengths(mode, text_steps, image_steps, src.config.vision_config.num_image_tokens)
    held = (nullcontext() if weights is None else
            materialized(model, weights, {id(p) for p in model.parameters()}) if mode == WHOLE else
            layers_on_demand(model, weights, list(model.model.language_model.layers)))
    with held:
        result = reference_run(model, specs, bundle, src.tokenizer_dir, seed, text, image, {LANGUAGE_MODEL: name})
    reference = "transformers with the weights the graph computes with" if quant else "transformers (fp32)"
    entry = result.__dict__ | {"ok": result.ok, "graphs": f"{graph_file(LANGUAGE_MODEL, name)} + fp32 others",
                               "reference": reference, "weights": mode, "shortened": shortened or planned}
    return result, entry


def check_bundle(bundle: Path, quant, text_steps: int, image_steps: int | None) -> dict:
    """`janusweb end-to-end`: the run on a bundle's language_model at the quantizer's dtype (None: fp32), recorded
    in its manifest (atomically); returns the entry."""
    from janusweb.export.layerwise import trace_language_model
    from janusweb.export.sources import open_source
    from janusweb.export.specs import graph_specs

    bundle = Path(bundle)
    name = quant.name if quant else "fp32"
    manifest = read_manifest(bundle)
    if not (bundle / graph_file(LANGUAGE_MODEL, name)).is_file():
        raise UserError(f"{bundle}: no {graph_file(LANGUAGE_MODEL, name)} (the export's --dtype, or --fp32-graphs)")
    others = [g for g in GRAPH_NAMES if g != LANGUAGE_MODEL]
    verify_files(bundle, manifest, graph_files(manifest, [LANGUAGE_MODEL], name)
                 + graph_files(manifest, others) + ["config.json", "tokenizer.json"])
    source = manifest["source"]
    streamed = bool(manifest.get("export", {}).get("streamed"))
    with open_source(source["name"] if source["kind"] == "preset" else source["path"], source.get("seed", 0),
                     streamed) as src:
        specs = graph_specs(src.model)
        packed = None
        if quant:
            spec = next(s for s in specs if s.name == LANGUAGE_MODEL)
            with step(f"language_model{quant.suffix}: trace again over meta weights (its packed weights' names)"), \
                    BuffersOnMeta(src.meta):
                packed = trace_language_model(spec, src.meta, src.store, src.buffers, quant)[2]
        result, entry = check(src, specs, bundle, source.get("seed", 0), quant, packed, text_steps, image_steps)
    if result is None:
        raise UserError(f"{bundle}: the end-to-end run does not fit: {entry['skipped']}")
    recorded = manifest["validation"].get("end_to_end") or {}
    runs = {**recorded.get("runs", {}), name: entry}
    manifest["validation"]["end_to_end"] = summary(runs)
    manifests.write(bundle, manifest)
    return entry


def summary(runs: dict, skipped: str | None = None) -> dict:
    """The manifest's validation.end_to_end: {"ok": every run that ran passed (None: none ran), "runs": {dtype:
    entry}, "skipped": why none ran, or None}."""
    ran = [r["ok"] for r in runs.values() if r.get("ok") is not None]
    return {"ok": all(ran) if ran else None, "runs": runs, "skipped": None if ran else skipped}
