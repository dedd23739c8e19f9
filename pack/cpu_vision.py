"""The vision tower of the CPU engine's pack (pack/cpu.py): SigLIP and the aligner, read from the bundle's
prepare_inputs_embeds graph at the pack's dtype, byte for byte, so that the page's kernels compute what that graph
computes for a prompt with an image.

The graph is walked in order (the exporter writes one encoder layer after another):
- the patch embedding, a Conv of stride = kernel = patch over the pixels: its weight as a [D, 3 * patch * patch] fp32
  matrix (rows in the Conv's (channel, y, x) order) with its bias (the quantizer leaves convolutions in fp32);
- the position table, the constant [1, T, D] added to the patches;
- per encoder layer: LayerNorm (weight, bias, epsilon), the q, k and v projections (their matrices stacked into one
  [3D, D], biases likewise), the attention's scale (the constant the scores are multiplied by), the output
  projection, LayerNorm, fc1 (then the exact-erf GELU), fc2; then the post LayerNorm;
- the aligner: its linear layers, GELU between them.
Matrices are MatMulNBits' blocks and scales as they are (8 or 4 bits), or MatMul's fp32 weights transposed to
[N, K], each with the bias of the Add that follows it.
"""

from pathlib import Path

import numpy as np

from janusweb.errors import UserError
from janusweb.pack.cpu_heads import _attrs, _blocks, _graph

LINEAR = ("MatMul", "MatMulNBits")
PER_LAYER = ("q", "k", "v", "o", "fc1", "fc2")


