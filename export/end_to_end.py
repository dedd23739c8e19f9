"""The end-to-end run of a streamed bundle's quantized language model (export.driver's: greedy text after an image
prompt against transformers.generate, CFG image steps against PyTorch), on language_model<suffix> with the other
graphs in fp32, against transformers' model given the weights the graph computes with (weights.GraphWeights).

How much of the model PyTorch holds is chosen by memory:
- whole: the whole fp32 model fits; every weight is made at once, at the asked length.
- layers on demand: the model without its decoder layers fits, plus one layer and the onnxruntime sessions; each
  decoder layer's fp32 weights exist only while it runs (weights.layers_on_demand), so every forward pass makes
  all of them again, and the run is shortened to ON_DEMAND_TEXT_STEPS tokens and ON_DEMAND_IMAGE_STEPS image
  steps (stated in the manifest).
- skipped: not even that fits; the manifest says why.

`janusweb end-to-end BUNDLE` runs it on a bundle already written (one exported with --text-steps 0, or before this
run existed): the source is rebuilt from the manifest, the packed weights are found by tracing the language model
again over meta weights, and the result is recorded in the manifest's validation.
"""

from pathlib import Path

from janusweb import manifest as manifests
from janusweb.dtypes import graph_file
from janusweb.errors import UserError
from janusweb.export.memory import BASE_BYTES, LANGUAGE_MODEL, mem_available, meta_model, needs
from janusweb.export.weights import BuffersOnMeta, GraphWeights, layers_on_demand, materialized
from janusweb.graphs import GRAPH_NAMES
from janusweb.integrity import graph_files, read_manifest, verify_files
from janusweb.log import step

ON_DEMAND_TEXT_STEPS = 4
ON_DEMAND_IMAGE_STEPS = 4
SESSION_FACTOR = 1.2  # onnxruntime's memory for a session over its graph file's weights
WHOLE, ON_DEMAND = "whole", "layers on demand"
SKIPPED = ("the whole fp32 model needs about {whole:.1f} GB and the model with its decoder layers made on demand "
           "about {demand:.1f} GB with onnxruntime's sessions; {available:.1f} GB are available")


def on_demand_bytes(model, bundle: Path, quant) -> int:
    """Peak memory of the run with layers on demand: the fp32 weights outside the decoder layers, the largest
    layer twice (its dequantized weights and their fp32 copies), the sessions over the graph files it runs."""
    layers = model.model.language_model.layers
    inside = {id(p) for layer in layers for p in layer.parameters()}
    rest = 4 * sum(p.numel() for p in model.parameters() if id(p) not in inside)
    layer = 4 * max(sum(p.numel() for p in layer.parameters()) for layer in layers)
    files = 0
    for name in GRAPH_NAMES:
        path = Path(bundle) / graph_file(name, quant.name if name == LANGUAGE_MODEL else "fp32")
        files += sum(p.stat().st_size for p in (path, Path(f"{path}_data")) if p.is_file())
    return BASE_BYTES + rest + 2 * layer + int(SESSION_FACTOR * files)


def choose(config, model, bundle: Path, quant, available: int | None = None) -> tuple:
    """(WHOLE, ON_DEMAND or None, why None)."""
    available = mem_available() if available is None else available
    whole, demand = needs(config).whole_bytes, on_demand_bytes(model, bundle, quant)
    if whole <= available:
        return WHOLE, None
    if demand <= available:
        return ON_DEMAND, None
    return None, SKIPPED.format(whole=whole / 1e9, demand=demand / 1e9, available=available / 1e9)


def lengths(mode: str, text_steps: int, image_steps: int | None, image_tokens: int) -> tuple:
    """(text tokens, image steps, what was shortened or None)."""
    image = min(image_steps or image_tokens, image_tokens)
    if mode == WHOLE:
        return text_steps, image, None
    text, short = min(text_steps, ON_DEMAND_TEXT_STEPS), min(image, ON_DEMAND_IMAGE_STEPS)
    why = (f"{text} of {text_steps} text tokens, {short} of {image} image steps: with its decoder layers made on "
           "demand, every forward pass makes each layer's fp32 weights again")
    return text, short, why if (text, short) != (text_steps, image) else None


