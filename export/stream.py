"""`janusweb export --stream` (chosen by itself when the whole fp32 model does not fit): a bundle written
graph by graph from bf16 weights, never holding the fp32 model.

The model is built on the meta device. Each graph but the language model gets fp32 copies of the weights it
reads (found by a meta forward), is exported and checked against PyTorch as in the whole-model export, and
gives them back. The language model is traced over meta weights and written with its weights streamed
(export.layerwise), then checked one block of decoder layers at a time. Not done here: the end-to-end run
(it needs the whole model; the manifest says so) and the fused decoder language_model_gqa (onnxruntime-genai's
builder holds every weight of the model it writes).
"""

import shutil
import sys
import tempfile
from pathlib import Path

import torch
from tokenizers import Tokenizer
from transformers import JanusConfig

from janusweb import manifest as manifests
from janusweb.atomic import atomic_dir
from janusweb.errors import UserError
from janusweb.export import bundle, checkpoint, deepseek, presets, tokenizer
from janusweb.export.layerwise import check_language_model, export_language_model
from janusweb.export.limits import buffer_limits
from janusweb.export.memory import LANGUAGE_MODEL, graph_parameters, meta_model
from janusweb.export.onnx_export import OPSET, export_graph
from janusweb.export.specs import graph_specs
from janusweb.export.validate import Report, check_graph
from janusweb.export.weights import PresetStore, SafetensorsStore, materialized
from janusweb.log import log, step
from janusweb.prompts import SpecialIds

E2E_SKIPPED = ("streamed export: the whole model is never held, so the end-to-end run is not made; every graph "
               "was checked against PyTorch, the language model one block of decoder layers at a time")


def source_config(source: str) -> tuple:
    """(JanusConfig, description, folder or None) of a preset or checkpoint, from its config and tokenizer files
    and the weight files' headers only."""
    if source in presets.SHAPES:
        ids = tokenizer.special_token_ids(tokenizer.build_tiny_tokenizer(presets.TINY_VOCAB))
        return presets.janus_config(presets.SHAPES[source], ids), {"kind": "preset", "name": source}, None
    folder = checkpoint._local_folder(source)
    raw = checkpoint.read_json(folder / "config.json")
    if raw.get("model_type") == "janus":
        config = checkpoint._janus_config(folder, lambda: JanusConfig.from_pretrained(folder, local_files_only=True))
        return config, {"kind": "transformers", "path": str(folder)}, folder
    if raw.get("model_type") == "multi_modality":
        ids = checkpoint.read_token_ids(folder)
        shapes = checkpoint.tensor_shapes(checkpoint.weight_files(folder, other_names=True))
        has_head = "language_model.lm_head.weight" in shapes
        config = checkpoint._janus_config(folder, lambda: deepseek.janus_config(raw, ids, has_head))
        return config, {"kind": "deepseek", "path": str(folder)}, folder
    raise UserError(f"{folder / 'config.json'}: model_type {raw.get('model_type')!r} is not a Janus checkpoint "
                    "(expected 'janus' or 'multi_modality')")


def _store(model, description: dict, folder: Path | None, seed: int):
    if folder is None:
        return PresetStore(model, seed)
    deepseek_layout = description["kind"] == "deepseek"
    files = checkpoint.weight_files(folder, other_names=deepseek_layout)
    if any(f.suffix != ".safetensors" for f in files):
        raise UserError(f"{folder}: a streamed export reads safetensors weights; convert the .bin files first")
    shapes = checkpoint.tensor_shapes(files)
    if deepseek_layout:  # the conversion on meta tensors, as the whole-model loader checks it
        meta = ((key, torch.empty(shape, device="meta")) for key, shape in shapes.items())
        shapes = {key: tuple(t.shape) for key, t in deepseek.convert_state_dict(meta).items()}
    checkpoint.check_tensors(shapes, model, f"the weights in {folder}")
    store = SafetensorsStore(files, deepseek_layout)
    return store


def _real_buffers(model) -> dict:
    """The non-persistent buffers (rotary frequencies, position ids) computed on the CPU: name -> tensor."""
    for module in model.modules():
        metas = [n for n in module._non_persistent_buffers_set if module._buffers.get(n) is not None]
        if metas:
            for name in metas:
                module._buffers[name] = torch.empty_like(module._buffers[name], device="cpu")
            model._init_weights(module)
    return {name: b for name, b in model.named_buffers() if not b.is_meta}


class _BuffersOnMeta:
    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.saved = []
        for module in self.model.modules():
            for name, b in module._buffers.items():
                if b is not None and not b.is_meta:
                    self.saved.append((module, name, b))
                    module._buffers[name] = b.to("meta")

    def __exit__(self, *exc):
        for module, name, b in self.saved:
            module._buffers[name] = b


