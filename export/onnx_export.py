"""torch.onnx (the torch.export-based exporter) for one GraphSpec, saved with or without external data."""

import inspect
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx_ir
import torch
from torch.export import Dim

from janusweb.export.specs import GraphSpec

OPSET = 18
# The exporter warns once per missing torchvision op; janusweb exports no torchvision op.
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)

EXTERNAL_DATA_THRESHOLD = 2 * 1024**3  # protobuf's 2 GB limit: larger graphs keep weights in <graph>.onnx_data


def _dynamic_shapes(spec: GraphSpec, module: torch.nn.Module):
    """Per-input {axis: Dim}, grouped as the wrapper's signature groups its arguments (*varargs -> tuple)."""
    dims = {}
    per_input = []
    for t in spec.inputs:
        per_input.append({axis: dims.setdefault(d, Dim(d)) for axis, d in enumerate(t.dims) if isinstance(d, str)})
    params = list(inspect.signature(module.forward).parameters.values())
    grouped = []
    for i, p in enumerate(params):
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            grouped.append(tuple(per_input[i:]))
            break
        grouped.append(per_input[i])
    return tuple(grouped)


def compact_node_names(model: onnx_ir.Model) -> None:
    """Name every node n<index in base 36>. The page places some nodes on the CPU by name, and onnxruntime-web
    takes those names as one provider option of at most 8192 characters (forceCpuNodeNames): with the exporter's
    names (node_Add_123, 16 characters on average) Janus-Pro-1B's vision tower, 842 nodes, needs 13.8k."""
    for i, node in enumerate(onnx_ir.traversal.RecursiveGraphIterator(model.graph)):
        node.name = "n" + np.base_repr(i, 36).lower()


def weight_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


@torch.no_grad()
def export_graph(spec: GraphSpec, module: torch.nn.Module, out_dir: Path) -> list:
    """Export `module` to out_dir/<name>.onnx (+ <name>.onnx_data when large). Returns the written files."""
    args = spec.make_inputs(spec.export_dims, torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's FutureWarnings about pytree internals
        program = torch.onnx.export(
            module, args, None, input_names=[t.name for t in spec.inputs],
            output_names=[t.name for t in spec.outputs], dynamic_shapes=_dynamic_shapes(spec, module),
            opset_version=OPSET, dynamo=True, optimize=True, verbose=False,
        )
    path = out_dir / f"{spec.name}.onnx"
    program.model.producer_name = "janusweb"
    compact_node_names(program.model)
    if weight_bytes(module) > EXTERNAL_DATA_THRESHOLD:
        data = f"{spec.name}.onnx_data"
        onnx_ir.save(program.model, path, external_data=data)
        return [path, out_dir / data]
    onnx_ir.save(program.model, path)
    return [path]
