"""bf16 weights read one tensor at a time, and the fp32 copies a streamed export holds while it needs them.

A store serves the transformers name of every tensor of the model as bf16 (or the checkpoint's own dtype):
the `janus-pro-*` presets draw each tensor on demand from a seed and its name (nothing is held, nothing is
written), a transformers checkpoint is read from its memory-mapped safetensors, a DeepSeek one through the
same renaming as export.deepseek. `materialized` gives the parameters a graph reads fp32 weights inside a block
and sends them back to the meta device after; `layers_on_demand` does it for a whole-model forward, one decoder
layer at a time (the end-to-end run of a source whose fp32 model does not fit).
"""

import zlib
from contextlib import ExitStack, contextmanager
from pathlib import Path

import onnx
import torch
from onnx import numpy_helper
from safetensors import safe_open

from janusweb.export import deepseek


class PresetStore:
    """Seeded random weights with the preset's scales (export.presets), drawn in bf16 per tensor."""

    def __init__(self, model: torch.nn.Module, seed: int):
        self.shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
        self.seed = seed

    def get(self, name: str) -> torch.Tensor:
        shape = self.shapes[name]
        # torch's CPU generator keeps the low 32 bits of its seed: the preset's seed starts the name's CRC instead
        # (seed 0: the name's plain CRC-32)
        gen = torch.Generator().manual_seed(zlib.crc32(name.encode(), self.seed))
        if len(shape) == 1:
            if "norm" in name and name.endswith("weight"):
                return torch.ones(shape, dtype=torch.bfloat16)
            return torch.randn(shape, generator=gen, dtype=torch.bfloat16) * 0.02
        fan_in = 1
        for d in shape[1:]:
            fan_in *= d
        return torch.randn(shape, generator=gen, dtype=torch.bfloat16) * fan_in ** -0.5


class SafetensorsStore:
    """Tensors of *.safetensors files under transformers' names; `rename` maps a DeepSeek checkpoint's."""

    def __init__(self, files: list[Path], deepseek_layout: bool):
        self.where = {}  # transformers name -> (file, source key, transform)
        for file in files:
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():
                    for name, transform in _targets(key, deepseek_layout, handle.get_slice(key).get_shape()):
                        self.where[name] = (file, key, transform)

    def get(self, name: str) -> torch.Tensor:
        file, key, transform = self.where[name]
        with safe_open(str(file), framework="pt") as handle:  # mapped for this tensor only
            return transform(handle.get_tensor(key)).clone()


def _targets(key: str, deepseek_layout: bool, shape: list) -> list:
    if not deepseek_layout:
        return [(key, lambda t: t)]
    name = deepseek.convert_key(key)
    if name is None:
        return []
    if qkv := deepseek.QKV.match(name):
        return [(f"{qkv[1]}{part}.{qkv[2]}", lambda t, i=i: t.chunk(3, dim=0)[i])
                for i, part in enumerate(("q_proj", "k_proj", "v_proj"))]
    if name == deepseek.POS_EMBED and len(shape) == 3 and shape[0] == 1:
        return [(name, lambda t: t[0])]
    return [(name, lambda t: t)]


class GraphWeights:
    """A store whose projection weights are those a quantized graph computes with: each MatMulNBits' packed
    weight and scales read back from the graph's file and dequantized (`quant.dequantize`, in the torch Linear
    layout [N, K]); the other tensors from `store`. packed: {packed weight initializer: parameter name}."""

    def __init__(self, store, graph: onnx.GraphProto, base_dir: Path, packed: dict, quant):
        self.store, self.base_dir, self.quant = store, str(base_dir), quant
        inits = {t.name: t for t in graph.initializer}
        self.where = {}  # parameter name -> (packed, scales, K)
        for node in graph.node:
            if node.op_type == "MatMulNBits" and node.input[1] in packed:
                k = next(a.i for a in node.attribute if a.name == "K")
                self.where[packed[node.input[1]]] = (inits[node.input[1]], inits[node.input[2]], k)
        if len(self.where) != len(packed):
            raise RuntimeError(f"the quantized graph has {len(self.where)} of its {len(packed)} packed weights")

    def get(self, name: str) -> torch.Tensor:
        if name not in self.where:
            return self.store.get(name)
        packed, scales, k = self.where[name]
        arrays = [numpy_helper.to_array(t, self.base_dir) for t in (packed, scales)]
        return torch.from_numpy(self.quant.dequantize(*arrays, k))


