"""The streamed export's quantized variants (`janusweb export --stream --dtype q4[,int8]`): the language model
and the fused WebGPU decoder written at int8 / q4 from the bf16 source, one weight at a time, without their fp32
graphs ever being on disk (`--fp32-graphs` writes those too).

The quantizers come from the CLI (quantize.stream's StreamQuantizer: export never imports quantize); they are the
MatMul choice, kernels and manifest records of `janusweb quantize`.

- language_model<suffix>: traced over meta weights as the fp32 graph is (export.layerwise), its MatMuls replaced
  by MatMulNBits whose packed weights are computed from each bf16 weight as the file is written. Checked one
  decoder layer at a time, at fp32 arithmetic and the fp32 graph's tolerance, against transformers' layers with
  the weights the graph computes with (its own packed weights and scales, read back and dequantized); its accuracy is measured per layer against
  the same layers with the source weights.
- language_model_gqa<suffix>: onnxruntime-genai's builder (export.fused) fed one decoder layer at a time: each
  layer's weights are made fp32 for the builder's work on it, and what the builder made of them is quantized and
  kept (only the quantized weights of the layers so far stay in memory); the MatMuls become MatMulNBits when the
  graph is complete, just before the builder saves it. Checked against language_model<suffix>
  (janusweb.fused's comparison: prefill + 4 steps, batch 1 and 2): both compute with the same quantized weights.
"""

from contextlib import contextmanager
from pathlib import Path

from janusweb.export.fused import export_fused_language_model
from janusweb.export.layerwise import check_language_model, export_language_model
from janusweb.export.validate import Check, Report
from janusweb.export.weights import BuffersOnMeta, materialized
from janusweb.fused import REPLACEMENTS, STEM
from janusweb.log import step

PROJECTIONS_PER_LAYER = 7  # q, k, v, o, gate, up, down: every one a MatMulNBits
CHECKED = ("each decoder layer at fp32 arithmetic against transformers' layer with the weights the graph computes "
           "with (its packed weights and scales read back and dequantized), at the fp32 graph's tolerance; accuracy: the same layers with the "
           "source weights (layerwise_vs_source_weights)")


def language_model_variant(spec, model, store, buffers: dict, onnx_dir: Path, report: Report, block: int, quant,
                           where: str) -> dict:
    """Write and check language_model<suffix>: (its variant entry, files under the bundle root's onnx/; {packed
    weight initializer: parameter name})."""
    with step(f"{where} {quant.name}: export, weights streamed and quantized"), BuffersOnMeta(model):
        files, stats, ops, packed = export_language_model(spec, model, store, onnx_dir, buffers, quant)
    expected = PROJECTIONS_PER_LAYER * len(model.model.language_model.layers)
    if stats.quantized != expected:
        raise RuntimeError(f"{files[0].name}: {stats.quantized} MatMulNBits, expected {expected} (the layer check "
                           "assumes every projection is quantized)")
    with step(f"{where} {quant.name}: validate against PyTorch, {block} decoder layer(s) at a time"):
        accuracy = check_language_model(spec, model, store, files[0], report, block, quant, packed)
    return {**quant.entry(files, stats, ops), "checked": CHECKED, "layerwise_vs_source_weights": accuracy,
            "max_abs_diff_vs_pytorch": report.graph_max_diff(f"{spec.name}{quant.suffix}")}, packed


def fused_variant(model, store, onnx_dir: Path, tokenizer_dir: Path, quant, config: dict, report: Report,
                  tolerance: float, where: str) -> dict:
    """Write language_model_gqa<suffix> with the builder fed layer by layer, check it against
    language_model<suffix> (already written in onnx_dir); its variant entry."""
    stats = []

    @contextmanager
    def around_layer(graph_model, layer):
        before = set(graph_model.graph.initializers)
        with materialized(model, store, {id(p) for p in layer.parameters()}):
            yield
            quant.hold(graph_model.graph, [n for n in graph_model.graph.initializers if n not in before])

    def before_save(graph_model):
        stats.append(quant.apply(graph_model)[0])

    stem = f"{STEM}{quant.suffix}"
    norm = {id(p) for p in model.model.language_model.norm.parameters()}
    with step(f"{where} {stem}: build, one decoder layer at a time"), materialized(model, store, norm):
        built = export_fused_language_model(model, onnx_dir, tokenizer_dir, stem=stem, around_layer=around_layer,
                                            before_save=before_save)
    reference = onnx_dir / f"language_model{quant.suffix}.onnx"
    with step(f"{where} {stem}: validate against {reference.name} (hidden_states, prefill+4 steps)"):
        check = REPLACEMENTS[STEM](onnx_dir / f"{stem}.onnx", reference, config)
    for case, c in check.items():
        report.checks.append(Check(stem, "hidden_states", f"{case},prefill+4 steps vs {reference.stem}",
                                   c["max_abs_diff"], tolerance * max(1.0, c["reference_abs_max"])))
    matmul = stats[0]
    files = [onnx_dir / Path(rel).name for rel in built["files"]]
    entry = quant.entry(files, matmul, built["ops"])
    keep = ("inputs", "outputs", "fused_ops", "attention_mask", "kv_cache", "position_ids", "provider_options",
            "builder")
    return {**entry, **{k: built[k] for k in keep}, f"check_vs_language_model{quant.suffix}": check,
            "checked": f"against language_model{quant.suffix} (same quantized weights), which is checked " + CHECKED}

