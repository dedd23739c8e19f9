"""A fused variant of the `language_model` graph, built by onnxruntime-genai's model builder for the WebGPU EP.

The builder turns a Llama decoder into GroupQueryAttention (rotary embedding inside, packed QKV, KV cache
shared between past and present: a fixed-capacity buffer bound in place), SkipSimplifiedLayerNormalization
and, for int8/int4, MatMulNBits. Janus's language model is a transformers `LlamaModel`: the builder gets a
`LlamaForCausalLM` config folder plus the Janus weights themselves, in memory (no copy, no second load), with
embeddings and lm_head left out, so the graph maps inputs_embeds to the final-norm hidden states like
`language_model.onnx`, but with other inputs (see `janusweb.fused`).

Writes onnx/language_model_gqa.onnx + .onnx_data (fp32) into a bundle being exported and returns its manifest
entry (its spec in export/specs.py: the export driver validates it against language_model.onnx); `janusweb quantize` makes its int8/q4 variants with the same MatMulNBits quantizer as the other graphs.
"""

import contextlib
import io
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import onnx
import onnxruntime_genai
import torch
from transformers import JanusForConditionalGeneration, LlamaConfig, LlamaForCausalLM

from janusweb.errors import UserError
from janusweb.export.bundle import TOKENIZER_FILES
from janusweb.fused import ATTENTION_MASK_KEY, STEM
from janusweb.log import log, step
from janusweb.manifest import file_digest

# The builder's quantization pass logs every node at INFO through its own handler.
logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)

FUSED_OPS = ("GroupQueryAttention", "SkipSimplifiedLayerNormalization", "SimplifiedLayerNormalization",
             "RotaryEmbedding", "MatMulNBits")


def llama_config(model: JanusForConditionalGeneration) -> LlamaConfig:
    config = LlamaConfig(**model.config.text_config.to_dict())
    config.architectures = ["LlamaForCausalLM"]
    return config


def llama_view(model: JanusForConditionalGeneration) -> LlamaForCausalLM:
    """A LlamaForCausalLM whose modules are the Janus language model and lm_head themselves (shared tensors)."""
    with torch.device("meta"):
        llama = LlamaForCausalLM(llama_config(model))
    llama.model = model.model.language_model
    llama.lm_head = model.lm_head
    return llama.eval()


def write_llama_folder(model: JanusForConditionalGeneration, tokenizer_dir: Path, folder: Path) -> Path:
    """config.json of a LlamaForCausalLM plus the tokenizer files: what the builder reads from disk."""
    llama_config(model).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():
            shutil.copyfile(tokenizer_dir / name, folder / name)
    return folder


def builder_options(graph_capture: bool, stem: str = STEM) -> list:
    return [f"filename={stem}.onnx", "exclude_embeds=true", "exclude_lm_head=true", "use_webgpu_fp32=true",
            f"enable_webgpu_graph={str(graph_capture).lower()}", "hf_token=false"]


def run_builder(llama: LlamaForCausalLM, folder: Path, out: Path, options: list, around_layer=None,
                before_save=None) -> None:
    """onnxruntime-genai's `create_model` for webgpu, with the weights taken from `llama` instead of a reload.
    around_layer: a context manager (graph, layer module) entered around the builder's work on each decoder layer
    (the streamed export gives the layer its weights there and settles what the builder made of them);
    before_save(graph): called on the complete graph before the builder writes it."""
    from onnxruntime_genai.models import builder  # puts the builder's own folder on sys.path: import it late

    class InMemoryLlama(builder.LlamaModel):
        def load_weights(self, input_path):
            return llama

        def make_layer(self, layer_id, layer):
            if around_layer is None:
                return super().make_layer(layer_id, layer)
            with around_layer(self.model, layer):
                return super().make_layer(layer_id, layer)

        def save_model(self, out_dir):
            if before_save is not None:
                before_save(self.model)
            return super().save_model(out_dir)

    captured = io.StringIO()  # the builder prints progress; keep it for the debug log
    original = builder.LlamaModel
    builder.LlamaModel = InMemoryLlama
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            cache = out / "cache"
            extra = builder.parse_extra_options(None, str(folder), str(out), "fp32", "webgpu", str(cache), options)
            builder.create_model(None, str(folder), str(out), "fp32", "webgpu", str(cache), **extra)
    finally:
        builder.LlamaModel = original
        log.debug("onnxruntime-genai builder output:\n%s", captured.getvalue())


