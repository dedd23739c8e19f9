"""Graph files in and out (external data above protobuf's limit, named as transformers.js looks for it), the op
census of a graph, and the ops a WebGPU graph must not contain."""

from collections import Counter
from pathlib import Path

import onnx

from janusweb.export.onnx_export import EXTERNAL_DATA_THRESHOLD
from janusweb.graph_data import external_bytes, external_tensors

# Dynamic (activation) quantization ops: no kernels on onnxruntime-web's WebGPU EP.
WEBGPU_FORBIDDEN_OPS = frozenset({"MatMulInteger", "ConvInteger", "DynamicQuantizeLinear", "QLinearMatMul",
                                  "QLinearConv", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"})
# Ops that mark a graph as quantized already: quantize starts from the fp32 graphs only.
QUANTIZED_OPS = frozenset({"MatMulNBits", "GatherBlockQuantized", "QuantizeLinear", "DequantizeLinear",
                           "MatMulBnb4", "MatMul4Bits"}) | WEBGPU_FORBIDDEN_OPS
MS_DOMAIN = "com.microsoft"


def load(path: Path, with_data: bool = True) -> onnx.ModelProto:
    """A graph with its weights (external data read from beside it) or, with_data=False, its structure only.
    External data is read here rather than by onnx.load, which refuses files with several hard links, as a
    bundle's files have once `janusweb build-web` has linked them into a site."""
    model = onnx.load(str(path), load_external_data=False)
    if with_data:
        for tensor in external_tensors(model.graph):
            tensor.raw_data = external_bytes(tensor, Path(path).parent)
            del tensor.external_data[:]
            tensor.data_location = onnx.TensorProto.DEFAULT
    return model


def op_counts(model: onnx.ModelProto) -> dict:
    return dict(sorted(Counter(n.op_type for n in model.graph.node).items()))


def is_quantized(model: onnx.ModelProto) -> str | None:
    """Why the graph is not an fp32 graph (a quantized op or fp16 weights), or None when it is one."""
    ops = sorted({n.op_type for n in model.graph.node} & QUANTIZED_OPS)
    if ops:
        return f"it has {', '.join(ops)}"
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        return "it has float16 weights"
    return None


def initializer_bytes(model: onnx.ModelProto) -> int:
    total = 0
    for t in model.graph.initializer:
        if t.HasField("raw_data"):
            total += len(t.raw_data)
        else:
            total += onnx.numpy_helper.to_array(t).nbytes
    return total


def save(model: onnx.ModelProto, out_dir: Path, stem: str) -> list:
    """Write out_dir/<stem>.onnx, with its weights in <stem>.onnx_data when the graph would pass protobuf's
    2 GB limit (transformers.js looks for exactly that name). Returns the written paths."""
    path = out_dir / f"{stem}.onnx"
    if initializer_bytes(model) > EXTERNAL_DATA_THRESHOLD:
        data = f"{stem}.onnx_data"
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=data,
                        size_threshold=1024)
        return [path, out_dir / data]
    onnx.save_model(model, str(path))
    return [path]


def ensure_ms_opset(model: onnx.ModelProto) -> None:
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(MS_DOMAIN, 1))


def name_nodes(model: onnx.ModelProto) -> None:
    """Give unnamed nodes a unique name (the quantizer selects nodes by name)."""
    taken = {n.name for n in model.graph.node}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"janusweb_{node.op_type}_{i}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)


def use_counts(model: onnx.ModelProto) -> Counter:
    """How many node inputs (and graph outputs) read each tensor name, top graph and subgraphs."""
    counts = Counter(o.name for o in model.graph.output)

    def visit(graph):
        for node in graph.node:
            counts.update(i for i in node.input if i)
            for attr in node.attribute:
                for g in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
                    visit(g)

    visit(model.graph)
    return counts


def input_dependent(model: onnx.ModelProto) -> set:
    """Names of the top graph's values computed from its inputs (nodes in topological order, as ONNX stores them)."""
    values = {i.name for i in model.graph.input}
    for node in model.graph.node:
        if any(i in values for i in node.input):
            values.update(node.output)
    return values
