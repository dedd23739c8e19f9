"""`janusweb export`: load a checkpoint, export every graph, validate each against PyTorch and the whole
pipeline end to end, and write the bundle atomically."""

import shutil
import sys
import time
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
from janusweb.export.bundle import (TOKENIZER_FILES, check_output_dir, config_json, file_table,
                                    generation_config_json, preprocessor_config_json, processor_config_json,
                                    write_json)
from janusweb.export.checkpoint import load_source
from janusweb.export.fused import export_fused_language_model
from janusweb.export.limits import buffer_limits
from janusweb.export.onnx_export import OPSET, export_graph
from janusweb.export.specs import graph_specs
from janusweb.export.stream import choose_stream, export_streamed
from janusweb.export.validate import (Check, EndToEnd, Report, check_graph, first_divergence,
                                      transformers_greedy)
from janusweb.fused import STEM as FUSED
from janusweb.generate import ModelDims, generate_images, generate_text
from janusweb.graphs import OrtGraphs, TorchGraphs
from janusweb.log import log, step
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
               image_steps: int | None) -> EndToEnd:
    """Text after an image prompt (ORT vs transformers.generate) and CFG image generation (ORT vs PyTorch)."""
    ort_graphs = OrtGraphs(bundle)
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
    with step(f"end to end: CFG image, {steps} tokens (onnxruntime vs PyTorch)"):
        a = generate_images(ort_graphs, dims, ids, prompt, draws)
        b = generate_images(TorchGraphs(model, specs), dims, ids, prompt, draws)
    return EndToEnd(len(ref), ours == ref, first_divergence(ours, ref), steps,
                    bool(np.array_equal(a.tokens, b.tokens)), float(np.abs(a.images - b.images).max()),
                    first_divergence(a.tokens.ravel().tolist(), b.tokens.ravel().tolist()))


def export_bundle(source: str, out: Path, seed: int = 0, allow_mismatch: bool = False, text_steps: int = 32,
                  image_steps: int | None = None, fused: bool = True, stream: bool = False) -> Path:
    """fused: also write the WebGPU decoder language_model_gqa (GroupQueryAttention, KV cache bound in place).
    stream: export graph by graph from bf16 weights (export.stream); chosen anyway when the model does not fit."""
    out = Path(out)
    check_output_dir(out)
    if choose_stream(source, stream):
        return export_streamed(source, out, seed, allow_mismatch)
    t0 = time.perf_counter()
    src = load_source(source, seed)
    log.info("✓ loaded %s (%.1f s)", source, time.perf_counter() - t0)
    try:
        return _export(src, Path(out), seed, allow_mismatch, text_steps, image_steps, fused)
    finally:
        if src.description["kind"] == "preset":
            shutil.rmtree(src.tokenizer_dir, ignore_errors=True)


def fused_graph(model, bundle: Path, tolerance: float, report: Report) -> dict:
    """Write language_model_gqa into the bundle folder; its hidden states against language_model.onnx join the
    report (limit relative to the reference's magnitude, as for the other graphs)."""
    entry = export_fused_language_model(model, bundle)
    for case, c in entry["check_vs_language_model"].items():
        report.checks.append(Check(FUSED, "hidden_states", f"{case},prefill+4 steps", c["max_abs_diff"],
                                   tolerance * max(1.0, c["reference_abs_max"])))
    return entry


def _export(src, out: Path, seed, allow_mismatch, text_steps, image_steps, fused) -> Path:
    model = src.model
    tok = Tokenizer.from_file(str(src.tokenizer_dir / "tokenizer.json"))
    ids = SpecialIds.from_tokenizer(tok)
    specs = graph_specs(model)
    report = Report()
    with atomic_dir(out) as tmp:
        (tmp / "onnx").mkdir()
        written = {}
        for k, spec in enumerate(specs, 1):
            module = spec.wrapper(model).eval()
            with step(f"[{k}/{len(specs)}] export {spec.name}"):
                written[spec.name] = export_graph(spec, module, tmp / "onnx")
            with step(f"[{k}/{len(specs)}] validate {spec.name} against PyTorch"):
                check_graph(spec, module, written[spec.name][0], report)
            if not report.ok and not allow_mismatch:
                sys.stdout.write(report.table() + "\n")
                raise MismatchError(f"{spec.name} differs from PyTorch beyond tolerance (see the table); nothing "
                                    "was written (--allow-mismatch keeps the bundle anyway)")
        for name in TOKENIZER_FILES:
            if (src.tokenizer_dir / name).exists():
                shutil.copyfile(src.tokenizer_dir / name, tmp / name)
        external = {s.name: len(written[s.name]) > 1 for s in specs}
        write_json(tmp / "config.json", config_json(model.config, ids, external))
        tokens = model.config.vision_config.num_image_tokens
        write_json(tmp / "generation_config.json", generation_config_json(ids, tokens))
        write_json(tmp / "preprocessor_config.json", preprocessor_config_json(model.config.vision_config.image_size))
        write_json(tmp / "processor_config.json", processor_config_json(tokens))
        lm_tolerance = next(spec.tolerance for spec in specs if spec.name == "language_model")
        extra = {FUSED: fused_graph(model, tmp, lm_tolerance, report)} if fused else {}
        e2e = end_to_end(model, specs, tmp, tok, ids, seed, text_steps, image_steps)
        sys.stdout.write(report.table() + "\n" + e2e.summary() + "\n")
        if not (report.ok and e2e.ok) and not allow_mismatch:
            raise MismatchError("the exported graphs differ from PyTorch beyond tolerance (see the table); "
                                "nothing was written (--allow-mismatch keeps the bundle anyway)")
        files = file_table(tmp)
        graphs = {}
        for spec in specs:
            paths = [p.relative_to(tmp).as_posix() for p in written[spec.name]]
            graphs[spec.name] = {
                "graph": spec.name, "dtype": "fp32", "files": {p: files[p] for p in paths},
                "bytes": sum(files[p]["bytes"] for p in paths), "opset": OPSET,
                "inputs": _tensor_meta(spec.inputs), "outputs": _tensor_meta(spec.outputs),
                "max_abs_diff_vs_pytorch": report.graph_max_diff(spec.name), "tolerance": spec.tolerance,
            }
        graphs.update(extra)
        write_json(tmp / "manifest.json", {
            "format": "janusweb-bundle/1", "source": src.description, "tools": tool_versions(),
            "graphs": graphs, "files": files, "buffers": buffer_limits(tmp / "onnx", [s.name for s in specs]),
            "validation": {"graphs_ok": report.ok, "end_to_end": e2e.__dict__ | {"ok": e2e.ok}},
        })
    log.info("bundle written to %s", out)
    return out
