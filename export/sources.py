"""The weights an export reads, chosen by export.memory.plan: the whole fp32 model in memory (`WholeSource`), or
streamed from the checkpoint's bf16 weights one graph or decoder layer at a time (export.stream's
`StreamedSource`). The driver (export.driver) sees one interface:

    model          the JanusForConditionalGeneration the fp32 graphs are exported from: real weights (whole), or on
                   the meta device, its weights made from `store` while a graph needs them (streamed)
    meta           the model on the meta device, its weights in `store`: the language model's quantized variants
                   and the fused decoder's are traced over it and written with their weights streamed (both sources)
    store          .get(transformers name) -> tensor
    buffers        the real values of the non-persistent buffers (name -> tensor), for traces over `meta`
    holds_model    whether `model` holds every fp32 weight (the fp32 end-to-end run then needs nothing more, and the
                   fp32 fused decoder is built from it)
    config, description, tokenizer_dir
                   the JanusConfig, the manifest's `source`, a folder with tokenizer.json
    export_graph(spec, onnx_dir, report, where, validate) -> [written files]
                   one fp32 graph exported and, with `validate`, checked against PyTorch
    close()        removes what the source made (a preset's tokenizer folder)
"""

import shutil
from contextlib import contextmanager
from pathlib import Path

from janusweb.export.checkpoint import load_source
from janusweb.export.memory import meta_model
from janusweb.export.onnx_export import export_graph
from janusweb.export.validate import Report, check_graph
from janusweb.export.weights import real_buffers
from janusweb.log import step


def export_checked(spec, module, onnx_dir: Path, report: Report, where: str, validate: bool) -> list:
    """torch.onnx's export of one graph's wrapper module and, with `validate`, its check against PyTorch."""
    with step(f"{where}: export"):
        files = export_graph(spec, module, onnx_dir)
    if validate:
        with step(f"{where}: validate against PyTorch"):
            check_graph(spec, module, files[0], report)
    return files


class ModelStore:
    """The weights of a model in memory, by name (a store over the whole model: no copy)."""

    def __init__(self, model):
        self.params = dict(model.named_parameters(remove_duplicate=False))

    def get(self, name: str):
        return self.params[name].detach()


class WholeSource:
    holds_model = True

    def __init__(self, source: str, seed: int):
        loaded = load_source(source, seed)
        self.model, self.tokenizer_dir, self.description = loaded.model, loaded.tokenizer_dir, loaded.description
        self.config = self.model.config
        self.store = ModelStore(self.model)
        self.meta = meta_model(self.config)
        self.buffers = real_buffers(self.meta)

    def export_graph(self, spec, onnx_dir: Path, report: Report, where: str, validate: bool) -> list:
        return export_checked(spec, spec.wrapper(self.model).eval(), onnx_dir, report, where, validate)

    def close(self) -> None:
        if self.description["kind"] == "preset":
            shutil.rmtree(self.tokenizer_dir, ignore_errors=True)


@contextmanager
def open_source(source: str, seed: int, streamed: bool):
    """The source's weights, whole or streamed (export.memory.plan's choice), closed after the block."""
    from janusweb.export.stream import StreamedSource  # it imports this module

    src = StreamedSource(source, seed) if streamed else WholeSource(source, seed)
    try:
        yield src
    finally:
        src.close()
