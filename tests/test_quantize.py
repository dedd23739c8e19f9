"""`janusweb quantize` on the tiny bundle: WebGPU-safe ops, outputs close to fp32, manifest/config/report
records, atomic writing and one-line errors on bad input."""

import hashlib
import json
import os
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from janusweb.cli import main
from janusweb.manifest import file_digest
from janusweb.graphs import GRAPH_NAMES, OrtGraphs
from janusweb.quantize import driver
from janusweb.quantize.embedding import quantize_gathers
from janusweb.quantize.graph_io import WEBGPU_FORBIDDEN_OPS
from janusweb.quantize.report import Settings

# Graphs holding MatMul weights of at least one block (every one but the VQ decoder's, all convolutions).
WITH_MATMULS = set(GRAPH_NAMES) - {"image_decode"}
QUICK = Settings(text_steps=8, teacher_positions=32, image_steps=8, calls_per_graph=1)


def _copy(src, tmp_path_factory, name):
    out = tmp_path_factory.mktemp(name) / "tiny"
    shutil.copytree(src, out)
    return out


@pytest.fixture(scope="module")
def int8(tiny_bundle, tmp_path_factory):
    out = _copy(tiny_bundle, tmp_path_factory, "int8")
    assert main(["--quiet", "quantize", str(out), "--dtype", "int8"]) == 0
    return out


def _snapshot(root) -> dict:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _nodes(path, op_type):
    return [n for n in onnx.load(str(path)).graph.node if n.op_type == op_type]


def _attr(node, name):
    return next(onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name)


def test_int8_ops_are_webgpu_ops(int8):
    for name in GRAPH_NAMES:
        model = onnx.load(str(int8 / "onnx" / f"{name}_int8.onnx"))
        ops = {n.op_type for n in model.graph.node}
        assert not ops & WEBGPU_FORBIDDEN_OPS, name
        assert {n.op_type for n in model.graph.node if n.domain == "com.microsoft"} <= {"MatMulNBits",
                                                                                      "GatherBlockQuantized"}
        assert all(t.data_type == onnx.TensorProto.FLOAT for t in model.graph.initializer
                   if t.name in {n.input[1] for n in model.graph.node if n.op_type == "Conv"}), name
        matmuls = _nodes(int8 / "onnx" / f"{name}_int8.onnx", "MatMulNBits")
        assert bool(matmuls) == (name in WITH_MATMULS), name
        assert all(_attr(n, "bits") == 8 and _attr(n, "block_size") == 32 and "accuracy_level" not in
                   {a.name for a in n.attribute} for n in matmuls)
    (table,) = _nodes(int8 / "onnx" / "prepare_inputs_embeds_int8.onnx", "GatherBlockQuantized")
    assert _attr(table, "bits") == 8
    init = {t.name: t for t in onnx.load(str(int8 / "onnx" / "prepare_inputs_embeds_int8.onnx")).graph.initializer}
    assert init[table.input[0]].data_type == onnx.TensorProto.UINT8
    assert list(init[table.input[0]].dims) == [512, 64]  # one byte a weight: the 512 x 64 tiny table


def test_hard_linked_external_data_quantizes(tiny_bundle, tmp_path):
    """`janusweb build-web` links the bundle's files into the site; onnx.load refuses external data files with
    several links, so quantize reads them itself."""
    out = tmp_path / "tiny"
    shutil.copytree(tiny_bundle, out)
    os.link(out / "onnx" / "language_model_gqa.onnx_data", tmp_path / "site-copy.onnx_data")
    driver.quantize_bundle(out, "int8", report=False)
    assert (out / "onnx" / "language_model_gqa_int8.onnx").is_file()


def test_only_gathers_indexed_from_the_inputs_are_quantized():
    """A Gather with fixed indices (like the vision tower's position table) stays a float Gather: the page runs
    such nodes on the CPU EP, and onnxruntime-web's WASM build has no GatherBlockQuantized."""
    table = numpy_helper.from_array(np.arange(64 * 32, dtype=np.float32).reshape(64, 32), "table")
    positions = numpy_helper.from_array(np.arange(4, dtype=np.int64), "positions")
    fixed = numpy_helper.from_array(np.ones((16, 32), np.float32), "fixed_table")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Gather", ["table", "ids"], ["a"], name="by_input"),
         onnx.helper.make_node("Gather", ["fixed_table", "positions"], ["b"], name="by_constant")],
        "g", [onnx.helper.make_tensor_value_info("ids", onnx.TensorProto.INT64, [4])],
        [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [4, 32]) for n in ("a", "b")],
        [table, positions, fixed])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
    stats = quantize_gathers(model, 8, 32)
    assert stats.quantized == 1 and set(stats.skipped) == {"by_constant"}
    assert [n.op_type for n in model.graph.node] == ["GatherBlockQuantized", "Gather"]
    ids = np.array([3, 0, 63, 7], np.int64)
    a, b = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"ids": ids})
    np.testing.assert_array_equal(b, np.ones((4, 32), np.float32))
    np.testing.assert_allclose(a, numpy_helper.to_array(table)[ids], rtol=0.01, atol=0.5)


