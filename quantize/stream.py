"""MatMul weights -> MatMulNBits for a graph too large to hold (the 7B language model's fp32 weights are 24 GB):
the graph is opened with its external data memory-mapped, and each weight is quantized, by the same
onnxruntime kernels as MatMulNBitsQuantizer (quantize.matmul), when the new graph is written, one at a time.

Same choice of MatMuls as quantize.matmul (a constant 2-D float32 weight of at least one block along K, read
by that MatMul alone), same node (inputs A, B quantized, scales; symmetric, so no zero points), same bytes.
"""

from pathlib import Path

import numpy as np
import onnx_ir as ir
from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, DefaultWeightOnlyQuantizer

from janusweb.quantize.graph_io import MS_DOMAIN
from janusweb.quantize.matmul import MatMulStats


def _eligible(node: ir.Node, block_size: int) -> str | None:
    """Why this MatMul keeps its float weight (None: quantize it)."""
    w = node.inputs[1]
    if w is None or not w.is_initializer() or w.const_value is None:
        return "no constant weight"
    if w.dtype != ir.DataType.FLOAT or len(w.shape) != 2:
        return f"weight {w.dtype} {list(w.shape)}"
    if w.shape[0] < block_size:
        return f"K={w.shape[0]} below one block ({block_size})"
    if len(w.uses()) != 1:
        return f"weight {w.name} shared by {len(w.uses())} readers"
    return None


def _read(tensor) -> np.ndarray:
    """The weight's values, read from its external data file rather than memory-mapped: a mapping stays resident
    (and counted) until the graph is closed, which for the 7B language model would be all its 24 GB."""
    if isinstance(tensor, ir.ExternalTensor):
        shape = tuple(tensor.shape.numpy())
        return np.fromfile(tensor.path, dtype=np.float32, count=int(np.prod(shape)),
                           offset=tensor.offset or 0).reshape(shape)
    return tensor.numpy()


class _Quantized:
    """The packed weight and the scales of one MatMul, computed once when the first of the two is written."""

    def __init__(self, weight: ir.Value, quantizer: DefaultWeightOnlyQuantizer):
        self.weight, self.quantizer, self.parts, self.read = weight.const_value, quantizer, None, set()

    def part(self, index: int) -> np.ndarray:
        if self.parts is None:
            self.parts = self.quantizer.qbits_block_quant(_read(self.weight))[:2]
        value = self.parts[index]
        self.read.add(index)
        if len(self.read) == 2:  # both written: drop them (a later read computes them again)
            self.parts, self.read = None, set()
        return value


def quantize_streamed(src: Path, out_dir: Path, stem: str, bits: int, block_size: int,
                      accuracy_level: int | None = None) -> tuple:
    """Write out_dir/<stem>.onnx + <stem>.onnx_data. Returns (files, MatMulStats, op counts)."""
    model = ir.load(str(src))
    graph = model.graph
    config = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True, bits=bits,
                                          accuracy_level=accuracy_level)
    quantizer = DefaultWeightOnlyQuantizer(config)
    stats = MatMulStats()
    for node in list(graph):
        if node.op_type != "MatMul" or node.domain not in ("", "ai.onnx"):
            continue
        why = _eligible(node, block_size)
        if why:
            if node.inputs[1] is not None and node.inputs[1].is_initializer():
                stats.skipped[node.name] = why
            continue
        w = node.inputs[1]
        k, n = w.shape
        blocks = (k + block_size - 1) // block_size
        job = _Quantized(w, quantizer)
        packed = ir.Value(name=f"{w.name}_Q{bits}", shape=ir.Shape([n, blocks, block_size * bits // 8]),
                          type=ir.TensorType(ir.DataType.UINT8))
        scales = ir.Value(name=f"{w.name}_scales", shape=ir.Shape([n, blocks]), type=ir.TensorType(ir.DataType.FLOAT))
        for index, value in enumerate((packed, scales)):
            value.const_value = ir.LazyTensor(lambda job=job, i=index, v=value: ir.tensor(job.part(i), name=v.name),
                                              dtype=value.dtype, shape=value.shape, name=value.name)
            graph.register_initializer(value)
        attrs = {"K": k, "N": n, "bits": bits, "block_size": block_size}
        if accuracy_level:
            attrs["accuracy_level"] = accuracy_level
        new = ir.node("MatMulNBits", [node.inputs[0], packed, scales], attrs, domain=MS_DOMAIN,
                      name=node.name, outputs=[ir.Value(name=f"{node.outputs[0].name}.nbits")])
        graph.insert_after(node, new)
        out = node.outputs[0]
        out.replace_all_uses_with(new.outputs[0], replace_graph_outputs=True)
        graph.remove(node, safe=True)
        new.outputs[0].name, out.name = out.name, f"{out.name}.float"
        new.outputs[0].shape, new.outputs[0].type = out.shape, out.type
        graph.initializers.pop(w.name)
        stats.quantized += 1
        stats.weights += k * n
    model.opset_imports.setdefault(MS_DOMAIN, 1)
    path, data = out_dir / f"{stem}.onnx", f"{stem}.onnx_data"
    ir.save(model, path, external_data=data)
    ops = {}
    for node in graph:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return [path, out_dir / data], stats, dict(sorted(ops.items()))


STREAM_BYTES = 4 * 1024**3  # graphs above this (graph + external data) are quantized streamed
NBITS = "janusweb.quantize.nbits"  # the dtypes' quantizer whose MatMul part this module streams


def graph_bytes(src: Path) -> int:
    return sum(p.stat().st_size for p in (src, src.with_suffix(".onnx_data")) if p.is_file())


def quantize_large_graph(src: Path, out_dir: Path, stem: str, t, opts: dict) -> dict:
    """quantize.driver's manifest entry of one graph, quantized streamed (MatMuls only: the large graphs, the
    language models, gather no weights)."""
    block_size, accuracy_level = opts["block_size"], opts.get("accuracy_level")
    files, stats, ops = quantize_streamed(src, out_dir, stem, t.bits, block_size, accuracy_level)
    info = {"bits": t.bits, "block_size": block_size, "symmetric": True, "accuracy_level": accuracy_level or 0,
            "matmul": stats.as_dict(), "gather": {"quantized": 0, "weights": 0, "skipped": {}}, "streamed": True}
    return {"files": [f"onnx/{p.name}" for p in files], "quantization": info, "ops": ops,
            "quantized": f"{stats.quantized} MatMulNBits (streamed)", "external_data": True}
