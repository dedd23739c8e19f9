"""MatMul weights -> MatMulNBits for a graph too large to hold (the 7B language model's fp32 weights are 24 GB):
each weight is quantized, by the same onnxruntime kernels as MatMulNBitsQuantizer (quantize.matmul), when the
new graph is written, one at a time. The graph is an fp32 file opened with its external data unread
(`quantize_streamed`, for `janusweb quantize`), or an onnx_ir model whose weights are themselves lazy
(`quantize_graph_ir`: the streamed export, which reads each weight from its bf16 source while writing, so the
fp32 graph is never on disk); `dequantize` gives back the weights the quantized graph computes with.

Same choice of MatMuls as quantize.matmul (a constant 2-D float32 weight of at least one block along K, read
by that MatMul alone), same node (inputs A, B quantized, scales; symmetric, so no zero points), same bytes.
"""

from pathlib import Path

import numpy as np
import onnx_ir as ir
import onnxruntime
from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, DefaultWeightOnlyQuantizer

from janusweb.errors import UserError
from janusweb.graphs import GRAPH_NAMES
from janusweb.manifest import add_variants
from janusweb.quantize.graph_io import MS_DOMAIN
from janusweb.quantize.matmul import MatMulStats
from janusweb.quantize.records import update_config
from janusweb.quantize.targets import quantizer, target


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
    return np.ascontiguousarray(tensor.numpy())


class _Quantized:
    """The packed weight and the scales of one MatMul, computed once when the first of the two is written."""

    def __init__(self, weight: ir.Value, quantizer: DefaultWeightOnlyQuantizer, parts: tuple | None = None):
        self.weight, self.quantizer, self.parts, self.read = weight.const_value, quantizer, parts, set()

    def part(self, index: int) -> np.ndarray:
        if self.parts is None:
            self.parts = self.quantizer.qbits_block_quant(_read(self.weight))[:2]
        value = self.parts[index]
        self.read.add(index)
        if len(self.read) == 2:  # both written: drop them (a later read computes them again)
            self.parts, self.read = None, set()
        return value


def quantize_graph_ir(model: ir.Model, bits: int, block_size: int, accuracy_level: int | None = None,
                      parts: dict | None = None) -> tuple:
    """Replace the eligible MatMuls of an onnx_ir model by MatMulNBits, in place, the packed weights and scales
    lazy (computed from each float weight when they are first read: as the file is written), or taken from
    `parts` (float weight name -> (packed, scales), computed before: StreamQuantizer.hold). Returns
    (MatMulStats, {float weight name: packed weight name})."""
    graph = model.graph
    config = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True, bits=bits,
                                          accuracy_level=accuracy_level)
    quantizer = DefaultWeightOnlyQuantizer(config)
    stats, renamed = MatMulStats(), {}
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
        job = _Quantized(w, quantizer, (parts or {}).pop(w.name, None))
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
        renamed[w.name] = packed.name
        stats.quantized += 1
        stats.weights += k * n
    model.opset_imports.setdefault(MS_DOMAIN, 1)
    return stats, renamed


def settle(graph: ir.Graph, names) -> None:
    """Compute the lazy initializers `names` now and keep their values (numpy) instead of what they are computed
    from: a graph built piece by piece keeps only its quantized weights between pieces."""
    for name in names:
        value = graph.initializers[name]
        value.const_value = ir.tensor(np.ascontiguousarray(value.const_value.numpy()), name=name)


def _dropped(name: str):
    def fail():
        raise RuntimeError(f"{name}: its float values were dropped after quantization (StreamQuantizer.hold)")
    return fail


def dequantize(packed: np.ndarray, scales: np.ndarray, bits: int, k: int) -> np.ndarray:
    """The float weight that MatMulNBits computes with, transposed ([N, K]: torch's Linear layout): packed
    [N, blocks, block*bits/8] (4 bits: the low nibble first), symmetric (zero point 2^(bits-1)), one scale per
    block of K."""
    n, blocks, nbytes = packed.shape
    if bits == 4:
        q = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(n, blocks, 2 * nbytes)
    elif bits == 8:
        q = packed
    else:
        raise ValueError(f"dequantize: {bits} bits")
    w = (q.astype(np.float32) - 2 ** (bits - 1)) * scales[:, :, None].astype(np.float32)
    return np.ascontiguousarray(w.reshape(n, -1)[:, :k])


def op_counts(graph: ir.Graph) -> dict:
    ops = {}
    for node in graph:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return dict(sorted(ops.items()))


def quantize_streamed(src: Path, out_dir: Path, stem: str, bits: int, block_size: int,
                      accuracy_level: int | None = None) -> tuple:
    """Write out_dir/<stem>.onnx + <stem>.onnx_data. Returns (files, MatMulStats, op counts)."""
    model = ir.load(str(src))
    stats, _ = quantize_graph_ir(model, bits, block_size, accuracy_level)
    path, data = out_dir / f"{stem}.onnx", f"{stem}.onnx_data"
    ir.save(model, path, external_data=data)
    return [path, out_dir / data], stats, op_counts(model.graph)