def export_streamed(source: str, out: Path, seed: int = 0, allow_mismatch: bool = False, block: int = 1) -> Path:
    from janusweb.export.driver import MismatchError, tool_versions  # the driver imports this module

    out = Path(out)
    bundle.check_output_dir(out)
    config, description, folder = source_config(source)
    config._attn_implementation = "eager"
    model = meta_model(config)
    store = _store(model, description, folder, seed)
    buffers = _real_buffers(model)
    report, specs, written = Report(), graph_specs(model), {}
    tok_dir = folder or Path(tempfile.mkdtemp(prefix="janusweb-tokenizer-"))
    try:
        if folder is None:
            description["seed"] = seed
            tokenizer.write_tiny_tokenizer(tok_dir, presets.TINY_VOCAB)
        with atomic_dir(out) as tmp:
            (tmp / "onnx").mkdir()
            for k, spec in enumerate(specs, 1):
                where = f"[{k}/{len(specs)}] {spec.name}"
                written[spec.name] = _one_graph(spec, model, store, buffers, tmp / "onnx", report, where, block)
                if not report.ok and not allow_mismatch:
                    sys.stdout.write(report.table() + "\n")
                    raise MismatchError(f"{spec.name} differs from PyTorch beyond tolerance (see the table); "
                                        "nothing was written (--allow-mismatch keeps the bundle anyway)")
            _write_configs(tmp, model.config, tok_dir, {s.name: len(written[s.name]) > 1 for s in specs})
            sys.stdout.write(report.table() + "\n" + f"end to end: skipped ({E2E_SKIPPED})\n")
            _write_manifest(tmp, specs, written, report, description, tool_versions())
    finally:
        if folder is None:
            shutil.rmtree(tok_dir, ignore_errors=True)
    log.info("bundle written to %s", out)
    return out


def _one_graph(spec, model, store, buffers, onnx_dir: Path, report: Report, where: str, block: int) -> list:
    if spec.name == LANGUAGE_MODEL:
        with step(f"{where}: export, weights streamed"), _BuffersOnMeta(model):
            files = export_language_model(spec, model, store, onnx_dir, buffers)
        with step(f"{where}: validate against PyTorch, {block} decoder layer(s) at a time"):
            check_language_model(spec, model, store, files[0], report, block)
        return files
    module = spec.wrapper(model).eval()
    with _BuffersOnMeta(model):
        ids = graph_parameters(spec, model)
    with materialized(model, store, ids):
        with step(f"{where}: export"):
            files = export_graph(spec, module, onnx_dir)
        with step(f"{where}: validate against PyTorch"):
            check_graph(spec, module, files[0], report)
    return files


def _write_configs(tmp: Path, cfg, tok_dir: Path, external: dict) -> None:
    for name in bundle.TOKENIZER_FILES:
        if (tok_dir / name).exists():
            shutil.copyfile(tok_dir / name, tmp / name)
    ids = SpecialIds.from_tokenizer(Tokenizer.from_file(str(tok_dir / "tokenizer.json")))
    tokens, size = cfg.vision_config.num_image_tokens, cfg.vision_config.image_size
    contents = {"config.json": bundle.config_json(cfg, ids, external),
                "generation_config.json": bundle.generation_config_json(ids, tokens),
                "preprocessor_config.json": bundle.preprocessor_config_json(size),
                "processor_config.json": bundle.processor_config_json(tokens)}
    for name, data in contents.items():
        manifests.write_json_atomic(tmp / name, data)


def _write_manifest(tmp: Path, specs, written: dict, report: Report, description: dict, tools: dict) -> None:
    files = manifests.file_table(tmp)
    graphs = {}
    for spec in specs:
        own = {p.relative_to(tmp).as_posix(): None for p in written[spec.name]}
        own = {rel: files[rel] for rel in own}
        graphs[spec.name] = {
            "graph": spec.name, "dtype": "fp32", "files": own, "bytes": sum(f["bytes"] for f in own.values()),
            "opset": OPSET, "inputs": [{"name": t.name, "dims": list(t.dims), "dtype": t.dtype} for t in spec.inputs],
            "outputs": [{"name": t.name, "dims": list(t.dims), "dtype": t.dtype} for t in spec.outputs],
            "max_abs_diff_vs_pytorch": report.graph_max_diff(spec.name), "tolerance": spec.tolerance}
    validation = {"graphs_ok": report.ok, "end_to_end": {"ok": None, "skipped": E2E_SKIPPED}}
    manifest = manifests.new(description, tools, graphs, files, validation)
    manifest["buffers"] = buffer_limits(tmp / "onnx", [spec.name for spec in specs])
    manifest["export"] = {"streamed": True, "fused": "not written: onnxruntime-genai's builder holds the whole model"}
    manifests.write(tmp, manifest)


def choose_stream(source: str, stream: bool) -> bool:
    """Whether to stream (see export.memory.plan); UserError before any weight is read when nothing fits."""
    from janusweb.export.memory import plan

    streamed = plan(source, source_config(source)[0], stream)
    if streamed and not stream:
        log.info("the whole fp32 model of %s does not fit in memory: streaming it (as --stream)", source)
    return streamed
