"""The two ends of an image on the CPU engine, under Node on the tiny bundle's CPU packs:
- the vision tower (web/lib/engines/cpu/vision.c, vision.js; pack/cpu_vision.py's weights): an image's features
  equal what onnxruntime's prepare_inputs_embeds gives for the image's positions, on the graph the pack was made from
  (fp32; int8 and q4 at accuracy_level 4, the kernels' int8 activations), 1 and 2 threads; and against the fp32
  graph, the quantized towers' cosine (each patch's feature row);
- the VQ decoder (vq.c, conv.c: Winograd F(4x4, 3x3) convolutions; pack/cpu_vq.py): the pixels of two images'
  tokens within the export's tolerance for decoded images (1e-3) of onnxruntime's image_decode, 1 and 2 threads;
  both on the 32-bit and the Memory64 build."""

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
import pytest

import cpu_reference as ref
from janusweb.accuracy_level import accuracy_view
from janusweb.cli import main
from janusweb.dtypes import graph_file
from janusweb.manifest import file_digest
from janusweb.metrics import cosine
from node_kernels import assert_close, needs_node, run

pytestmark = needs_node


# 1 and 2 threads; and the Memory64 build (the tables' slots 8 bytes, 64-bit addresses) at 2 threads
BUILDS = [(1, "kernels.wasm"), (2, "kernels-mt.wasm"), (2, "kernels-mt-m64.wasm")]


@pytest.fixture(scope="module")
def bundle(tiny_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("cpu-vision") / "bundle"
    shutil.copytree(tiny_bundle, out)
    for dtype in ("int8", "q4"):
        assert main(["--quiet", "quantize", str(out), "--dtype", dtype, "--no-report"]) == 0
    assert main(["--quiet", "pack", "cpu", str(out), "--dtype", "fp32,int8,q4"]) == 0
    return out


def reference(bundle, tmp_path, dtype: str, pixels: np.ndarray) -> np.ndarray:
    """prepare_inputs_embeds{suffix} on onnxruntime (quantized graphs at accuracy_level 4): the features of the
    prompt's image positions, [T, H]."""
    rel = graph_file("prepare_inputs_embeds", dtype)
    graph = bundle / rel if dtype == "fp32" else accuracy_view(bundle, tmp_path / f"level4-{dtype}", [rel], 4) / rel
    config = json.loads((bundle / "config.json").read_text())["janusweb"]
    T = config["num_image_tokens"]
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(graph), opts, providers=["CPUExecutionProvider"])
    out = session.run(None, {"input_ids": np.full((1, T), config["image_token_id"], np.int64),
                             "pixel_values": pixels[None, None], "images_seq_mask": np.ones((1, T), bool),
                             "images_emb_mask": np.ones((1, 1, T), bool)})[0]
    return out[0]


@pytest.mark.parametrize("threads,build", BUILDS)
@pytest.mark.parametrize("dtype", ["fp32", "int8", "q4"])
def test_vision_tower_matches_onnxruntime(kernels_wasm, bundle, tmp_path, dtype, threads, build):
    size = json.loads((bundle / "config.json").read_text())["janusweb"]["image_size"]
    pixels = np.random.default_rng(3).uniform(-1, 1, (3, size, size)).astype(np.float32)
    pack = bundle / f"cpu/decoder{'' if dtype == 'fp32' else '_' + dtype}"
    got = run(tmp_path, {"wasm": str(kernels_wasm / build), "op": "vision", "pack": str(pack), "threads": threads},
              pixels=pixels)
    want = reference(bundle, tmp_path, dtype, pixels)
    got = got.reshape(want.shape)
    if dtype == "fp32":
        assert_close(got, want, rtol=1e-4)
    else:
        ref.assert_ties(got, want)
        fp32 = reference(bundle, tmp_path, "fp32", pixels)
        # random tiny weights: 4-bit blocks lose more than 8-bit ones (a measure, bounded loosely)
        assert min(cosine(g, f) for g, f in zip(got, fp32)) > {"int8": 0.999, "q4": 0.95}[dtype]


@pytest.mark.parametrize("threads,build", BUILDS)
def test_vq_decoder_matches_onnxruntime(kernels_wasm, bundle, tmp_path, threads, build):
    config = json.loads((bundle / "config.json").read_text())["janusweb"]
    n, T = 2, config["num_image_tokens"]
    tokens = np.random.default_rng(4).integers(0, config["codebook_size"], (n, T)).astype(np.uint32)
    got = run(tmp_path, {"wasm": str(kernels_wasm / build), "op": "vq", "pack": str(bundle / "cpu/decoder_int8"),
                         "threads": threads, "n": n}, tokens=tokens)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(bundle / graph_file("image_decode", "fp32")), opts,
                                   providers=["CPUExecutionProvider"])
    want = session.run(None, {"generated_tokens": tokens.astype(np.int64)})[0]
    got = got.reshape(want.shape)
    assert np.abs(got - want).max() <= 1e-3, np.abs(got - want).max()
    assert np.abs(want).max() > 0.1  # an image, not a blank


def test_vision_tower_with_the_position_table_unfolded(kernels_wasm, tiny_bundle, tmp_path):
    """At Janus-Pro's widths (576 x 1024) the exporter leaves the position table as Gather(weight, position_ids), two
    constants, instead of folding it as at tiny's: the pack takes that form too, and the tower still equals
    onnxruntime on that graph."""
    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, out)
    rel = graph_file("prepare_inputs_embeds", "fp32")
    graph = onnx.load(str(out / rel))
    inits = {t.name: t for t in graph.graph.initializer}
    add = next(n for n in graph.graph.node if n.op_type == "Add" and any(
        i in inits and len(inits[i].dims) == 3 for i in n.input))
    name = next(i for i in add.input if i in inits)
    table = numpy_helper.to_array(inits[name])[0]  # [T, D]
    graph.graph.initializer.remove(inits[name])
    graph.graph.initializer.extend([numpy_helper.from_array(table, "pos.weight"),
                                    numpy_helper.from_array(np.arange(len(table))[None], "pos.ids")])
    at = list(graph.graph.node).index(add)
    graph.graph.node.insert(at, onnx.helper.make_node("Gather", ["pos.weight", "pos.ids"], [name]))
    onnx.save(graph, str(out / rel))
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"][rel] |= file_digest(out / rel)
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert main(["--quiet", "pack", "cpu", str(out), "--dtype", "fp32"]) == 0

    size = json.loads((out / "config.json").read_text())["janusweb"]["image_size"]
    pixels = np.random.default_rng(5).uniform(-1, 1, (3, size, size)).astype(np.float32)
    got = run(tmp_path, {"wasm": str(kernels_wasm / "kernels.wasm"), "op": "vision", "pack": str(out / "cpu/decoder"),
                         "threads": 1}, pixels=pixels)
    want = reference(out, tmp_path, "fp32", pixels)
    assert_close(got.reshape(want.shape), want, rtol=1e-4)
    assert_close(want, reference(tiny_bundle, tmp_path, "fp32", pixels), rtol=1e-6)  # the rewrite changed nothing
