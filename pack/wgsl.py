"""Packer `wgsl` (see janusweb.pack): the decoder's weights for the page's own WGSL kernels (web/lib/engines/wgsl/), taken
from the fused decoder graph.

`janusweb wgsl-pack BUNDLE --dtype int8` (= `janusweb pack BUNDLE --engine wgsl --dtype int8`; q4 alike) reads
onnx/language_model_gqa_int8.onnx (or the fp32 or q4 graph) and writes wgsl/decoder_int8.json and the parts
wgsl/decoder_int8.0.bin, .1.bin, ... (pack/parts.py: at most 1 GiB each, one part for a small model): every weight
of the decoder's layers, laid out as the kernels read them, with the graph's own numbers (the int8 or 4-bit blocks
and scales of its MatMulNBits nodes, byte for byte), so the kernels compute what the graph computes. The JSON holds
the shapes (heads, sizes, epsilon, attention scale) and each tensor's part and offset in it (256-byte aligned).
Matrices are [N, K] (one output per row): fp32 weights are transposed from MatMul's [K, N]; int8 ones keep
MatMulNBits' [N, K/block, block] uint8 (zero point 128), q4 ones its [N, K/block, block/2] uint8 of two nibbles,
low first (zero point 8), with float scales [N, K/block]. The files are written beside the bundle's and listed in
its manifest (`wgsl.<dtype>`: {"json", "parts"}; `files`: each part's size and sha256).
"""

import json
import re
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from janusweb.dtypes import dtype as lookup
from janusweb.dtypes import graph_file
from janusweb.errors import UserError
from janusweb.formats import PACKS as PACK_FORMATS
from janusweb.fused import STEM
from janusweb.graph_data import external_bytes
from janusweb.integrity import graph_files, verify_files
from janusweb.pack import PACKERS
from janusweb.pack.parts import PART_BYTES, PartWriter

NAME = "wgsl"
DTYPES = PACKERS[NAME].dtypes
FORMAT = PACK_FORMATS[NAME]
ROLES = {"attn/qkv_proj": "qkv", "attn/o_proj": "o", "mlp/gate_proj": "gate", "mlp/up_proj": "up",
         "mlp/down_proj": "down"}
LAYER = re.compile(r"^/model/layers\.(\d+)/(\w+/\w+_proj|input_layernorm|post_attention_layernorm|"
                   r"final_norm_layernorm)/")


def stem(dtype: str) -> str:
    return f"wgsl/decoder{lookup(dtype).suffix}"


def _array(tensor: onnx.TensorProto, base: Path) -> np.ndarray:
    """An initializer's values, reading external data from beside the graph when it has any."""
    if tensor.data_location != onnx.TensorProto.EXTERNAL:
        return numpy_helper.to_array(tensor)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
    return np.frombuffer(external_bytes(tensor, base), dtype=dtype).reshape(tuple(tensor.dims))


def _weights(graph: onnx.GraphProto, base: Path, bits: tuple = (8,)) -> dict:
    """(layer, role) -> arrays, and the attention attributes, from the builder's node names. `bits`: the
    MatMulNBits widths the caller's kernels take."""
    inits = {t.name: t for t in graph.initializer}
    get = lambda name: _array(inits[name], base)  # noqa: E731
    out, attention, eps = {}, None, None
    for node in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "GroupQueryAttention":
            if attrs.get("do_rotary") != 1 or attrs.get("rotary_interleaved", 0) != 0 or node.input[1]:
                raise UserError(f"{node.name}: only packed QKV with non-interleaved rotary is supported")
            attention = {"num_heads": attrs["num_heads"], "num_key_value_heads": attrs["kv_num_heads"],
                         "scale": float(attrs["scale"]), "cos": get(node.input[7]), "sin": get(node.input[8])}
            continue
        m = LAYER.match(node.name)
        if not m:
            continue
        layer, what = int(m.group(1)), m.group(2)
        if node.op_type in ("SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization"):
            eps = float(attrs["epsilon"])
            role = {"input_layernorm": "ln1", "post_attention_layernorm": "ln2"}.get(what, "final_norm")
            out[(layer, role)] = {"w": get(node.input[-1] if node.op_type == "SimplifiedLayerNormalization"
                                            else node.input[2])}
        elif node.op_type == "MatMul":
            out[(layer, ROLES[what])] = {"w": np.ascontiguousarray(get(node.input[1]).T)}
        elif node.op_type == "MatMulNBits":
            block = attrs["block_size"]
            unit = 128 // attrs["bits"]  # weights per 16 bytes: the kernels' unit, which a block must hold whole
            if attrs["bits"] not in bits or len(node.input) > 3 and node.input[3] or attrs["K"] % block or block % unit:
                raise UserError(f"{node.name}: these kernels take {'/'.join(map(str, bits))}-bit weights with the "
                                f"default zero point and whole blocks of a multiple of {unit} only")
            out[(layer, ROLES[what])] = {"w": get(node.input[1]), "scales": get(node.input[2]), "block_size": block}
        elif node.op_type not in ("Sigmoid", "Mul"):
            raise UserError(f"{node.name}: unexpected {node.op_type} in the fused decoder")
    if attention is None or eps is None:
        raise UserError("the fused decoder has no GroupQueryAttention or no RMS norm: not a builder graph")
    return {"weights": out, "attention": attention, "epsilon": eps}


