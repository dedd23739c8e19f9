"""The dtypes `janusweb quantize --dtype` writes: the entries of janusweb.dtypes that name a quantizer, and that
quantizer's module.

A quantizer module (quantize/nbits.py, quantize/fp16.py) exposes:

    options(dt, block_size, accuracy_level) -> dict
        the run's checked options {"block_size": int | None, "accuracy_level": int} (UserError for values its
        ops reject, or for options it does not take)
    convert(model, dt, options) -> (model, info)
        the fp32 onnx.ModelProto converted; info is the variant's `quantization` entry in the manifest
    summary(ops, dt) -> str
        one line on what was converted, from the converted graph's op counts
"""

import importlib

from janusweb.dtypes import DType, dtype, spellings
from janusweb.errors import UserError


def target(name: str) -> DType:
    """The dtype a --dtype value names (aliases accepted); UserError unless a quantizer writes it."""
    dt = dtype(name) if name in spellings() else None
    if dt is None or dt.quantizer is None:
        raise UserError(f"unknown dtype {name!r}; choose one of: {', '.join(spellings(quantized=True))}")
    return dt


def quantizer(dt: DType):
    return importlib.import_module(dt.quantizer)