def variant_entry(files: list, stats: MatMulStats, ops: dict, bits: int, block_size: int,
                  accuracy_level: int | None) -> dict:
    """quantize.driver's manifest entry of a graph quantized streamed (MatMuls only: the large graphs, the
    language models, gather no weights). files: paths under the staging folder's onnx/."""
    info = {"bits": bits, "block_size": block_size, "symmetric": True, "accuracy_level": accuracy_level or 0,
            "matmul": stats.as_dict(), "gather": {"quantized": 0, "weights": 0, "skipped": {}}, "streamed": True}
    return {"files": [f"onnx/{Path(p).name}" for p in files], "quantization": info, "ops": ops,
            "quantized": f"{stats.quantized} MatMulNBits (streamed)", "external_data": True}


STREAM_BYTES = 4 * 1024**3  # graphs above this (graph + external data) are quantized streamed
NBITS = "janusweb.quantize.nbits"  # the dtypes' quantizer whose MatMul part this module streams


def graph_bytes(src: Path) -> int:
    return sum(p.stat().st_size for p in (src, src.with_suffix(".onnx_data")) if p.is_file())


def quantize_large_graph(src: Path, out_dir: Path, stem: str, t, opts: dict) -> dict:
    """quantize.driver's manifest entry of one graph, quantized streamed."""
    block_size, accuracy_level = opts["block_size"], opts.get("accuracy_level")
    files, stats, ops = quantize_streamed(src, out_dir, stem, t.bits, block_size, accuracy_level)
    return variant_entry(files, stats, ops, t.bits, block_size, accuracy_level)


class StreamQuantizer:
    """One block-quantized dtype (int8, q4) as the streamed export applies it (`janusweb export --stream --dtype`;
    the CLI hands these to export, which never imports quantize): the same choice of MatMuls, kernels and
    manifest records as `janusweb quantize`, on graphs whose float weights are never written."""

    def __init__(self, dtype: str, block_size: int | None = None, accuracy_level: int | None = None):
        self.dtype = target(dtype)
        if self.dtype.quantizer != NBITS:
            raise UserError(f"export --stream --dtype: {self.dtype.name} is not quantized while streaming (int8, q4 "
                            f"are); run `janusweb quantize` on an fp32 bundle (--fp32-graphs)")
        self.opts = quantizer(self.dtype).options(self.dtype, block_size, accuracy_level)
        self.name, self.suffix, self.bits = self.dtype.name, self.dtype.suffix, self.dtype.bits
        self.block_size = self.opts["block_size"]
        self.level = self.opts["accuracy_level"] or None
        config = DefaultWeightOnlyQuantConfig(block_size=self.block_size, is_symmetric=True, bits=self.bits,
                                              accuracy_level=self.level)
        self._quantizer = DefaultWeightOnlyQuantizer(config)

    def apply(self, model: ir.Model) -> tuple:
        """quantize_graph_ir with this dtype's options (and the weights `hold` quantized before):
        (MatMulStats, {float weight: packed weight})."""
        held, self._held = getattr(self, "_held", {}), {}
        return quantize_graph_ir(model, self.bits, self.block_size, self.level, held)

    def hold(self, graph: ir.Graph, names) -> None:
        """For a graph built piece by piece (the fused decoder, one layer at a time) whose new initializers
        `names` still point at the piece's float weights: the MatMul weights among them are quantized now (kept
        for `apply`, which rewrites the nodes when the graph is complete) and the others computed now, so that no
        float weight of the piece stays referenced."""
        self._held = getattr(self, "_held", {})
        names = set(names)
        for node in graph:
            w = node.inputs[1] if node.op_type == "MatMul" and len(node.inputs) > 1 else None
            if w is None or w.name not in names or _eligible(node, self.block_size):
                continue
            self._held[w.name] = tuple(self._quantizer.qbits_block_quant(_read(w.const_value))[:2])
            w.const_value = ir.LazyTensor(_dropped(w.name), dtype=w.dtype, shape=w.shape, name=w.name)
            names.discard(w.name)
        settle(graph, names)

    def dequantize(self, packed: np.ndarray, scales: np.ndarray, k: int) -> np.ndarray:
        """[N, K] float weights of one MatMulNBits of this dtype (module function `dequantize`)."""
        return dequantize(packed, scales, self.bits, k)

    def entry(self, files: list, stats: MatMulStats, ops: dict) -> dict:
        return variant_entry(files, stats, ops, self.bits, self.block_size, self.level)

    def quantize_file(self, src: Path, out_dir: Path, stem: str) -> dict:
        """A graph written in fp32 (those that fit in memory), quantized as `janusweb quantize` does."""
        from janusweb.quantize.driver import quantize_graph

        return quantize_graph(src, out_dir, stem, self.dtype, self.opts)

    def record(self, root: Path, manifest: dict, config: dict, variants: dict) -> dict:
        """The variants (graph -> entry, files relative to `root`) in the manifest and config.json, as
        `janusweb quantize` records them; returns config.json's new contents."""
        run = {"dtype": self.name, "cli": f"export --stream --dtype {self.name}", **self.opts,
               "onnxruntime": onnxruntime.__version__, "report": None, "streamed": True}
        add_variants(manifest, root, self.name, variants, run)
        external = {name: variants[name]["external_data"] for name in GRAPH_NAMES if name in variants}
        return update_config(config, manifest, self.suffix, external)


def stream_quantizers(dtypes: list, block_size: int | None = None, accuracy_level: int | None = None) -> list:
    return [StreamQuantizer(d, block_size, accuracy_level) for d in dtypes]
