"""An experiment, not shipped: the fp32 image_decode with its convolution weights rounded to 8 bits per
output channel, to weigh shipping quantized convolution weights (PSNR against the fp32 decode)."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from janusweb.metrics import psnr
from janusweb.quantize import graph_io


def round_conv_weights(model: onnx.ModelProto, bits: int = 8) -> int:
    """Round every Conv weight to `bits` bits per output channel (symmetric), kept in float: what shipping
    quantized convolution weights would cost in accuracy. Returns the number of convolutions rounded."""
    inits = {t.name: t for t in model.graph.initializer}
    levels = 2 ** (bits - 1) - 1
    done = 0
    for node in model.graph.node:
        if node.op_type == "Conv" and node.input[1] in inits:
            t = inits[node.input[1]]
            w = numpy_helper.to_array(t)
            scale = np.abs(w).reshape(w.shape[0], -1).max(1).reshape(-1, *[1] * (w.ndim - 1)) / levels
            scale = np.where(scale > 0, scale, 1).astype(np.float32)
            t.CopyFrom(numpy_helper.from_array((np.round(w / scale) * scale).astype(np.float32), t.name))
            done += 1
    return done


def conv_rounding_psnr(decoder: Path, tokens: np.ndarray, reference: np.ndarray) -> dict:
    """PSNR of image_decode with 8-bit rounded convolution weights against the fp32 decode."""
    model = graph_io.load(decoder)
    count = round_conv_weights(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return {"convolutions": count, "psnr_db": psnr(reference, session.run(None, {"generated_tokens": tokens})[0])}