def _walk(path: Path) -> dict:
    """The graph's weights in order: conv, position table, layer norms, linear layers (with their biases), the
    attention scale, and how many GELUs."""
    graph, inits, get = _graph(path)
    found = {"norms": [], "linears": [], "conv": None, "pos": None, "scale": None, "gelus": 0}
    pending = None  # the output of the last linear layer, until its bias
    gathered = {}  # outputs of Gathers of constants after the patch embedding
    for node in graph.node:
        op = node.op_type
        if op == "Conv":
            if found["conv"] is not None:
                raise UserError(f"{path.name}: more than one convolution (the patch embedding)")
            attrs = _attrs(node)
            w = get(node.input[1])
            if attrs.get("group", 1) != 1 or list(attrs.get("strides", [])) != list(w.shape[2:]) \
                    or any(attrs.get("pads", [0])) or len(node.input) < 3:
                raise UserError(f"{path.name}: the patch embedding is not a biased convolution with stride = kernel")
            found["conv"] = {"w": w, "b": get(node.input[2]), "out": None}
        elif op == "Gather" and found["conv"] is not None and all(i in inits for i in node.input[:2]):
            # the streamed export leaves the position table as a Gather of two constants (the whole-model one folds it)
            gathered[node.output[0]] = np.take(get(node.input[0]), get(node.input[1]), axis=_attrs(node).get("axis", 0))
        elif op == "Add" and found["conv"] is not None and found["pos"] is None:
            table = [get(i) if i in inits else gathered[i] for i in node.input if i in inits or i in gathered]
            if len(table) != 1 or table[0].ndim != 3:
                raise UserError(f"{path.name}: the patches are not followed by a position table")
            found["pos"] = table[0].reshape(table[0].shape[1:]).astype(np.float32)
        elif op == "LayerNormalization":
            if len(node.input) < 3 or any(i not in inits for i in node.input[1:3]):
                raise UserError(f"{path.name}: a LayerNormalization without a constant weight and bias")
            found["norms"].append({"w": get(node.input[1]).astype(np.float32), "b": get(node.input[2]).astype(np.float32),
                                   "eps": float(_attrs(node).get("epsilon", 1e-5))})
        elif op in LINEAR and node.input[1] in inits:
            if op == "MatMul":
                layer = {"dtype": "fp32", "w": np.ascontiguousarray(get(node.input[1]).T), "scales": None}
            else:
                attrs = _attrs(node)
                n, k = int(attrs["N"]), int(attrs["K"])
                layer = {**_blocks(path, node, f"linear layer {len(found['linears'])}"), "w": get(node.input[1]),
                         "scales": get(node.input[2]).reshape(n, k // 32)}
            layer["out"] = node.output[0]
            found["linears"].append(layer)
            pending = layer
        elif op == "Add" and pending is not None and pending["out"] in node.input:
            bias = [get(i) for i in node.input if i in inits]
            if len(bias) != 1 or bias[0].shape != (pending["w"].shape[0],):
                raise UserError(f"{path.name}: linear layer {len(found['linears']) - 1} has no bias of its width")
            pending["b"] = bias[0].astype(np.float32)
            pending = None
        elif op == "Mul" and found["scale"] is None and found["norms"]:
            consts = [get(i) for i in node.input if i in inits]
            if len(consts) == 1 and consts[0].size == 1:
                found["scale"] = float(consts[0].reshape(-1)[0])  # the scores' scale, after q k^T
        elif op == "Erf":
            found["gelus"] += 1
    return found


def vision_tower(path: Path, config: dict) -> dict:
    """SigLIP + aligner of a prepare_inputs_embeds graph: {desc fields, tensors: name -> array}."""
    vision = config["vision_config"]["params"]
    layers, size, patch = int(vision["layers"]), int(vision["image_size"]), int(vision["patch_size"])
    f = _walk(path)
    if f["conv"] is None or f["pos"] is None or f["scale"] is None:
        raise UserError(f"{path.name}: no vision tower (patch embedding, position table, attention) found")
    linears, norms = f["linears"], f["norms"]
    aligner = len(linears) - len(PER_LAYER) * layers
    if len(norms) != 2 * layers + 1 or aligner < 1 or f["gelus"] != layers + aligner - 1:
        raise UserError(f"{path.name}: {len(norms)} layer norms, {len(linears)} linear layers and {f['gelus']} GELUs "
                        f"do not make {layers} encoder layers and an aligner")
    if any("b" not in layer for layer in linears):
        raise UserError(f"{path.name}: a linear layer without a bias")
    conv = f["conv"]
    D = int(conv["w"].shape[0])
    heads = int(round(D * f["scale"] ** 2))  # scale = head_dim ** -0.5
    tensors = {"vision.patch": conv["w"].reshape(D, -1).astype(np.float32), "vision.patch.bias": conv["b"],
               "vision.pos": f["pos"]}

    def put(name: str, layer: dict) -> dict:
        tensors[name] = layer["w"]
        if layer["scales"] is not None:
            tensors[f"{name}.scales"] = layer["scales"].astype(np.float32)
        tensors[f"{name}.bias"] = layer["b"]
        k = layer["w"].shape[1] if layer["scales"] is None else layer["scales"].shape[1] * 32
        return {"dtype": layer["dtype"], "N": int(layer["w"].shape[0]), "K": int(k)}

    for i in range(layers):
        q, k, v, o, fc1, fc2 = linears[i * 6:(i + 1) * 6]
        if len({q["dtype"], k["dtype"], v["dtype"]}) != 1:
            raise UserError(f"{path.name}: layer {i}'s q, k and v are of different dtypes")
        qkv = {"dtype": q["dtype"], "w": np.concatenate([q["w"], k["w"], v["w"]]),
               "scales": None if q["scales"] is None else np.concatenate([q["scales"], k["scales"], v["scales"]]),
               "b": np.concatenate([q["b"], k["b"], v["b"]])}
        for name, layer in (("qkv", qkv), ("o", o), ("fc1", fc1), ("fc2", fc2)):
            put(f"vision.{i}.{name}", layer)
        for j, role in ((2 * i, "ln1"), (2 * i + 1, "ln2")):
            tensors[f"vision.{i}.{role}"], tensors[f"vision.{i}.{role}.bias"] = norms[j]["w"], norms[j]["b"]
    post = norms[-1]
    tensors["vision.post"], tensors["vision.post.bias"] = post["w"], post["b"]
    out = [put(f"vision.aligner.{j}", layer) for j, layer in enumerate(linears[6 * layers:])]
    first = linears[:6]
    return {"desc": {"image_size": size, "patch_size": patch, "tokens": (size // patch) ** 2, "hidden_size": D,
                     "num_layers": layers, "num_heads": heads, "head_dim": D // heads,
                     "intermediate_size": int(first[4]["w"].shape[0]), "epsilon": norms[0]["eps"],
                     "scale": f["scale"], "dtype": first[0]["dtype"],
                     "aligner": [{**a, "gelu": j + 1 < len(out)} for j, a in enumerate(out)]},
            "tensors": tensors}
