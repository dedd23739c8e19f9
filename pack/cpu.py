"""The weights of the page's CPU engine (web/lib/engines/cpu/): `janusweb pack BUNDLE --engine cpu
--dtype int8` (or `janusweb cpu-pack`).

cpu/decoder{suffix}.json and its parts cpu/decoder{suffix}.0.bin, ... (pack/parts.py, as the WGSL pack's) hold what pack/wgsl.py's pack holds for the decoder layers (taken the same way,
byte for byte from onnx/language_model_gqa{suffix}.onnx: fp32 [N, K], or MatMulNBits' uint8 blocks and fp32
scales, 8-bit or 4-bit), plus the lm_head matrix from onnx/lm_head{suffix}.onnx and the per-token heads
(pack/cpu_heads.py: the token-embedding table of prepare_inputs_embeds{suffix}, gen_head{suffix} and
gen_img_embeds{suffix}), the vision tower (pack/cpu_vision.py: SigLIP and the aligner of
prepare_inputs_embeds{suffix}) and the VQ decoder (pack/cpu_vq.py: image_decode's fp32 weights and the program of
its ops), so that no part of a request needs an ONNX Runtime session. The JSON records each source graph's sha256
(the page refuses a pack whose sources changed).
"""

import json
from pathlib import Path

import numpy as np
import onnx

from janusweb.dtypes import dtype as lookup
from janusweb.dtypes import graph_file
from janusweb.errors import UserError
from janusweb.formats import PACKS as PACK_FORMATS
from janusweb.fused import STEM
from janusweb.integrity import graph_files, verify_files
from janusweb.pack import PACKERS
from janusweb.pack.cpu_heads import write_heads
from janusweb.pack.cpu_vision import vision_tower
from janusweb.pack.cpu_vq import vq_decoder
from janusweb.pack.parts import PART_BYTES, PartWriter
from janusweb.pack.wgsl import _array, build_pack

NAME = "cpu"
DTYPES = PACKERS[NAME].dtypes
FORMAT = PACK_FORMATS[NAME]
# the graphs a pack is made from besides the fused decoder; the role each plays in write_heads
HEADS = {"embed_tokens": "prepare_inputs_embeds", "gen_head": "gen_head", "gen_img_embeds": "gen_img_embeds"}
VQ = "image_decode"  # fp32 at every dtype (convolutions are not quantized)


def stem(dtype: str) -> str:
    return f"cpu/decoder{lookup(dtype).suffix}"


def head_matrix(path: Path) -> dict:
    """lm_head's one MatMul ([H, V] -> [V, H] rows) or MatMulNBits (its bytes and scales as they are)."""
    model = onnx.load(str(path), load_external_data=False)
    nodes = [n for n in model.graph.node if n.op_type in ("MatMul", "MatMulNBits")]
    if len(model.graph.node) != 1 or len(nodes) != 1:
        raise UserError(f"{path.name}: expected one MatMul or MatMulNBits node, found "
                        f"{[n.op_type for n in model.graph.node]}")
    node = nodes[0]
    inits = {t.name: t for t in model.graph.initializer}
    get = lambda name: _array(inits[name], path.parent)  # noqa: E731
    if node.op_type == "MatMul":
        return {"dtype": "fp32", "w": np.ascontiguousarray(get(node.input[1]).T), "scales": None}
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if attrs["bits"] not in (4, 8) or attrs["block_size"] != 32 or len(node.input) > 3 and node.input[3]:
        raise UserError(f"{path.name}: the CPU engine takes 4- or 8-bit blocks of 32 with the default zero point")
    return {"dtype": "int8" if attrs["bits"] == 8 else "q4", "w": get(node.input[1]), "scales": get(node.input[2])}


def check(bundle: Path, manifest: dict, dtype: str) -> None:
    for graph in (STEM, "lm_head", *HEADS.values(), VQ):
        entry = manifest["graphs"].get(graph)
        if entry is None:
            raise UserError(f"{bundle} has no {graph} graph" + (" (export without --no-fused)" if graph == STEM else ""))
        if dtype != "fp32" and graph != VQ and dtype not in entry.get("variants", {}):
            raise UserError(f"{bundle} has no {dtype} variant of {graph} (run janusweb quantize --dtype {dtype})")
    verify_files(bundle, manifest, graph_files(manifest, (STEM, "lm_head", *HEADS.values()), dtype)
                 + graph_files(manifest, (VQ,), "fp32"))  # before reading


def write(bundle: Path, manifest: dict, dtype: str, staged: Path, part_bytes: int = PART_BYTES) -> dict:
    """Write the pack under `staged`; returns its manifest entry {"json", "parts"} (bundle-relative paths)."""
    config = json.loads((bundle / "config.json").read_text())["janusweb"]
    fused, head_rel = graph_file(STEM, dtype), graph_file("lm_head", dtype)
    out = PartWriter(staged, stem(dtype), part_bytes)
    desc = build_pack(bundle / fused, config, dtype, out, manifest["files"][fused]["sha256"], bits=(4, 8))
    head = head_matrix(bundle / head_rel)
    out.put("lm_head", head["w"].astype(np.uint8 if head["scales"] is not None else np.float32))
    if head["scales"] is not None:
        out.put("lm_head.scales", head["scales"].astype(np.float32))
    desc |= {"format": FORMAT, "lm_head": {"dtype": head["dtype"], "vocab": int(head["w"].shape[0]),
                                           "source": Path(head_rel).name,
                                           "source_sha256": manifest["files"][head_rel]["sha256"]}}
    sources = {role: (bundle / graph_file(g, dtype), graph_file(g, dtype),
                      manifest["files"][graph_file(g, dtype)]["sha256"]) for role, g in HEADS.items()}
    write_heads(out.put, desc, sources)
    path, rel, sha = sources["embed_tokens"]  # prepare_inputs_embeds: the token table and the vision tower
    vision = vision_tower(path, json.loads((bundle / "config.json").read_text()))
    for name, array in vision["tensors"].items():
        out.put(name, array)
    desc["vision"] = {**vision["desc"], "source": Path(rel).name, "source_sha256": sha}
    rel = graph_file(VQ, "fp32")
    vq = vq_decoder(bundle / rel, config["num_image_tokens"])
    for name, array in vq["tensors"].items():
        out.put(name, array)
    desc["vq"] = {**vq["desc"], "source": Path(rel).name, "source_sha256": manifest["files"][rel]["sha256"]}
    entry = {"json": f"{stem(dtype)}.json", "parts": out.close()}
    (staged / entry["json"]).write_text(json.dumps(desc, indent=1) + "\n")
    return entry
