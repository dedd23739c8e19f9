"""`janusweb export`: load a checkpoint, export every graph, validate each against PyTorch and the whole
pipeline end to end, and write the bundle atomically."""

import shutil
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import onnxscript
import torch
import transformers
from tokenizers import Tokenizer

import janusweb
from janusweb.atomic import atomic_dir
from janusweb.dtypes import STREAM_DEFAULT_DTYPES
from janusweb.export.bundle import (TOKENIZER_FILES, check_output_dir, config_json, generation_config_json,
                                    preprocessor_config_json, processor_config_json, runtime_config)
from janusweb.export.checkpoint import load_source
from janusweb.export.image_check import image_end_to_end
from janusweb.export.onnx_export import OPSET, export_graph
from janusweb.export.specs import BuiltSpec, GraphSpec, built_specs, graph_specs
from janusweb.export.stream import choose_stream, export_streamed
from janusweb.export.tokenizer import set_chat_templates
from janusweb.export.validate import Check, EndToEnd, Report, check_graph, transformers_greedy
from janusweb.generate import ModelDims, generate_text
from janusweb.graphs import OrtGraphs, TorchGraphs
from janusweb import manifest as manifests
from janusweb.log import log, step
from janusweb.manifest import file_table
from janusweb.metrics import first_divergence
from janusweb.manifest import write_json_atomic as write_json
from janusweb.prompts import SpecialIds, generation_prompt, understanding_inputs
from janusweb.sampling import uniforms

TEXT_PROMPT = "Describe this image in detail."
IMAGE_PROMPT = "A watercolor painting of mountains at sunset."


class MismatchError(RuntimeError):
    """An exported graph or the end-to-end run differs from PyTorch beyond tolerance."""


def tool_versions() -> dict:
    return {"janusweb": janusweb.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "onnx": onnx.__version__, "onnxscript": onnxscript.__version__, "onnxruntime": onnxruntime.__version__}


def _tensor_meta(tensors) -> list:
    return [{"name": t.name, "dims": list(t.dims), "dtype": t.dtype} for t in tensors]


def end_to_end(model, specs, bundle: Path, tok: Tokenizer, ids: SpecialIds, seed: int, text_steps: int,
               image_steps: int | None, dtypes: dict | None = None) -> EndToEnd:
    """Text after an image prompt (ORT vs transformers.generate) and CFG image generation (ORT vs PyTorch);
    dtypes: the bundle's graph variants to run (OrtGraphs; default fp32)."""
    ort_graphs = OrtGraphs(bundle, dtypes)
    dims = ModelDims.from_bundle_config(ort_graphs.config)
    rng = np.random.default_rng(seed)
    pixels = rng.uniform(-1, 1, (1, 1, 3, dims.image_size, dims.image_size)).astype(np.float32)
    inputs = understanding_inputs(tok, ids, TEXT_PROMPT, dims.num_image_tokens)
    with step(f"end to end: greedy text, {text_steps} tokens (onnxruntime vs transformers.generate)"):
        ours = generate_text(ort_graphs, dims, inputs, text_steps, pixel_values=pixels)
        ref = transformers_greedy(model, inputs, pixels, text_steps)
    steps = min(image_steps or dims.num_image_tokens, dims.num_image_tokens)
    draws = uniforms(seed, steps).reshape(1, steps)
    prompt = generation_prompt(tok, ids, IMAGE_PROMPT)
    with step(f"end to end: CFG image, {steps} tokens (onnxruntime vs PyTorch, teacher-forced)"):
        image = image_end_to_end(ort_graphs, TorchGraphs(model, specs), dims, ids, prompt, draws)
    return EndToEnd(len(ref), ours == ref, first_divergence(ours, ref),
                    image.__dict__ | {"ok": image.ok, "summary": image.summary()})


def export_bundle(source: str, out: Path, seed: int = 0, allow_mismatch: bool = False, text_steps: int = 32,
                  image_steps: int | None = None, fused: bool = True, validate: bool = True,
                  stream: bool = False, dtypes: list | None = None, quantizers=None,
                  fp32_graphs: bool = False) -> Path:
    """fused: also write the WebGPU decoder language_model_gqa (GroupQueryAttention, KV cache bound in place).
    validate=False skips the per-graph checks against PyTorch and the end-to-end runs (for benchmark bundles of
    random presets; the fused decoder's check against language_model.onnx still runs); the manifest says so.
    Streamed (export.stream): `quantizers(dtypes)` (the CLI's quantize.stream.stream_quantizers) quantize the
    language model and the fused decoder while streaming, at `dtypes` (default STREAM_DEFAULT_DTYPES); the fp32
    language model is written only with fp32_graphs or without quantizers. A whole-model export ignores dtypes
    (the CLI quantizes its bundle after)."""
    out = Path(out)
    check_output_dir(out)
    wanted = tuple(dtypes or STREAM_DEFAULT_DTYPES) if quantizers else ()
    if choose_stream(source, stream, wanted, fused):
        quants = tuple(quantizers(wanted)) if quantizers else ()
        return export_streamed(source, out, seed, allow_mismatch, quants=quants, fp32_graphs=fp32_graphs,
                               fused=fused, text_steps=text_steps, image_steps=image_steps)
    t0 = time.perf_counter()
    src = load_source(source, seed)
    log.info("✓ loaded %s (%.1f s)", source, time.perf_counter() - t0)
    try:
        return _export(src, Path(out), seed, allow_mismatch, text_steps, image_steps, fused, validate)
    finally:
        if src.description["kind"] == "preset":
            shutil.rmtree(src.tokenizer_dir, ignore_errors=True)


