"""The per-token heads of the CPU engine's pack (pack/cpu.py), read from the bundle's graphs at the pack's dtype,
byte for byte:

- embed_tokens: the token-embedding table of prepare_inputs_embeds (the Gather over `input_ids`): fp32 [V, H], or
  GatherBlockQuantized's uint8 bytes [V, H * bits / 8] and fp32 scales [V, H / 32] (8 or 4 bits, zero point
  implied: 128 / 8, the layout of a MatMulNBits row);
- gen_head: its linear layers (MatMul -> [N, K] fp32 rows, or MatMulNBits' blocks and scales as they are), each
  with its bias and whether the exact-erf GELU x * 0.5 * (1 + erf(x / sqrt 2)) follows it;
- gen_img_embeds: the image-token table (Gather, fp32 [codebook, D]) and the aligner's linear layers, as gen_head's.
"""

from pathlib import Path

import numpy as np
import onnx

from janusweb.errors import UserError
from janusweb.pack.wgsl import _array

# the GELU's constants as the exporter writes them (Div by sqrt 2, Add 1, Mul 0.5) and the ops it is made of
GELU = {"Div": np.float32(np.sqrt(2)), "Add": np.float32(1), "Mul": np.float32(0.5)}
GELU_OPS = {"Div", "Erf", "Add", "Mul"}


def _graph(path: Path):
    model = onnx.load(str(path), load_external_data=False)
    inits = {t.name: t for t in model.graph.initializer}
    return model.graph, inits, (lambda name: _array(inits[name], path.parent))


def _attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _blocks(path: Path, node, what: str) -> dict:
    attrs = _attrs(node)
    bits = attrs.get("bits")
    if bits not in (4, 8) or attrs.get("block_size") != 32 or len(node.input) > 3 and node.input[3]:
        raise UserError(f"{path.name}: {what}: the CPU engine takes 4- or 8-bit blocks of 32 with the default zero "
                        f"point")
    return {"dtype": "int8" if bits == 8 else "q4"}


def embed_table(path: Path) -> dict:
    """The Gather over input_ids of a prepare_inputs_embeds graph: {dtype, w, scales}."""
    graph, inits, get = _graph(path)
    nodes = [n for n in graph.node if n.op_type in ("Gather", "GatherBlockQuantized") and n.input[1] == "input_ids"]
    if len(nodes) != 1 or nodes[0].input[0] not in inits:
        raise UserError(f"{path.name}: expected one token-embedding Gather over input_ids, found {len(nodes)}")
    node = nodes[0]
    if node.op_type == "Gather":
        w = get(node.input[0])
        if w.dtype != np.float32 or w.ndim != 2 or _attrs(node).get("axis", 0) != 0:
            raise UserError(f"{path.name}: the token table is {w.dtype} {list(w.shape)}, not a float [V, H] table")
        return {"dtype": "fp32", "w": w, "scales": None}
    attrs = _attrs(node)
    if attrs.get("gather_axis", 0) != 0 or attrs.get("quantize_axis", 1) != 1:
        raise UserError(f"{path.name}: GatherBlockQuantized over axis {attrs.get('gather_axis')}, quantized along "
                        f"{attrs.get('quantize_axis')}: the CPU engine takes rows quantized along H")
    return {**_blocks(path, node, "the token table"), "w": get(node.input[0]), "scales": get(node.input[2])}


def _const(inits: dict, get, node) -> np.ndarray | None:
    names = [i for i in node.input if i in inits]
    return get(names[0]) if len(names) == 1 else None


