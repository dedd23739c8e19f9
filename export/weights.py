"""bf16 weights read one tensor at a time, and the fp32 copies a streamed export holds while it needs them.

A store serves the transformers name of every tensor of the model as bf16 (or the checkpoint's own dtype):
the `janus-pro-*` presets draw each tensor on demand from a seed and its name (nothing is held, nothing is
written), a transformers checkpoint is read from its memory-mapped safetensors, a DeepSeek one through the
same renaming as export.deepseek. `materialize` gives the modules a graph runs fp32 weights, `release` sends
them back to the meta device.
"""

import zlib
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import safe_open

from janusweb.export import deepseek


class PresetStore:
    """Seeded random weights with the preset's scales (export.presets), drawn in bf16 per tensor."""

    def __init__(self, model: torch.nn.Module, seed: int):
        self.shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
        self.seed = seed

    def get(self, name: str) -> torch.Tensor:
        shape = self.shapes[name]
        gen = torch.Generator().manual_seed(self.seed * 2**32 + zlib.crc32(name.encode()))
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


def _replace(model: torch.nn.Module, ids: set, make) -> None:
    new = {}
    for module in model.modules():
        for leaf, p in list(module._parameters.items()):
            if p is not None and id(p) in ids:
                if id(p) not in new:
                    new[id(p)] = torch.nn.Parameter(make(p), requires_grad=False)
                module._parameters[leaf] = new[id(p)]


@contextmanager
def materialized(model: torch.nn.Module, store, ids: set):
    """fp32 weights for the parameters `ids` of `model` (from the store) inside the block; meta again after.
    Yields the ids of the new parameters."""
    names = full_names(model)
    todo = {i for i in ids if i in names}
    _replace(model, todo, lambda p: store.get(names[id(p)]).to(torch.float32))
    live = {id(p) for n, p in model.named_parameters(remove_duplicate=False) if not p.is_meta}
    try:
        yield live
    finally:
        _replace(model, live, lambda p: torch.empty_like(p, device="meta"))
