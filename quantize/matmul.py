"""MatMul weights -> com.microsoft MatMulNBits (weight-only, block-wise along K, symmetric), by onnxruntime's own
MatMulNBitsQuantizer. Activations stay float unless accuracy_level asks otherwise (4: int8 activations).

janusweb only chooses which MatMuls to hand to it: a constant 2-D float32 weight of at least one block along K,
read by that MatMul alone. The rest (attention score products, rotary tables, a K=8 projection) stay float.
"""

import logging
from dataclasses import asdict, dataclass, field

import onnx
from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

from janusweb.quantize.graph_io import name_nodes, use_counts

# The quantizer logs every node at INFO through its own handler; its module's import also set the root logger to
# INFO (logging.basicConfig), which would print every library's INFO lines (onnxscript's optimizer) from then on.
logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
logging.getLogger().setLevel(logging.WARNING)


@dataclass
class MatMulStats:
    quantized: int = 0
    weights: int = 0  # number of weights now stored in `bits` bits
    skipped: dict = field(default_factory=dict)  # node name -> reason, for MatMuls with a constant weight

    def as_dict(self) -> dict:
        return asdict(self)


def _candidates(model: onnx.ModelProto, block_size: int) -> tuple:
    inits = {t.name: t for t in model.graph.initializer}
    uses = use_counts(model)
    chosen, skipped, weights = [], {}, 0
    for node in model.graph.node:
        if node.op_type != "MatMul" or node.input[1] not in inits:
            continue
        w = inits[node.input[1]]
        if w.data_type != onnx.TensorProto.FLOAT or len(w.dims) != 2:
            skipped[node.name] = f"weight {onnx.TensorProto.DataType.Name(w.data_type)} {list(w.dims)}"
        elif w.dims[0] < block_size:
            skipped[node.name] = f"K={w.dims[0]} below one block ({block_size})"
        elif uses[w.name] != 1:
            skipped[node.name] = f"weight {w.name} shared by {uses[w.name]} readers"
        else:
            chosen.append(node.name)
            weights += w.dims[0] * w.dims[1]
    return chosen, skipped, weights


def quantize_matmuls(model: onnx.ModelProto, bits: int, block_size: int,
                     accuracy_level: int | None = None) -> tuple:
    """Quantize the eligible MatMuls of `model`. Returns (model, MatMulStats); the input model is consumed."""
    name_nodes(model)
    chosen, skipped, weights = _candidates(model, block_size)
    if not chosen:
        return model, MatMulStats(skipped=skipped)
    exclude = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.name not in set(chosen)]
    config = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True, bits=bits,
                                          accuracy_level=accuracy_level, op_types_to_quantize=("MatMul",))
    quantizer = MatMulNBitsQuantizer(model, nodes_to_exclude=exclude, algo_config=config)
    quantizer.process()
    out = quantizer.model.model
    done = sum(1 for n in out.graph.node if n.op_type == "MatMulNBits")
    if done != len(chosen):
        raise RuntimeError(f"MatMulNBitsQuantizer quantized {done} MatMuls, expected {len(chosen)}")
    return out, MatMulStats(done, weights, skipped)