def used_parameters(module: torch.nn.Module, args: tuple) -> set:
    """The parameters a forward of `module` on meta `args` reads: those of every submodule that ran."""
    ran = []
    handle = torch.nn.modules.module.register_module_forward_pre_hook(lambda m, _: ran.append(m))
    try:
        with torch.no_grad():
            module(*args)
    finally:
        handle.remove()
    return {id(p) for m in ran for p in m.parameters(recurse=False)}


def full_names(model: torch.nn.Module) -> dict:
    """id(parameter) -> its state-dict name in `model` (the first, for tied weights)."""
    names = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), name)
    return names


def _replace(model: torch.nn.Module, ids: set, make) -> set:
    """Each parameter of `ids` replaced by make(parameter) wherever it is used; returns the new ones' ids."""
    new = {}
    for module in model.modules():
        for leaf, p in list(module._parameters.items()):
            if p is not None and id(p) in ids:
                if id(p) not in new:
                    new[id(p)] = torch.nn.Parameter(make(p), requires_grad=False)
                module._parameters[leaf] = new[id(p)]
    return {id(p) for p in new.values()}


def real_buffers(model) -> dict:
    """The non-persistent buffers (rotary frequencies, position ids) computed on the CPU: name -> tensor."""
    for module in model.modules():
        metas = [n for n in module._non_persistent_buffers_set if module._buffers.get(n) is not None]
        if metas:
            for name in metas:
                module._buffers[name] = torch.empty_like(module._buffers[name], device="cpu")
            model._init_weights(module)
    return {name: b for name, b in model.named_buffers() if not b.is_meta}


class BuffersOnMeta:
    """The model's real buffers sent to the meta device inside the block (a trace over meta weights), restored
    after."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.saved = []
        for module in self.model.modules():
            for name, b in module._buffers.items():
                if b is not None and not b.is_meta:
                    self.saved.append((module, name, b))
                    module._buffers[name] = b.to("meta")

    def __exit__(self, *exc):
        for module, name, b in self.saved:
            module._buffers[name] = b


@contextmanager
def materialized(model: torch.nn.Module, store, ids: set):
    """fp32 weights for the parameters `ids` of `model` (from the store) inside the block; meta again after
    (those made here only: blocks nest). Yields the ids of the new parameters."""
    names = full_names(model)
    meta = {id(p) for _, p in model.named_parameters(remove_duplicate=False) if p.is_meta}
    todo = {i for i in ids if i in names and i in meta}
    live = _replace(model, todo, lambda p: store.get(names[id(p)]).to(torch.float32))
    try:
        yield live
    finally:
        _replace(model, live, lambda p: torch.empty_like(p, device="meta"))


@contextmanager
def layers_on_demand(model: torch.nn.Module, store, layers):
    """fp32 weights for every parameter of `model` inside the block, those of each module of `layers` only while
    it runs: a forward pre-hook makes them from the store, its forward hook sends them back to the meta device.
    A whole-model forward (transformers' generate included) then holds one layer's fp32 weights at a time, for a
    source whose fp32 model does not fit; each forward pass makes every layer's weights again."""
    inside = {id(p) for layer in layers for p in layer.parameters()}
    with ExitStack() as stack:
        stack.enter_context(materialized(model, store, {id(p) for p in model.parameters()} - inside))
        running = {}

        def make(layer, _args):
            running[id(layer)] = ExitStack()
            running[id(layer)].enter_context(materialized(model, store, {id(p) for p in layer.parameters()}))

        def drop(layer, _args, _out):
            running.pop(id(layer)).close()

        for layer in layers:
            stack.callback(layer.register_forward_pre_hook(make).remove)
            stack.callback(layer.register_forward_hook(drop).remove)
        stack.callback(lambda: [s.close() for s in running.values()])  # a forward that raised
        yield