def build_pack(graph_path: Path, config: dict, dtype: str, out: PartWriter, source_sha256: str,
               bits: tuple = (8,)) -> dict:
    """Write the weights of `graph_path` (whose manifest sha256 is source_sha256) to `out`'s parts; return the JSON
    description (its `tensors` is out.tensors, which later puts extend)."""
    model = onnx.load(str(graph_path), load_external_data=False)
    found = _weights(model.graph, graph_path.parent, bits)
    att, weights = found["attention"], found["weights"]
    layers = config["num_layers"]
    tensors = out.tensors

    def put(name: str, array: np.ndarray) -> None:
        out.put(name, array.astype(np.uint8 if array.dtype == np.uint8 else np.float32))

    block = None
    for i in range(layers):
        for role in ("ln1", "qkv", "o", "ln2", "gate", "up", "down"):
            if (i, role) not in weights:
                raise UserError(f"{graph_path.name}: layer {i} has no {role} weight")
            w = weights[(i, role)]
            put(f"layers.{i}.{role}", w["w"])
            if "scales" in w:
                put(f"layers.{i}.{role}.scales", w["scales"])
                block = w["block_size"]
    put("final_norm", weights[(layers, "final_norm")]["w"])
    put("cos", att["cos"])
    put("sin", att["sin"])
    gate = tensors["layers.0.gate"]["shape"]
    return {"format": FORMAT, "dtype": dtype, "source": graph_path.name, "source_sha256": source_sha256,
            "hidden_size": config["hidden_size"],
            "intermediate_size": gate[0], "num_layers": layers, "num_heads": att["num_heads"],
            "num_key_value_heads": att["num_key_value_heads"], "head_dim": config["head_dim"],
            "epsilon": found["epsilon"], "scale": att["scale"], "max_positions": int(att["cos"].shape[0]),
            "block_size": block, "tensors": tensors}


def check(bundle: Path, manifest: dict, dtype: str) -> None:
    fused = manifest["graphs"].get(STEM)
    if fused is None:
        raise UserError(f"{bundle} has no {STEM} graph (export without --no-fused)")
    if dtype != "fp32" and dtype not in fused.get("variants", {}):
        raise UserError(f"{bundle} has no {dtype} variant of {STEM} (run janusweb quantize --dtype {dtype})")
    verify_files(bundle, manifest, graph_files(manifest, (STEM,), dtype) + ["config.json"])  # before reading them


def write(bundle: Path, manifest: dict, dtype: str, staged: Path, part_bytes: int = PART_BYTES) -> dict:
    """Write the pack under `staged`; returns its manifest entry {"json", "parts"} (bundle-relative paths)."""
    config = json.loads((bundle / "config.json").read_text())["janusweb"]
    source = graph_file(STEM, dtype)
    bits = (lookup(dtype).bits,) if dtype != "fp32" else ()
    out = PartWriter(staged, stem(dtype), part_bytes)
    desc = build_pack(bundle / source, config, dtype, out, manifest["files"][source]["sha256"], bits)
    entry = {"json": f"{stem(dtype)}.json", "parts": out.close()}
    (staged / entry["json"]).write_text(json.dumps(desc, indent=1) + "\n")
    return entry
