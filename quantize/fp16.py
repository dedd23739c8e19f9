"""Quantizer of fp16 (see quantize/targets.py for the interface): fp32 -> fp16 weights and compute
(onnxruntime's float16 converter), for WebGPU adapters with `shader-f16`.

Inputs and outputs stay float32 (Casts at the edges), so the KV cache, the loops and transformers.js's
`kv_cache_dtype: float32` work unchanged.
"""

import numpy as np
import onnx
from onnxruntime.transformers.float16 import convert_float_to_float16

from janusweb.dtypes import DType
from janusweb.errors import UserError
from janusweb.export.onnx_export import EXTERNAL_DATA_THRESHOLD
from janusweb.quantize.graph_io import initializer_bytes


def to_fp16(model: onnx.ModelProto) -> tuple:
    """Returns (fp16 model, stats)."""
    floats = sum(int(np.prod(t.dims)) for t in model.graph.initializer
                 if t.data_type == onnx.TensorProto.FLOAT)
    # onnx shape inference serialises the model: not possible past protobuf's 2 GB limit.
    large = initializer_bytes(model) > EXTERNAL_DATA_THRESHOLD
    out = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=large)
    return out, {"weights": floats, "keep_io_types": True}


def options(dt: DType, block_size: int | None, accuracy_level: int | None) -> dict:
    if block_size is not None or accuracy_level is not None:
        raise UserError(f"--block-size and --accuracy-level apply to block-quantized dtypes, not {dt.name}")
    return {"block_size": None, "accuracy_level": 0}


def convert(model: onnx.ModelProto, dt: DType, opts: dict) -> tuple:
    return to_fp16(model)


def summary(ops: dict, dt: DType) -> str:
    return "fp16 weights and compute, float32 inputs and outputs"