def test_int8_outputs_close_to_fp32(int8):
    """Independent of the report: each int8 graph on fresh inputs against its fp32 graph."""
    rng = np.random.default_rng(1)
    for name, feeds in {"lm_head": {"hidden_states": rng.standard_normal((2, 5, 64), np.float32)},
                        "gen_head": {"hidden_states": rng.standard_normal((3, 1, 64), np.float32)},
                        "gen_img_embeds": {"image_ids": rng.integers(0, 256, (2, 3))},
                        "prepare_inputs_embeds": {
                            "input_ids": rng.integers(6, 512, (1, 9)), "pixel_values": np.zeros((1, 0, 3, 64, 64),
                                                                                              np.float32),
                            "images_seq_mask": np.zeros((1, 9), bool),
                            "images_emb_mask": np.zeros((1, 0, 16), bool)}}.items():
        a, b = (ort.InferenceSession(str(int8 / "onnx" / f"{name}{s}.onnx")).run(None, feeds)[0].ravel()
                for s in ("", "_int8"))
        cos = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
        assert cos > 0.999 and np.abs(a - b).max() < 0.05 * np.abs(a).max(), (name, cos)


def test_int8_report(int8, capsys):
    report = json.loads((int8 / "quantize_report.json").read_text())["int8"]
    assert report["block_size"] == 32 and report["accuracy_level"] == 0
    assert "weak proxy" in report["weights_note"]
    for name in GRAPH_NAMES:
        g = report["graphs"][name]
        assert g["calls"] >= 1 and g["cosine"] > 0.999 and g["max_abs_diff"] < 0.1 * g["max_abs_fp32"], name
    assert report["graphs"]["image_decode"]["max_abs_diff"] == 0  # convolutions stay fp32
    assert report["graphs"]["gen_step"]["ids_agreement"] >= 0.9
    e = report["end_to_end"]
    assert e["text"]["steps"] == 64 and 0 <= e["text"]["agreement"] <= 1
    assert e["text"]["first_divergence"] is None or e["text"]["first_divergence"] >= 2
    assert e["teacher_forced"]["positions"] == 256 and e["teacher_forced"]["top1_agreement"] >= 0.9
    assert 0 <= e["teacher_forced"]["mean_kl"] < 2e-3
    assert e["image"]["steps"] == 16  # tiny: 16 image tokens (576 for Janus-Pro)
    assert e["image_decode_psnr_db"] is None  # image_decode int8 is the fp32 graph: identical decode
    assert e["conv_int8_simulated"]["convolutions"] > 0 and 20 < e["conv_int8_simulated"]["psnr_db"] < 80
    assert report["bytes"] < report["fp32_bytes"]


def test_int8_manifest_and_config(int8):
    manifest = json.loads((int8 / "manifest.json").read_text())
    for rel, entry in manifest["files"].items():
        data = (int8 / rel).read_bytes()
        assert len(data) == entry["bytes"] and hashlib.sha256(data).hexdigest() == entry["sha256"], rel
    on_disk = {p.relative_to(int8).as_posix() for p in int8.rglob("*") if p.is_file()} - {"manifest.json"}
    assert on_disk == set(manifest["files"])  # no temp folder left, nothing unlisted
    for name in GRAPH_NAMES:
        graph = manifest["graphs"][name]
        variant = graph["variants"]["int8"]
        assert graph["dtype"] == "fp32" and list(variant["files"]) == [f"onnx/{name}_int8.onnx"]
        assert variant["cosine_vs_fp32"] > 0.999 and variant["quantization"]["bits"] == 8
    assert manifest["quantization"]["int8"]["block_size"] == 32
    tjs = json.loads((int8 / "config.json").read_text())["transformers.js_config"]
    assert tjs["dtype"] == {name: "int8" for name in GRAPH_NAMES}
    assert tjs["use_external_data_format"]["language_model_int8.onnx"] is False
    graphs = OrtGraphs(int8, dtypes={name: "int8" for name in GRAPH_NAMES})
    assert set(graphs.sessions) == set(GRAPH_NAMES)