def run(model, store, specs, bundle: Path, tokenizer_dir: Path, seed: int, quant, packed: dict, text_steps: int,
        image_steps: int | None, mode: str) -> tuple:
    """(EndToEnd, the manifest's entry for it)."""
    import onnx
    from tokenizers import Tokenizer

    from janusweb.export.driver import end_to_end  # the driver imports the streamed export, which imports this
    from janusweb.prompts import SpecialIds

    path = Path(bundle) / graph_file(LANGUAGE_MODEL, quant.name)
    weights = GraphWeights(store, onnx.load(str(path), load_external_data=False).graph, path.parent, packed, quant)
    tok = Tokenizer.from_file(str(Path(tokenizer_dir) / "tokenizer.json"))
    text, image, shortened = lengths(mode, text_steps, image_steps, model.config.vision_config.num_image_tokens)
    held = (materialized(model, weights, {id(p) for p in model.parameters()}) if mode == WHOLE else
            layers_on_demand(model, weights, list(model.model.language_model.layers)))
    with held:
        result = end_to_end(model, specs, bundle, tok, SpecialIds.from_tokenizer(tok), seed, text, image,
                            {LANGUAGE_MODEL: quant.name})
    entry = result.__dict__ | {"ok": result.ok, "graphs": f"language_model{quant.suffix} + fp32 others",
                               "reference": "transformers with the weights the graph computes with",
                               "weights": mode, "shortened": shortened}
    return result, entry


def check_bundle(bundle: Path, quant, text_steps: int, image_steps: int | None) -> dict:
    """`janusweb end-to-end`: the run on a streamed bundle's language_model<suffix>, recorded in its manifest
    (atomically); returns the entry."""
    from janusweb.export.layerwise import trace_language_model
    from janusweb.export.specs import graph_specs
    from janusweb.export.stream import real_buffers, source_config, weight_store

    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    if not manifest.get("export", {}).get("streamed"):
        raise UserError(f"{bundle}: not written by the streamed export (`janusweb export` ran its end-to-end run "
                        "already; see the manifest's validation)")
    if not (bundle / graph_file(LANGUAGE_MODEL, quant.name)).is_file():
        raise UserError(f"{bundle}: no {graph_file(LANGUAGE_MODEL, quant.name)} (the streamed export's --dtype)")
    others = [name for name in GRAPH_NAMES if name != LANGUAGE_MODEL]
    verify_files(bundle, manifest, graph_files(manifest, [LANGUAGE_MODEL], quant.name) + graph_files(manifest, others)
                 + ["config.json", "tokenizer.json"])
    source = manifest["source"]
    name = source.get("name") if source["kind"] == "preset" else source["path"]
    seed = source.get("seed", 0)
    config, description, folder = source_config(name)
    config._attn_implementation = "eager"
    model = meta_model(config)
    store = weight_store(model, description, folder, seed)
    buffers = real_buffers(model)
    specs = graph_specs(model)
    mode, why = choose(config, model, bundle, quant)
    if mode is None:
        raise UserError(f"{bundle}: the end-to-end run does not fit: {why}")
    spec = next(s for s in specs if s.name == LANGUAGE_MODEL)
    with step(f"language_model{quant.suffix}: trace again over meta weights (its packed weights' names)"), \
            BuffersOnMeta(model):
        packed = trace_language_model(spec, model, store, buffers, quant)[2]
    result, entry = run(model, store, specs, bundle, bundle, seed, quant, packed, text_steps,
                        image_steps, mode)
    recorded = manifest["validation"].get("end_to_end") or {}
    recorded = {k: v for k, v in recorded.items() if isinstance(v, dict)}  # drop the "skipped" statement
    manifest["validation"]["end_to_end"] = recorded | {quant.name: entry}
    manifests.write(bundle, manifest)
    return entry
