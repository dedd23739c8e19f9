"""The VQ decoder of the CPU engine's pack (pack/cpu.py): image_decode's weights, byte for byte (fp32: the
quantizer leaves convolutions alone), and the program of ops that web/lib/engines/cpu/vq.js runs over them.

The decoder's shape comes from its weights' names, which the export keeps (`vq.decoder.up.{i}.block.{j}.conv1.weight`
...): conv_in; mid (block_1, attn_1, block_2); for each level of `up` its blocks, each followed by its attention block
where the level has them, then its upsample; norm_out, swish, conv_out. Its GroupNorms are the graph's
InstanceNormalization nodes (one per norm, in the order the decoder runs them), with the scale and shift of the Mul
and Add after each. A ResnetBlock is h = conv1(swish(norm1(x))), x' = conv2(swish(norm2(h))) + x (or + nin_shortcut(x)
where the channels change); an attention block x' = proj_out(attention(q, k, v of norm(x))) + x.
"""

import re
from pathlib import Path

import numpy as np

from janusweb.errors import UserError
from janusweb.pack.cpu_heads import _attrs, _graph

PREFIX = "vq.decoder."


def _norms(graph, inits, get, path: Path) -> list:
    """(gamma, beta, eps) of each GroupNorm in graph order: InstanceNormalization, reshape, Mul, Add."""
    consumers = {}
    for node in graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    out = []
    for node in graph.node:
        if node.op_type != "InstanceNormalization":
            continue
        at, found = node.output[0], {}
        for _ in range(6):  # the reshape back, then Mul by gamma, Add of beta
            nxt = consumers.get(at, [])
            if len(nxt) != 1:
                break
            n = nxt[0]
            const = [get(i) for i in n.input if i in inits]
            if n.op_type in ("Mul", "Add") and len(const) == 1:
                found["gamma" if n.op_type == "Mul" else "beta"] = const[0].reshape(-1).astype(np.float32)
            at = n.output[0]
            if "beta" in found:
                break
        if set(found) != {"gamma", "beta"}:
            raise UserError(f"{path.name}: a GroupNorm without its scale and shift")
        out.append({**found, "eps": float(_attrs(node).get("epsilon", 1e-5))})
    return out