def _export_traced(spec, model, tmp: Path, report: Report, label: str, validate: bool = True) -> dict:
    """torch.onnx export of a GraphSpec, validated against its PyTorch wrapper unless validate=False; its
    manifest entry (file digests are filled in from the bundle's file table)."""
    module = spec.wrapper(model).eval()
    with step(f"{label} export {spec.name}"):
        written = export_graph(spec, module, tmp / "onnx")
    if validate:
        with step(f"{label} validate {spec.name} against PyTorch"):
            check_graph(spec, module, written[0], report)
    return {"graph": spec.name, "dtype": "fp32", "files": {p.relative_to(tmp).as_posix(): None for p in written},
            "opset": OPSET, "inputs": _tensor_meta(spec.inputs), "outputs": _tensor_meta(spec.outputs),
            "max_abs_diff_vs_pytorch": report.graph_max_diff(spec.name) if validate else None,
            "tolerance": spec.tolerance}


def _export_built(spec, model, tmp: Path, report: Report, label: str, tokenizer_dir: Path, config: dict) -> dict:
    """A BuiltSpec's graph, validated against the ONNX graph it replaces (limit relative to the reference's
    magnitude, as for the other graphs); its manifest entry."""
    with step(f"{label} build {spec.name}"):
        entry = spec.build(model, tmp / "onnx", tokenizer_dir)
    with step(f"{label} validate {spec.name} against {spec.replaces}.onnx ({spec.tensor}, {spec.calls})"):
        check = spec.compare(tmp / "onnx" / f"{spec.name}.onnx", tmp / "onnx" / f"{spec.replaces}.onnx", config)
    for case, c in check.items():
        report.checks.append(Check(spec.name, spec.tensor, f"{case},{spec.calls}", c["max_abs_diff"],
                                   spec.tolerance * max(1.0, c["reference_abs_max"])))
    return {**entry, "replaces": spec.replaces, f"check_vs_{spec.replaces}": check}


def _with_digests(entry: dict, files: dict) -> dict:
    digests = {rel: files[rel] for rel in entry["files"]}
    return {**entry, "files": digests, "bytes": sum(f["bytes"] for f in digests.values())}


def _export(src, out: Path, seed, allow_mismatch, text_steps, image_steps, fused, validate) -> Path:
    model = src.model
    tok = Tokenizer.from_file(str(src.tokenizer_dir / "tokenizer.json"))
    ids = SpecialIds.from_tokenizer(tok)
    traced = graph_specs(model)
    specs = traced + (built_specs(traced) if fused else [])
    exporters = {GraphSpec: partial(_export_traced, validate=validate),
                 BuiltSpec: partial(_export_built, tokenizer_dir=src.tokenizer_dir,
                                    config=runtime_config(model.config, ids))}
    report = Report()
    with atomic_dir(out) as tmp:
        (tmp / "onnx").mkdir()
        graphs = {}
        for k, spec in enumerate(specs, 1):
            graphs[spec.name] = exporters[type(spec)](spec, model, tmp, report, f"[{k}/{len(specs)}]")
            if not report.ok and not allow_mismatch:
                sys.stdout.write(report.table() + "\n")
                raise MismatchError(f"{spec.name} differs from its reference beyond tolerance (see the table); "
                                    "nothing was written (--allow-mismatch keeps the bundle anyway)")
        for name in TOKENIZER_FILES:
            if (src.tokenizer_dir / name).exists():
                shutil.copyfile(src.tokenizer_dir / name, tmp / name)
        set_chat_templates(tmp / "tokenizer_config.json")  # named, as transformers.js's Janus processor reads them
        external = {s.name: len(graphs[s.name]["files"]) > 1 for s in traced}
        write_json(tmp / "config.json", config_json(model.config, ids, external))
        tokens = model.config.vision_config.num_image_tokens
        write_json(tmp / "generation_config.json", generation_config_json(ids, tokens))
        write_json(tmp / "preprocessor_config.json", preprocessor_config_json(model.config.vision_config.image_size))
        write_json(tmp / "processor_config.json", processor_config_json(tokens))
        e2e = end_to_end(model, traced, tmp, tok, ids, seed, text_steps, image_steps) if validate else None
        sys.stdout.write(report.table() + "\n" + (e2e.summary() if e2e else "end to end: not run (--no-validate)")
                         + "\n")
        if not (report.ok and (e2e is None or e2e.ok)) and not allow_mismatch:
            raise MismatchError("the exported graphs differ from PyTorch beyond tolerance (see the table); "
                                "nothing was written (--allow-mismatch keeps the bundle anyway)")
        files = file_table(tmp, known={rel: d for g in graphs.values() for rel, d in g["files"].items() if d})
        graphs = {name: _with_digests(entry, files) for name, entry in graphs.items()}
        validation = ({"graphs_ok": report.ok, "end_to_end": e2e.__dict__ | {"ok": e2e.ok}} if e2e else
                      {"skipped": "per-graph checks and end-to-end runs (--no-validate)", "built_checked": report.ok})
        manifests.write(tmp, manifests.new(src.description, tool_versions(), graphs, files, validation))
    log.info("bundle written to %s", out)
    return out