def finish_graph(path: Path, old_data: str, new_data: str) -> None:
    """Two edits to the builder's graph, saved in place:
    - its external tensors point at `new_data` (the bundle's <stem>.onnx_data name), and the file is renamed;
    - attention_mask becomes int32, dropping the graph's int64 -> int32 Cast. onnxruntime-web's WebGPU EP has no
      int64 Cast outside graph-capture sessions, so that Cast would fall back to the CPU EP implicitly; without
      it the mask arithmetic (ReduceSum, Sub, ReduceMax) is the page's to place on the CPU by name, and the
      session can forbid any other CPU fallback."""
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location" and entry.value == old_data:
                entry.value = new_data
    mask = next(i for i in model.graph.input if i.name == "attention_mask")
    casts = [n for n in model.graph.node if n.op_type == "Cast" and list(n.input) == ["attention_mask"]]
    if len(casts) != 1 or onnx.helper.get_attribute_value(casts[0].attribute[0]) != onnx.TensorProto.INT32:
        raise RuntimeError("the builder's attention-mask subgraph changed: expected one Cast of attention_mask "
                           "to int32")
    cast = casts[0]
    for node in model.graph.node:
        node.input[:] = ["attention_mask" if i == cast.output[0] else i for i in node.input]
    model.graph.node.remove(cast)
    mask.type.tensor_type.elem_type = onnx.TensorProto.INT32
    onnx.save_model(model, str(path))
    os.replace(path.parent / old_data, path.parent / new_data)


def _io_meta(values) -> list:
    return [{"name": v.name, "dims": [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim],
             "dtype": onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name} for v in values]


def graph_summary(path: Path) -> dict:
    model = onnx.load(str(path), load_external_data=False)
    ops = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return {"inputs": _io_meta(model.graph.input), "outputs": _io_meta(model.graph.output),
            "ops": dict(sorted(ops.items())), "fused_ops": [op for op in FUSED_OPS if op in ops]}


def export_fused_language_model(model: JanusForConditionalGeneration, onnx_dir: Path, tokenizer_dir: Path,
                                graph_capture: bool = True, stem: str = STEM, around_layer=None,
                                before_save=None) -> dict:
    """Write <stem>.onnx (+ .onnx_data; stem: language_model_gqa) into `onnx_dir` (a bundle's onnx/ folder, staged
    in the bundle folder) and return its manifest entry.

    graph_capture: the attention-mask subgraph the builder emits for WebGPU graph capture (no Shape op: the total
    length is the largest row sum of the mask, so the mask may span the whole KV capacity).
    around_layer, before_save: see run_builder (the streamed export's quantized variants: export.variants).
    """
    onnx_dir = Path(onnx_dir)
    if not (Path(tokenizer_dir) / "tokenizer.json").is_file():
        raise UserError(f"{tokenizer_dir} has no tokenizer.json (the builder reads it)")
    options = builder_options(graph_capture, stem)
    staging = Path(tempfile.mkdtemp(prefix=".fused-", dir=onnx_dir.parent))
    try:
        folder = write_llama_folder(model, Path(tokenizer_dir), staging / "llama")
        with step(f"onnxruntime-genai builder: {stem} (fp32 arithmetic, webgpu)"):
            run_builder(llama_view(model), folder, staging / "out", options, around_layer, before_save)
        out = staging / "out"
        finish_graph(out / f"{stem}.onnx", f"{stem}.onnx.data", f"{stem}.onnx_data")
        genai = json.loads((out / "genai_config.json").read_text())
        summary = graph_summary(out / f"{stem}.onnx")
        for name in (f"{stem}.onnx_data", f"{stem}.onnx"):  # data first: the .onnx lands complete
            os.replace(out / name, onnx_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    files = {f"onnx/{name}": file_digest(onnx_dir / name) for name in (f"{stem}.onnx", f"{stem}.onnx_data")}
    decoder = genai["model"]["decoder"]
    return {
        "graph": STEM, "dtype": "fp32", "files": files,
        "bytes": sum(f["bytes"] for f in files.values()), **summary,
        "attention_mask": ATTENTION_MASK_KEY[graph_capture],
        "kv_cache": "past_key_values.i.* and present.i.* are one buffer [batch, kv_heads, capacity, head_dim] "
                    "bound in place (GroupQueryAttention past_present_share_buffer)",
        "position_ids": "none: GroupQueryAttention rotates by position seqlens_k - sequence_length + 1 + s",
        "provider_options": decoder["session_options"]["provider_options"],
        "builder": {"package": "onnxruntime-genai", "version": onnxruntime_genai.__version__,
                    "execution_provider": "webgpu", "precision": "fp32", "extra_options": options},
    }