def vq_decoder(path: Path, tokens: int) -> dict:
    """{desc: {codebook, embed_dim, grid, image_size, channels, program, buffers}, tensors: name -> array} of an
    image_decode graph whose images are `tokens` codes (a square grid)."""
    graph, inits, get = _graph(path)
    names = {n for n in inits if n.startswith(PREFIX) or n.startswith("vq.post_quant_conv")}
    table = [n for n in inits if n.endswith("quantize.embedding.weight")]
    if len(table) != 1 or "vq.post_quant_conv.weight" not in names or PREFIX + "conv_in.weight" not in names:
        raise UserError(f"{path.name}: no VQ decoder (codebook, post_quant_conv, decoder convolutions) found")
    norms, used = _norms(graph, inits, get, path), set()
    tensors = {"vq.codebook": get(table[0]).astype(np.float32)}
    program, state = [], {"norm": 0, "free": list(range(6)), "size": {}}

    def weight(name: str) -> str:
        if name + ".weight" not in names or name + ".bias" not in names:
            raise UserError(f"{path.name}: no {name} weight and bias")
        used.update({name + ".weight", name + ".bias"})
        tensors[name + ".weight"], tensors[name + ".bias"] = get(name + ".weight"), get(name + ".bias")
        return name

    def take(hw: int, c: int) -> int:
        b = state["free"].pop(0)
        state["size"][b] = max(state["size"].get(b, 0), hw * hw * c)
        return b

    def give(*bufs: int) -> None:
        state["free"] = sorted(state["free"] + list(bufs))

    def conv(x: int, name: str, hw: int, res: int | None = None) -> tuple:
        w = tensors.get(name + ".weight")
        if w is None:
            w = tensors[weight(name) + ".weight"]
        cout, cin, k = int(w.shape[0]), int(w.shape[1]), int(w.shape[2])
        out = take(hw, cout)
        program.append({"op": "conv", "in": x, "out": out, "w": name, "k": k, "cin": cin, "cout": cout, "h": hw,
                        **({"res": res} if res is not None else {})})
        return out, cout

    def norm(x: int, c: int, hw: int, swish: bool) -> int:
        i = state["norm"]
        if i >= len(norms):
            raise UserError(f"{path.name}: fewer GroupNorms than the decoder's blocks need")
        state["norm"] += 1
        tensors[f"vq.norm.{i}.gamma"], tensors[f"vq.norm.{i}.beta"] = norms[i]["gamma"], norms[i]["beta"]
        out = take(hw, c)
        program.append({"op": "norm", "in": x, "out": out, "norm": i, "c": c, "h": hw, "swish": swish,
                        "eps": norms[i]["eps"]})
        return out

    def resnet(x: int, c: int, hw: int, name: str) -> tuple:
        h = norm(x, c, hw, True)
        h2, cout = conv(h, f"{name}.conv1", hw)
        give(h)
        h3 = norm(h2, cout, hw, True)
        give(h2)
        res = x
        if f"{name}.nin_shortcut.weight" in names:
            res, _ = conv(x, f"{name}.nin_shortcut", hw)
        out, _ = conv(h3, f"{name}.conv2", hw, res)
        give(h3, *({res} if res != x else set()), x)
        return out, cout

    def attention(x: int, c: int, hw: int, name: str) -> int:
        h = norm(x, c, hw, False)
        q, _ = conv(h, f"{name}.q", hw)
        k, _ = conv(h, f"{name}.k", hw)
        v, _ = conv(h, f"{name}.v", hw)
        give(h)
        a = take(hw, c)
        program.append({"op": "attn", "q": q, "k": k, "v": v, "out": a, "c": c, "h": hw})
        give(q, k, v)
        out, _ = conv(a, f"{name}.proj_out", hw, x)
        give(a, x)
        return out

    codes = tensors["vq.codebook"]
    hw = int(round(np.sqrt(tokens)))
    x = take(hw, codes.shape[1])
    program.append({"op": "embed", "out": x, "c": int(codes.shape[1]), "h": hw})
    y, c = conv(x, "vq.post_quant_conv", hw)
    give(x)
    x, c = conv(y, PREFIX + "conv_in", hw)
    give(y)
    x, c = resnet(x, c, hw, PREFIX + "mid.block_1")
    x = attention(x, c, hw, PREFIX + "mid.attn_1")
    x, c = resnet(x, c, hw, PREFIX + "mid.block_2")
    levels = sorted({int(m.group(1)) for n in names if (m := re.match(re.escape(PREFIX) + r"up\.(\d+)\.", n))})
    for i in levels:
        blocks = sorted({int(m.group(1)) for n in names if (m := re.match(re.escape(PREFIX) + rf"up\.{i}\.block\.(\d+)\.", n))})
        for j in blocks:
            x, c = resnet(x, c, hw, f"{PREFIX}up.{i}.block.{j}")
            if f"{PREFIX}up.{i}.attn.{j}.q.weight" in names:
                x = attention(x, c, hw, f"{PREFIX}up.{i}.attn.{j}")
        if f"{PREFIX}up.{i}.upsample.conv.weight" in names:
            u = take(2 * hw, c)
            program.append({"op": "upsample", "in": x, "out": u, "c": c, "h": hw})
            give(x)
            hw *= 2
            x, c = conv(u, f"{PREFIX}up.{i}.upsample.conv", hw)
            give(u)
    h = norm(x, c, hw, True)
    give(x)
    x, c = conv(h, PREFIX + "conv_out", hw)
    program.append({"op": "out", "in": x, "c": c, "h": hw})
    if used != names or state["norm"] != len(norms):
        raise UserError(f"{path.name}: the VQ decoder has weights or GroupNorms its program does not use "
                        f"({sorted(names - used)[:4]}, {len(norms) - state['norm']} norms)")
    return {"desc": {"codebook": int(codes.shape[0]), "embed_dim": int(codes.shape[1]), "grid": hw // 2 ** sum(
        1 for op in program if op["op"] == "upsample"), "image_size": hw, "channels": c, "program": program,
        "buffers": [state["size"][b] for b in sorted(state["size"])]}, "tensors": tensors}

