"""The quantized variants an export writes (`janusweb export --dtype q4[,int8]`), from either weight source
(export.sources): the language model and the fused WebGPU decoder at int8 / q4 while streaming, one weight at a
time from the source's store (a checkpoint's bf16 weights, or the whole model's own), without their fp32 graphs
ever being needed (`--fp32-graphs` writes those too); every other graph quantized from its written fp32 file.

The quantizers come from the CLI (quantize.stream's StreamQuantizer: export never imports quantize); they are the
MatMul choice, kernels and manifest records of `janusweb quantize` (StreamQuantizer.record).

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

import numpy as np
import onnx_ir as ir

from janusweb.export.fused import export_fused_language_model
from janusweb.export.layerwise import check_language_model, export_language_model
from janusweb.export.memory import LANGUAGE_MODEL
from janusweb.export.validate import Check, Report
from janusweb.export.weights import BuffersOnMeta, materialized
from janusweb.fused import REPLACEMENTS, STEM
from janusweb.log import step

PROJECTIONS_PER_LAYER = 7  # q, k, v, o, gate, up, down: every one a MatMulNBits
CHECKED = ("each decoder layer at fp32 arithmetic against transformers' layer with the weights the graph computes "
           "with (its packed weights and scales read back and dequantized), at the fp32 graph's tolerance; accuracy: the same layers with the "
           "source weights (layerwise_vs_source_weights)")


def graph_variant(spec, src, onnx_dir: Path, written: list | None, report: Report, block: int, quant, where: str,
                  validate: bool) -> tuple:
    """One graph at the quantizer's dtype: (its variant entry, {packed weight initializer: parameter name} or None).
    The language model is written while streaming from the source (traced over src.meta, weights from src.store);
    any other graph is quantized from its fp32 file (`written`)."""
    if spec.name == LANGUAGE_MODEL:
        return language_model_variant(spec, src.meta, src.store, src.buffers, onnx_dir, report, block, quant, where,
                                      validate)
    with step(f"{where} {quant.name}: quantize"):
        return quant.quantize_file(written[0], onnx_dir, f"{spec.name}{quant.suffix}"), None


def language_model_variant(spec, model, store, buffers: dict, onnx_dir: Path, report: Report, block: int, quant,
                           where: str, validate: bool = True) -> tuple:
    """Write and (with `validate`) check language_model<suffix>: (its variant entry, files under the bundle root's
    onnx/; {packed weight initializer: parameter name})."""
    with step(f"{where} {quant.name}: export, weights streamed and quantized"), BuffersOnMeta(model):
        files, stats, ops, packed = export_language_model(spec, model, store, onnx_dir, buffers, quant)
    expected = PROJECTIONS_PER_LAYER * len(model.model.language_model.layers)
    if stats.quantized != expected:
        raise RuntimeError(f"{files[0].name}: {stats.quantized} MatMulNBits, expected {expected} (the layer check "
                           "assumes every projection is quantized)")
    if not validate:
        return {**quant.entry(files, stats, ops), "checked": "not checked (--no-validate)",
                "layerwise_vs_source_weights": None, "max_abs_diff_vs_pytorch": None}, packed
    with step(f"{where} {quant.name}: validate against PyTorch, {block} decoder layer(s) at a time"):
        accuracy = check_language_model(spec, model, store, files[0], report, block, quant, packed)
    return {**quant.entry(files, stats, ops), "checked": CHECKED, "layerwise_vs_source_weights": accuracy,
            "max_abs_diff_vs_pytorch": report.graph_max_diff(f"{spec.name}{quant.suffix}")}, packed


def _keep(graph, names) -> None:
    """The lazy initializers `names` computed now and kept as numpy values (not the weights they come from)."""
    for name in names:
        value = graph.initializers[name]
        value.const_value = ir.tensor(np.ascontiguousarray(value.const_value.numpy()), name=name)


def fused_variant(model, store, onnx_dir: Path, tokenizer_dir: Path, quant, config: dict, report: Report,
                  tolerance: float, where: str) -> dict:
    """Write language_model_gqa<suffix> with the builder fed layer by layer, check it against
    language_model<suffix> (already written in onnx_dir); its entry. quant None: the fp32 graph, each layer's
    weights kept as the builder made them (the language model's fp32 weights are held until the graph is saved)."""
    stats, suffix = [], quant.suffix if quant else ""

    @contextmanager
    def around_layer(graph_model, layer):
        before = set(graph_model.graph.initializers)
        with materialized(model, store, {id(p) for p in layer.parameters()}):
            yield
            made = [n for n in graph_model.graph.initializers if n not in before]
            quant.hold(graph_model.graph, made) if quant else _keep(graph_model.graph, made)

    def before_save(graph_model):
        stats.append(quant.apply(graph_model)[0])

    stem = f"{STEM}{suffix}"
    norm = {id(p) for p in model.model.language_model.norm.parameters()}
    with step(f"{where} {stem}: build, one decoder layer at a time"), materialized(model, store, norm):
        built = export_fused_language_model(model, onnx_dir, tokenizer_dir, stem=stem, around_layer=around_layer,
                                            before_save=before_save if quant else None)
    reference = onnx_dir / f"language_model{suffix}.onnx"
    with step(f"{where} {stem}: validate against {reference.name} (hidden_states, prefill+4 steps)"):
        check = REPLACEMENTS[STEM](onnx_dir / f"{stem}.onnx", reference, config)
    for case, c in check.items():
        report.checks.append(Check(stem, "hidden_states", f"{case},prefill+4 steps vs {reference.stem}",
                                   c["max_abs_diff"], tolerance * max(1.0, c["reference_abs_max"])))
    if quant is None:  # the whole-model export's entry for it (BuiltSpec)
        return {**built, "replaces": LANGUAGE_MODEL, f"check_vs_{LANGUAGE_MODEL}": check}
    files = [onnx_dir / Path(rel).name for rel in built["files"]]
    entry = quant.entry(files, stats[0], built["ops"])
    keep = ("inputs", "outputs", "fused_ops", "attention_mask", "kv_cache", "position_ids", "provider_options",
            "builder")
    return {**entry, **{k: built[k] for k in keep}, f"check_vs_language_model{suffix}": check,
            "checked": f"against language_model{suffix} (same quantized weights), which is checked " + CHECKED}
