"""`janusweb export --stream` (chosen by itself when the whole fp32 model does not fit): a bundle written
graph by graph from bf16 weights, never holding the fp32 model.

The model is built on the meta device. Each graph but the language model gets fp32 copies of the weights it
reads (found by a meta forward), is exported and checked against PyTorch as in the whole-model export, and
gives them back. The language model is traced over meta weights and written with its weights streamed
(export.layerwise), then checked one block of decoder layers at a time. The quantized variants and the fused
decoder language_model_gqa are written while streaming (export.variants); the end-to-end run of each quantized
language model holds the whole model or one decoder layer at a time (export.end_to_end).
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
from janusweb.export import bundle, checkpoint, deepseek, end_to_end, presets, tokenizer
from janusweb.export.layerwise import check_language_model, export_language_model
from janusweb.export.limits import buffer_limits
from janusweb.export.memory import LANGUAGE_MODEL, graph_parameters, meta_model
from janusweb.export.onnx_export import OPSET, export_graph
from janusweb.export.specs import graph_specs
from janusweb.export.variants import fused_variant, language_model_variant
from janusweb.fused import STEM
from janusweb.export.validate import Report, check_graph
from janusweb.export.weights import BuffersOnMeta, PresetStore, SafetensorsStore, materialized
from janusweb.log import log, step
from janusweb.prompts import SpecialIds

NOT_WRITTEN = ("not written: the streamed export writes the language model at its quantized dtypes only "
               "(--fp32-graphs writes it too: about {gb:.1f} GB)")
E2E_SKIPPED = ("not asked (--text-steps 0) or no quantized dtype; every graph was checked against PyTorch, the "
               "language model one decoder layer at a time")


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


def weight_store(model, description: dict, folder: Path | None, seed: int):
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


def real_buffers(model) -> dict:
    """The non-persistent buffers (rotary frequencies, position ids) computed on the CPU: name -> tensor."""
    for module in model.modules():
        metas = [n for n in module._non_persistent_buffers_set if module._buffers.get(n) is not None]
        if metas:
            for name in metas:
                module._buffers[name] = torch.empty_like(module._buffers[name], device="cpu")
            model._init_weights(module)
    return {name: b for name, b in model.named_buffers() if not b.is_meta}


def export_streamed(source: str, out: Path, seed: int = 0, allow_mismatch: bool = False, block: int = 1,
                    quants: tuple = (), fp32_graphs: bool = True, fused: bool = True, text_steps: int = 0,
                    image_steps: int | None = None) -> Path:
    """quants: quantize.stream's StreamQuantizers (from the CLI's --dtype): the language model and, with `fused`,
    language_model_gqa are written at those dtypes while streaming (export.variants), the other graphs in fp32
    and quantized from their files; the fp32 language model is written only with `fp32_graphs` (or no quants).
    text_steps > 0: the end-to-end run of each quantized language model (export.end_to_end: the whole model, or its
    decoder layers made on demand and the run shortened, as memory allows); otherwise none, and the manifest says
    why."""
    from janusweb.export.driver import MismatchError, tool_versions  # the driver imports this module

    out = Path(out)
    bundle.check_output_dir(out)
    config, description, folder = source_config(source)
    config._attn_implementation = "eager"
    model = meta_model(config)
    store = weight_store(model, description, folder, seed)
    buffers = real_buffers(model)
    report, specs = Report(), graph_specs(model)
    written, variants, packed, e2e = {}, {q.name: {} for q in quants}, {}, {}
    tok_dir = folder or Path(tempfile.mkdtemp(prefix="janusweb-tokenizer-"))
    fp32_lm = fp32_graphs or not quants

    def stop_on_mismatch(name):
        if not report.ok and not allow_mismatch:
            sys.stdout.write(report.table() + "\n")
            raise MismatchError(f"{name} differs from its reference beyond tolerance (see the table); "
                                "nothing was written (--allow-mismatch keeps the bundle anyway)")

    try:
        if folder is None:
            description["seed"] = seed
            tokenizer.write_tiny_tokenizer(tok_dir, presets.TINY_VOCAB)
        with atomic_dir(out) as tmp:
            onnx_dir = tmp / "onnx"
            onnx_dir.mkdir()
            for k, spec in enumerate(specs, 1):
                where = f"[{k}/{len(specs)}] {spec.name}"
                if spec.name != LANGUAGE_MODEL or fp32_lm:
                    written[spec.name] = _one_graph(spec, model, store, buffers, onnx_dir, report, where, block)
                    stop_on_mismatch(spec.name)
                for q in quants:
                    if spec.name == LANGUAGE_MODEL:
                        variants[q.name][spec.name], packed[q.name] = language_model_variant(
                            spec, model, store, buffers, onnx_dir, report, block, q, where)
                        stop_on_mismatch(f"{spec.name}{q.suffix}")
                    else:
                        with step(f"{where} {q.name}: quantize"):
                            variants[q.name][spec.name] = q.quantize_file(written[spec.name][0], onnx_dir,
                                                                          f"{spec.name}{q.suffix}")
            ids = SpecialIds.from_tokenizer(Tokenizer.from_file(str(tok_dir / "tokenizer.json")))
            for q in quants if fused else ():
                lm_tolerance = next(s.tolerance for s in specs if s.name == LANGUAGE_MODEL)
                variants[q.name][STEM] = fused_variant(model, store, onnx_dir, tok_dir, q,
                                                       bundle.runtime_config(model.config, ids), report,
                                                       lm_tolerance, f"[{STEM}]")
                stop_on_mismatch(f"{STEM}{q.suffix}")
            external = {s.name: len(written[s.name]) > 1 for s in specs if s.name in written}
            _write_configs(tmp, model.config, tok_dir, external)
            skipped = E2E_SKIPPED
            for q in quants if text_steps > 0 else ():
                mode, skipped = end_to_end.choose(config, model, tmp, q)
                if mode:
                    e2e[q.name] = end_to_end.run(model, store, specs, tmp, tok_dir, seed, q, packed[q.name],
                                                 text_steps, image_steps, mode)
            summary = "\n".join(f"{q}: {r.summary()}" for q, (r, _) in e2e.items()) or f"end to end: skipped ({skipped})"
            sys.stdout.write(report.table() + "\n" + summary + "\n")
            if not all(r.ok for r, _ in e2e.values()) and not allow_mismatch:
                raise MismatchError("the end-to-end run differs from PyTorch (see above); nothing was written "
                                    "(--allow-mismatch keeps the bundle anyway)")
            validation = {"graphs_ok": report.ok, "end_to_end": (
                {q: entry for q, (_, entry) in e2e.items()} if e2e else {"ok": None, "skipped": skipped})}
            _write_manifest(tmp, specs, written, variants, quants, report, description, tool_versions(), model,
                            validation)
    finally:
        if folder is None:
            shutil.rmtree(tok_dir, ignore_errors=True)
    log.info("bundle written to %s", out)
    return out


def _one_graph(spec, model, store, buffers, onnx_dir: Path, report: Report, where: str, block: int) -> list:
    if spec.name == LANGUAGE_MODEL:
        with step(f"{where}: export, weights streamed"), BuffersOnMeta(model):
            files = export_language_model(spec, model, store, onnx_dir, buffers)[0]
        with step(f"{where}: validate against PyTorch, {block} decoder layer(s) at a time"):
            check_language_model(spec, model, store, files[0], report, block)
        return files
    module = spec.wrapper(model).eval()
    with BuffersOnMeta(model):
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


def _write_manifest(tmp: Path, specs, written: dict, variants: dict, quants, report: Report, description: dict,
                    tools: dict, model, validation: dict) -> None:
    files = manifests.file_table(tmp)
    graphs = {}
    lm_fp32 = 4 * sum(p.numel() for p in model.model.language_model.parameters()) - \
        4 * model.model.language_model.embed_tokens.weight.numel()
    for spec in specs:
        io = {"opset": OPSET, "inputs": [{"name": t.name, "dims": list(t.dims), "dtype": t.dtype} for t in spec.inputs],
              "outputs": [{"name": t.name, "dims": list(t.dims), "dtype": t.dtype} for t in spec.outputs],
              "tolerance": spec.tolerance}
        if spec.name not in written:
            graphs[spec.name] = {"graph": spec.name, "dtype": "fp32", **io, "fp32": NOT_WRITTEN.format(
                gb=lm_fp32 / 1e9)}
            continue
        own = {p.relative_to(tmp).as_posix(): None for p in written[spec.name]}
        own = {rel: files[rel] for rel in own}
        graphs[spec.name] = {"graph": spec.name, "dtype": "fp32", "files": own,
                             "bytes": sum(f["bytes"] for f in own.values()), **io,
                             "max_abs_diff_vs_pytorch": report.graph_max_diff(spec.name)}
    if any(STEM in v for v in variants.values()):
        graphs[STEM] = {"graph": STEM, "dtype": "fp32", "replaces": LANGUAGE_MODEL,
                        "fp32": f"not written: the streamed export builds {STEM} at its quantized dtypes only"}
    manifest = manifests.new(description, tools, graphs, files, validation)
    config = manifests.read_json(tmp / "config.json", "config.json")
    for q in quants:
        config = q.record(tmp, manifest, config, variants[q.name])
    manifests.write_json_atomic(tmp / "config.json", config)
    manifests.add_files(manifest, tmp, ["config.json"])
    stems = [p.stem for p in sorted((tmp / "onnx").glob("*.onnx"))]
    manifest["buffers"] = buffer_limits(tmp / "onnx", stems)
    manifest["export"] = {"streamed": True, "fp32_language_model": LANGUAGE_MODEL in written,
                          "quantized_while_streaming": [q.name for q in quants],
                          "fused": {q.name: f"onnx/{STEM}{q.suffix}.onnx" for q in quants if STEM in variants[q.name]}
                          or "not written (no --dtype, or --no-fused)"}
    manifests.write(tmp, manifest)


def choose_stream(source: str, stream: bool, dtypes: tuple = (), fused: bool = True) -> bool:
    """Whether to stream (see export.memory.plan; dtypes, fused: the streamed export's variants); UserError
    before any weight is read when nothing fits."""
    from janusweb.dtypes import dtype
    from janusweb.export.memory import plan

    streamed = plan(source, source_config(source)[0], stream, bits=[dtype(d).bits for d in dtypes], fused=fused)
    if streamed and not stream:
        log.info("the whole fp32 model of %s does not fit in memory: streaming it (as --stream)", source)
    return streamed