def mlp(path: Path) -> dict:
    """The linear layers of gen_head / gen_img_embeds in graph order (each [N, K] with bias and GELU flag), and the
    table of a leading Gather (gen_img_embeds) if any."""
    graph, inits, get = _graph(path)
    ops = {n.op_type for n in graph.node}
    if not ops <= {"Gather", "MatMul", "MatMulNBits"} | GELU_OPS:
        raise UserError(f"{path.name}: ops {sorted(ops - {'Gather', 'MatMul', 'MatMulNBits'} - GELU_OPS)} are not "
                        f"linear layers, biases or GELU")
    layers, table, seen = [], None, 0
    for node in graph.node:
        if node.op_type == "Gather":
            table = get(node.input[0]) if node.input[0] in inits else None
            if table is None or table.dtype != np.float32 or table.ndim != 2:
                raise UserError(f"{path.name}: the image-token table is not a float [codebook, D] table")
        elif node.op_type == "MatMul":
            w = get(node.input[1])
            layers.append({"dtype": "fp32", "w": np.ascontiguousarray(w.T), "scales": None, "out": node.output[0]})
        elif node.op_type == "MatMulNBits":
            w = get(node.input[1])
            layers.append({**_blocks(path, node, f"layer {len(layers)}"), "w": w, "scales": get(node.input[2]),
                           "K": int(_attrs(node)["K"]), "out": node.output[0]})
        elif node.op_type == "Add" and layers and node.input[0] == layers[-1]["out"] and "bias" not in layers[-1]:
            layers[-1] |= {"bias": _const(inits, get, node).astype(np.float32), "out": node.output[0]}
        elif node.op_type == "Erf":
            layers[-1]["gelu"] = True
            seen += 1
        elif node.op_type in GELU:
            c = _const(inits, get, node)
            if c is not None and (c.size != 1 or np.float32(c.reshape(-1)[0]) != GELU[node.op_type]):
                raise UserError(f"{path.name}: {node.op_type} by {c.reshape(-1)[:4]}: not the exact GELU's constants")
    for i, layer in enumerate(layers):
        if "bias" not in layer or layer["bias"].shape != (layer["w"].shape[0],):
            raise UserError(f"{path.name}: layer {i} has no bias of its width")
        if layer["scales"] is None and layer["w"].shape[1] % 4:
            raise UserError(f"{path.name}: layer {i}'s input width {layer['w'].shape[1]} is not a multiple of 4")
        layer.setdefault("gelu", False)
    if seen != sum(layer["gelu"] for layer in layers):
        raise UserError(f"{path.name}: a GELU that does not follow a linear layer's bias")
    return {"layers": layers, "table": table}


def write_heads(append, desc: dict, sources: dict) -> None:
    """Append the heads' tensors through `append(name, array)` and describe them in desc. sources: role ->
    (path, bundle-relative file, sha256) for embed_tokens (prepare_inputs_embeds), gen_head, gen_img_embeds."""
    path, rel, sha = sources["embed_tokens"]
    emb = embed_table(path)
    append("embed_tokens", emb["w"])
    if emb["scales"] is not None:
        append("embed_tokens.scales", emb["scales"].astype(np.float32))
    desc["embed_tokens"] = {"dtype": emb["dtype"], "vocab": int(emb["w"].shape[0]), "source": Path(rel).name,
                            "source_sha256": sha}
    for role in ("gen_head", "gen_img_embeds"):
        path, rel, sha = sources[role]
        found = mlp(path)
        entry = {"source": Path(rel).name, "source_sha256": sha, "layers": []}
        if role == "gen_img_embeds":
            if found["table"] is None:
                raise UserError(f"{path.name}: no image-token table (Gather)")
            append(f"{role}.table", found["table"])
            entry |= {"codebook": int(found["table"].shape[0]), "embed_dim": int(found["table"].shape[1])}
        for i, layer in enumerate(found["layers"]):
            append(f"{role}.{i}", layer["w"])
            if layer["scales"] is not None:
                append(f"{role}.{i}.scales", layer["scales"].astype(np.float32))
            append(f"{role}.{i}.bias", layer["bias"])
            n = int(layer["w"].shape[0])
            k = layer.get("K", int(layer["w"].shape[1]))
            entry["layers"].append({"dtype": layer["dtype"], "N": n, "K": k, "gelu": bool(layer["gelu"])})
        desc[role] = entry