def test_int4_fp16_and_accuracy_level(int8, tmp_path_factory):
    """int4 (_q4) and fp16 beside int8 in one bundle; int8 with accuracy_level 4 (int8 activations) measured."""
    out = _copy(int8, tmp_path_factory, "more")
    q4 = driver.quantize_bundle(out, "int4", settings=QUICK)
    fp16 = driver.quantize_bundle(out, "fp16", settings=QUICK)
    level4 = driver.quantize_bundle(out, "int8", accuracy_level=4, settings=QUICK)
    for name in WITH_MATMULS:
        assert all(_attr(n, "bits") == 4 for n in _nodes(out / "onnx" / f"{name}_q4.onnx", "MatMulNBits"))
        assert all(_attr(n, "accuracy_level") == 4 for n in _nodes(out / "onnx" / f"{name}_int8.onnx", "MatMulNBits"))
    # gen_step's floats count only over steps whose sampled ids agree (cosine None if none did)
    for rep, floor, rel in ((q4, 0.97, 0.3), (fp16, 0.9999, 0.01), (level4, 0.999, 0.2)):
        assert all(rep["graphs"][name]["cosine"] is None or rep["graphs"][name]["cosine"] > floor
                   for name in GRAPH_NAMES), (rep["dtype"], floor)
        assert rep["graphs"]["language_model"]["cosine"] > floor
        # the fused WebGPU decoder, quantized the same way: hidden states against the fp32 language_model
        fused = rep["graphs"]["language_model_gqa"]["hidden_states_vs_fp32_language_model"].values()
        assert all(0 < c["max_abs_diff"] < rel * c["reference_abs_max"] for c in fused), (rep["dtype"], list(fused))
    assert fp16["bytes"] < 0.6 * fp16["fp32_bytes"] and q4["bytes"] < int8_bytes(int8)
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["graphs"]["lm_head"]["variants"]) == {"int8", "q4", "fp16"}
    assert manifest["quantization"]["int8"]["accuracy_level"] == 4
    assert set(json.loads((out / "quantize_report.json").read_text())) == {"int8", "q4", "fp16"}
    # int8 stays the transformers.js default; fp16 never is one
    assert json.loads((out / "config.json").read_text())["transformers.js_config"]["dtype"]["lm_head"] == "int8"


def int8_bytes(bundle) -> int:
    return json.loads((bundle / "manifest.json").read_text())["quantization"]["int8"]["bytes"]


def _fails_cleanly(capsys, bundle, *args):
    before = _snapshot(bundle)
    assert main(["--quiet", "quantize", str(bundle), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("janusweb: error:"), err
    assert _snapshot(bundle) == before
    return err


def test_bad_input(tiny_bundle, tmp_path, capsys):
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    assert "invalid choice: 'int3'" in _fails_cleanly(capsys, bundle, "--dtype", "int3")
    assert "power of two" in _fails_cleanly(capsys, bundle, "--dtype", "int8", "--block-size", "48")
    assert "not fp16" in _fails_cleanly(capsys, bundle, "--dtype", "fp16", "--block-size", "32")

    no_manifest = tmp_path / "no-manifest"
    shutil.copytree(tiny_bundle, no_manifest)
    (no_manifest / "manifest.json").unlink()
    assert "no manifest.json" in _fails_cleanly(capsys, no_manifest, "--dtype", "int8")

    assert driver.quantize_bundle(bundle, "int8", report=False)["dtype"] == "int8"
    shutil.copyfile(bundle / "onnx" / "lm_head_int8.onnx", bundle / "onnx" / "lm_head.onnx")
    assert "onnx/lm_head.onnx: " in _fails_cleanly(capsys, bundle, "--dtype", "int8")  # not the manifest's file
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["onnx/lm_head.onnx"] = file_digest(bundle / "onnx" / "lm_head.onnx")  # recorded as is
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    err = _fails_cleanly(capsys, bundle, "--dtype", "int8")
    assert "lm_head.onnx is already quantized (it has MatMulNBits)" in err


def test_failure_leaves_bundle_unchanged(int8, tmp_path, monkeypatch):
    bundle = tmp_path / "b"
    shutil.copytree(int8, bundle)
    before = _snapshot(bundle)

    def broken(*args, **kwargs):
        raise RuntimeError("measurement failed")

    monkeypatch.setattr(driver, "measure", broken)
    with pytest.raises(RuntimeError, match="measurement failed"):
        driver.quantize_bundle(bundle, "int8", block_size=16)
    assert _snapshot(bundle) == before
