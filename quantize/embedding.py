"""Embedding tables (Gather over a constant [V, H] float table, indexed by values computed from the graph's inputs)
-> com.microsoft GatherBlockQuantized.

onnxruntime's MatMulNBitsQuantizer quantizes Gather to 4 bits only (and then raises the opset to 21 for the int4
type). janusweb writes the node itself, with uint8 storage for 8 and 4 bits (the `bits` attribute; WebGPU and
CPU kernels both take it) and opset 18 left alone. The numbers come from onnxruntime's own block quantizer, run
on the transposed table, so a table row is quantized exactly as a MatMulNBits weight column: symmetric blocks
of `block_size` along H, float scales [V, H / block_size], zero point implied (128 for 8 bits, 8 for 4 bits).
"""

from dataclasses import asdict, dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, DefaultWeightOnlyQuantizer

from janusweb.quantize.graph_io import ensure_ms_opset, input_dependent, use_counts


@dataclass
class GatherStats:
    quantized: int = 0
    weights: int = 0
    skipped: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def quantize_table(table: np.ndarray, bits: int, block_size: int) -> tuple:
    """[V, H] float32 -> (data uint8 [V, H * bits / 8], scales float32 [V, H / block_size])."""
    config = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True, bits=bits)
    packed, scales, _ = DefaultWeightOnlyQuantizer(config).qbits_block_quant(np.ascontiguousarray(table.T))
    return packed.reshape(table.shape[0], -1), scales


def _axis(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "axis"), 0)


def quantize_gathers(model: onnx.ModelProto, bits: int, block_size: int) -> GatherStats:
    """Replace each eligible Gather of `model` in place; return what was done."""
    inits = {t.name: t for t in model.graph.initializer}
    uses = use_counts(model)
    dependent = input_dependent(model)
    stats = GatherStats()
    nodes = []
    for node in model.graph.node:
        table = inits.get(node.input[0]) if node.op_type == "Gather" else None
        if table is None:
            nodes.append(node)
            continue
        reason = None
        if table.data_type != onnx.TensorProto.FLOAT or len(table.dims) != 2 or _axis(node) != 0:
            reason = f"table {onnx.TensorProto.DataType.Name(table.data_type)} {list(table.dims)}, axis {_axis(node)}"
        elif table.dims[1] % block_size:
            reason = f"row width {table.dims[1]} not a multiple of the block size {block_size}"
        elif uses[table.name] != 1:
            reason = f"table {table.name} shared by {uses[table.name]} readers"
        elif node.input[1] not in dependent:
            # fixed rows (e.g. the vision tower's position table): little to save, and the page runs such nodes
            # on the CPU EP, which onnxruntime-web's WASM build has no GatherBlockQuantized kernel for
            reason = "indices do not depend on a graph input (a fixed lookup)"
        if reason:
            stats.skipped[node.name] = reason
            nodes.append(node)
            continue
        data, scales = quantize_table(numpy_helper.to_array(table), bits, block_size)
        model.graph.initializer.remove(table)
        model.graph.initializer.extend([numpy_helper.from_array(data, f"{table.name}_Q{bits}"),
                                        numpy_helper.from_array(scales, f"{table.name}_scales")])
        nodes.append(onnx.helper.make_node(
            "GatherBlockQuantized", [f"{table.name}_Q{bits}", node.input[1], f"{table.name}_scales"], list(node.output),
            name=f"{node.name}_Q{bits}", domain="com.microsoft", gather_axis=0, quantize_axis=1,
            block_size=block_size, bits=bits))
        stats.quantized += 1
        stats.weights += table.dims[0] * table.dims[1]
    if stats.quantized:
        model.graph.ClearField("node")
        model.graph.node.extend(nodes)
        ensure_ms_opset(model)
    return stats
