"""The largest GPU buffer of each graph file, each variant and each engine pack of a bundle: the manifest's
`buffers` entry, which the page compares with the adapter's maxBufferSize and maxStorageBufferBindingSize before
it downloads anything.

An initializer becomes one GPU buffer in ONNX Runtime's WebGPU provider, bound whole to a kernel; a pack tensor
becomes one buffer of the page's own kernels. Only the graphs' structure is read (load_external_data=False).

manifest["buffers"] keeps what the export wrote there (export/limits.py: `largest`, `per_graph`, ...) and gets,
from `janusweb quantize` and `janusweb pack`:
    variants: {graph: {dtype: {"tensor", "bytes"}}}   fp32 included where its graph file is in the bundle
    packs:    {engine: {dtype: {"tensor", "bytes"}}}  (wgsl, cpu)
"""

import json
from pathlib import Path

import onnx


def initializer_bytes(tensor: onnx.TensorProto) -> int:
    n = 1
    for d in tensor.dims:
        n *= d
    return n * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize


def largest_initializer(path: Path) -> dict:
    """{"tensor", "bytes"} of the largest initializer of one .onnx file (its structure only)."""
    model = onnx.load(str(path), load_external_data=False)
    sizes = {t.name: initializer_bytes(t) for t in model.graph.initializer}
    top = max(sizes, key=sizes.get, default=None)
    return {"tensor": top, "bytes": sizes.get(top, 0)}


def largest_pack_tensor(path: Path) -> dict:
    """{"tensor", "bytes"} of the largest tensor of a pack's JSON (pack/wgsl.py, pack/cpu.py)."""
    tensors = json.loads(Path(path).read_text())["tensors"]
    top = max(tensors, key=lambda k: tensors[k]["bytes"])
    return {"tensor": top, "bytes": tensors[top]["bytes"]}


def _find(rel: str, roots) -> Path | None:
    return next((Path(r) / rel for r in roots if (Path(r) / rel).is_file()), None)


def record(manifest: dict, roots, engines=()) -> dict:
    """Fill manifest["buffers"]'s `variants` (every graph at every dtype whose .onnx is under one of `roots`,
    searched in order) and `packs` (the packs of `engines` listed in the manifest); returns manifest["buffers"]."""
    buffers = manifest.setdefault("buffers", {})
    variants = {}
    for name, graph in manifest["graphs"].items():
        files = {"fp32": graph.get("files", {}), **{d: v["files"] for d, v in graph.get("variants", {}).items()}}
        for dtype, table in files.items():
            onnx_rel = next((rel for rel in table if rel.endswith(".onnx")), None)
            path = _find(onnx_rel, roots) if onnx_rel else None
            if path is not None:
                variants.setdefault(name, {})[dtype] = largest_initializer(path)
    buffers["variants"] = variants
    packs = buffers.setdefault("packs", {})
    for engine in engines:
        for dtype, entry in manifest.get(engine, {}).items():
            path = _find(entry["json"], roots)
            if path is not None:
                packs.setdefault(engine, {})[dtype] = largest_pack_tensor(path)
    return buffers
