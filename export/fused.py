"""A fused variant of the `language_model` graph, built by onnxruntime-genai's model builder for the WebGPU EP.

The builder turns a Llama decoder into GroupQueryAttention (rotary embedding inside, packed QKV, KV cache
shared between past and present: a fixed-capacity buffer bound in place), SkipSimplifiedLayerNormalization
and, for int8/int4, MatMulNBits. Janus's language model is a transformers `LlamaModel`: the builder gets a
`LlamaForCausalLM` config folder plus the Janus weights themselves, in memory (no copy, no second load), with
embeddings and lm_head left out, so the graph maps inputs_embeds to the final-norm hidden states like
`language_model.onnx`, but with other inputs (see `janusweb.fused`).

Writes onnx/language_model_gqa{,_int8,_q4}.onnx + .onnx_data into a bundle; the manifest is left to the caller.
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
from janusweb.export.bundle import file_digest
from janusweb.fused import ATTENTION_MASK_KEY, fused_file, hidden_state_diff
from janusweb.log import log, step

# The builder's quantization pass logs every node at INFO through its own handler.
logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)

PRECISIONS = ("fp32", "int8", "int4")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
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


def builder_options(stem: str, precision: str, block_size: int, graph_capture: bool) -> list:
    options = [f"filename={stem}.onnx", "exclude_embeds=true", "exclude_lm_head=true", "use_webgpu_fp32=true",
               f"enable_webgpu_graph={str(graph_capture).lower()}", "hf_token=false"]
    if precision != "fp32":
        options += [f"block_size={block_size}", "is_symmetric=true", "accuracy_level=0"]
    return options


def run_builder(llama: LlamaForCausalLM, folder: Path, out: Path, precision: str, options: list) -> None:
    """onnxruntime-genai's `create_model` for webgpu, with the weights taken from `llama` instead of a reload."""
    from onnxruntime_genai.models import builder  # puts the builder's own folder on sys.path: import it late

    class InMemoryLlama(builder.LlamaModel):
        def load_weights(self, input_path):
            return llama

    captured = io.StringIO()  # the builder prints progress; keep it for the debug log
    original = builder.LlamaModel
    builder.LlamaModel = InMemoryLlama
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            cache = out / "cache"
            extra = builder.parse_extra_options(None, str(folder), str(out), precision, "webgpu", str(cache), options)
            builder.create_model(None, str(folder), str(out), precision, "webgpu", str(cache), **extra)
    finally:
        builder.LlamaModel = original
        log.debug("onnxruntime-genai builder output:\n%s", captured.getvalue())


def _rename_external_data(path: Path, old: str, new: str) -> None:
    """Point the graph's external tensors at `new` (the bundle's <stem>.onnx_data name) and rename the file."""
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location" and entry.value == old:
                entry.value = new
    onnx.save_model(model, str(path))
    os.replace(path.parent / old, path.parent / new)


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


def export_fused_language_model(model: JanusForConditionalGeneration, bundle_dir: Path, precision: str = "fp32",
                                block_size: int = 32, graph_capture: bool = True) -> dict:
    """Write onnx/language_model_gqa{suffix}.onnx (+ .onnx_data) into the bundle; return its manifest entry.

    precision: fp32, int8 or int4 (MatMulNBits, symmetric, `block_size` along K; float32 inputs and outputs in
    every case). graph_capture: the attention-mask subgraph the builder emits for WebGPU graph capture (no Shape
    op: the total length is the largest row sum of the mask, so the mask may span the whole KV capacity).
    """
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    if block_size < 16 or block_size & (block_size - 1):
        raise UserError(f"block_size must be a power of two >= 16 (MatMulNBits), got {block_size}")
    bundle = Path(bundle_dir)
    if not (bundle / "onnx").is_dir() or not (bundle / "tokenizer.json").is_file():
        raise UserError(f"{bundle} is not a janusweb bundle (no onnx/ or tokenizer.json)")
    stem = Path(fused_file(precision)).stem
    options = builder_options(stem, precision, block_size, graph_capture)
    staging = Path(tempfile.mkdtemp(prefix=".fused-", dir=bundle))
    try:
        folder = write_llama_folder(model, bundle, staging / "llama")
        with step(f"onnxruntime-genai builder: {stem} ({precision}, webgpu)"):
            run_builder(llama_view(model), folder, staging / "out", precision, options)
        out = staging / "out"
        _rename_external_data(out / f"{stem}.onnx", f"{stem}.onnx.data", f"{stem}.onnx_data")
        genai = json.loads((out / "genai_config.json").read_text())
        summary = graph_summary(out / f"{stem}.onnx")
        for name in (f"{stem}.onnx_data", f"{stem}.onnx"):  # data first: the .onnx lands complete
            os.replace(out / name, bundle / "onnx" / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    files = {f"onnx/{name}": file_digest(bundle / "onnx" / name) for name in (f"{stem}.onnx", f"{stem}.onnx_data")}
    decoder = genai["model"]["decoder"]
    return {
        "graph": "language_model", "variant": "gqa", "dtype": "q4" if precision == "int4" else precision,
        "files": files, "bytes": sum(f["bytes"] for f in files.values()), **summary,
        "attention_mask": ATTENTION_MASK_KEY[graph_capture],
        "kv_cache": "past_key_values.i.* and present.i.* are one buffer [batch, kv_heads, capacity, head_dim] "
                    "bound in place (GroupQueryAttention past_present_share_buffer)",
        "position_ids": "none: GroupQueryAttention rotates by position seqlens_k - sequence_length + 1 + s",
        "max_length": genai["search"]["max_length"],
        "max_abs_diff_vs_fp32": hidden_state_diff(bundle, precision),
        "provider_options": decoder["session_options"]["provider_options"],
        "builder": {"package": "onnxruntime-genai", "version": onnxruntime_genai.__version__,
                    "execution_provider": "webgpu", "precision": precision, "extra_options": options},
    }
