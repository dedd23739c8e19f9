"""Quantizer of the block-quantized dtypes (int8, q4; see quantize/targets.py for the interface): MatMul
weights -> MatMulNBits (quantize/matmul.py) and Gather tables -> GatherBlockQuantized (quantize/embedding.py),
`dt.bits` bits, symmetric, blocks of `block_size` weights."""

import onnx

from janusweb.dtypes import DType
from janusweb.errors import UserError
from janusweb.quantize.embedding import quantize_gathers
from janusweb.quantize.matmul import quantize_matmuls


def options(dt: DType, block_size: int | None, accuracy_level: int | None) -> dict:
    size = dt.block_size if block_size is None else block_size
    if size < 16 or size & (size - 1):
        raise UserError(f"--block-size must be a power of two >= 16 (MatMulNBits, GatherBlockQuantized), got {size}")
    if accuracy_level is not None and accuracy_level not in (0, 1, 2, 3, 4):
        raise UserError(f"--accuracy-level must be 0..4 (MatMulNBits), got {accuracy_level}")
    return {"block_size": size, "accuracy_level": accuracy_level or 0}


def convert(model: onnx.ModelProto, dt: DType, opts: dict) -> tuple:
    level = opts["accuracy_level"] or None
    model, mm = quantize_matmuls(model, dt.bits, opts["block_size"], level)
    info = {"bits": dt.bits, "block_size": opts["block_size"], "symmetric": True,
            "accuracy_level": opts["accuracy_level"], "matmul": mm.as_dict(),
            "gather": quantize_gathers(model, dt.bits, opts["block_size"]).as_dict()}
    return model, info


def summary(ops: dict, dt: DType) -> str:
    quantized = {k: v for k, v in ops.items() if k in ("MatMulNBits", "GatherBlockQuantized")}
    return ", ".join(f"{v} {k}" for k, v in quantized.items()) or "nothing to quantize (the fp32 graph)"
