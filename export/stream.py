"""The streamed weight source (export.sources; chosen by export.memory.plan where the whole fp32 model does not
fit, or by --stream): bf16 weights read per graph, never holding the fp32 model.

The model is built on the meta device. Each graph but the language model gets fp32 copies of the weights it
reads (found by a meta forward), is exported and checked against PyTorch as from the whole model, and gives them
back. The language model is traced over meta weights and written with its weights streamed (export.layerwise),
then checked one decoder layer at a time.
"""

import shutil
from pathlib import Path

import torch

from janusweb.atomic import private_temp_dir
from janusweb.errors import UserError
from janusweb.export import checkpoint, deepseek, presets, tokenizer
from janusweb.export.layerwise import check_language_model, export_language_model
from janusweb.export.memory import LANGUAGE_MODEL, graph_parameters, meta_model
from janusweb.export.sources import export_checked
from janusweb.export.validate import Report
from janusweb.export.weights import BuffersOnMeta, PresetStore, SafetensorsStore, materialized, real_buffers
from janusweb.log import step

BLOCK = 1  # decoder layers checked at a time


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
    return SafetensorsStore(files, deepseek_layout)


class StreamedSource:
    holds_model = False

    def __init__(self, source: str, seed: int):
        self.config, self.description, folder = checkpoint.source_config(source)
        self.config._attn_implementation = "eager"
        self.model = self.meta = meta_model(self.config)
        self.store = weight_store(self.model, self.description, folder, seed)
        self.buffers = real_buffers(self.model)
        self.tokenizer_dir = folder
        if folder is None:
            self.description["seed"] = seed
            self.tokenizer_dir = private_temp_dir(checkpoint.TOKENIZER_PREFIX)
            tokenizer.write_tiny_tokenizer(self.tokenizer_dir, presets.TINY_VOCAB)

    def export_graph(self, spec, onnx_dir: Path, report: Report, where: str, validate: bool) -> list:
        model, store = self.model, self.store
        if spec.name == LANGUAGE_MODEL:
            with step(f"{where}: export, weights streamed"), BuffersOnMeta(model):
                files = export_language_model(spec, model, store, onnx_dir, self.buffers)[0]
            if validate:
                with step(f"{where}: validate against PyTorch, {BLOCK} decoder layer(s) at a time"):
                    check_language_model(spec, model, store, files[0], report, BLOCK)
            return files
        module = spec.wrapper(model).eval()
        with BuffersOnMeta(model):
            ids = graph_parameters(spec, model)
        with materialized(model, store, ids):
            return export_checked(spec, module, onnx_dir, report, where, validate)

    def close(self) -> None:
        if self.description["kind"] == "preset":
            shutil.rmtree(self.tokenizer_dir, ignore_errors=True)
