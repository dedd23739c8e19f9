"""`janusweb wgsl-pack`: the decoder's weights for the page's WGSL kernels, taken from the fused graph. The pack
must hold the graph's own numbers (fp32 transposed to [N, K]; int8 blocks and scales byte for byte), the shapes
the kernels are compiled with, and be listed in the manifest; bad requests fail with one clear line. (The page
test runs the kernels on these packs against the Python reference: tests/test_web_page.py, kv=wgsl.)"""

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from janusweb.cli import main
from janusweb.errors import UserError
from janusweb.manifest import file_digest
from janusweb.fused import STEM
from janusweb.pack.driver import write_packs
from janusweb.quantize.driver import quantize_bundle


@pytest.fixture(scope="module")
def bundle(tiny_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("wgsl") / "tiny"
    shutil.copytree(tiny_bundle, out)
    quantize_bundle(out, "int8", report=False)
    quantize_bundle(out, "q4", report=False)
    assert main(["--quiet", "wgsl-pack", str(out), "--dtype", "fp32,int8,q4"]) == 0
    return out


def _tensor(bundle, desc: dict, name: str) -> np.ndarray:
    t = desc["tensors"][name]
    suffix = "" if desc["dtype"] == "fp32" else "_" + desc["dtype"]
    raw = np.fromfile(bundle / "wgsl" / f"decoder{suffix}.{t['part']}.bin", np.uint8, count=t["bytes"],
                      offset=t["offset"])
    return (raw if t["type"] == "u8" else raw.view(np.float32)).reshape(t["shape"])


def _initializers(path) -> dict:
    model = onnx.load(str(path))
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def test_fp32_pack_holds_the_fused_graphs_weights(bundle):
    desc = json.loads((bundle / "wgsl" / "decoder.json").read_text())
    config = json.loads((bundle / "config.json").read_text())
    text = config["language_config"]
    assert (desc["hidden_size"], desc["intermediate_size"], desc["num_layers"], desc["num_heads"],
            desc["num_key_value_heads"], desc["head_dim"]) == (
        text["hidden_size"], text["intermediate_size"], text["num_hidden_layers"], text["num_attention_heads"],
        text["num_key_value_heads"], text["head_dim"])
    assert desc["scale"] == pytest.approx(text["head_dim"] ** -0.5) and desc["epsilon"] == pytest.approx(
        text["rms_norm_eps"])
    init = _initializers(bundle / "onnx" / f"{STEM}.onnx")
    for i in range(desc["num_layers"]):
        for role, name in (("qkv", "attn.qkv_proj"), ("o", "attn.o_proj"), ("gate", "mlp.gate_proj"),
                           ("up", "mlp.up_proj"), ("down", "mlp.down_proj")):
            np.testing.assert_array_equal(_tensor(bundle, desc, f"layers.{i}.{role}"),
                                          init[f"model.layers.{i}.{name}.MatMul.weight"].T)
        np.testing.assert_array_equal(_tensor(bundle, desc, f"layers.{i}.ln1"),
                                      init[f"model.layers.{i}.input_layernorm.weight"])
    np.testing.assert_array_equal(_tensor(bundle, desc, "cos"), init["cos_cache"])
    assert all(t["offset"] % 256 == 0 for t in desc["tensors"].values())


@pytest.mark.parametrize(("dtype", "suffix"), [("int8", "Q8"), ("q4", "Q4")])
def test_quantized_pack_holds_the_matmulnbits_bytes_and_scales(bundle, dtype, suffix):
    desc = json.loads((bundle / "wgsl" / f"decoder_{dtype}.json").read_text())
    init = _initializers(bundle / "onnx" / f"{STEM}_{dtype}.onnx")
    assert desc["block_size"] == 32 and desc["source"] == f"{STEM}_{dtype}.onnx" and desc["dtype"] == dtype
    for i in range(desc["num_layers"]):
        for role, name in (("qkv", "attn.qkv_proj"), ("o", "attn.o_proj"), ("gate", "mlp.gate_proj"),
                           ("up", "mlp.up_proj"), ("down", "mlp.down_proj")):
            w = _tensor(bundle, desc, f"layers.{i}.{role}")
            assert w.dtype == np.uint8 and w.shape[-1] == (32 if dtype == "int8" else 16)
            np.testing.assert_array_equal(w, init[f"model.layers.{i}.{name}.MatMul.weight_{suffix}"])
            np.testing.assert_array_equal(_tensor(bundle, desc, f"layers.{i}.{role}.scales"),
                                          init[f"model.layers.{i}.{name}.MatMul.weight_scales"])


def test_manifest_lists_the_packs_and_their_source(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["wgsl"] == {  # a small pack is one part
        "fp32": {"json": "wgsl/decoder.json", "parts": ["wgsl/decoder.0.bin"]},
        "int8": {"json": "wgsl/decoder_int8.json", "parts": ["wgsl/decoder_int8.0.bin"]},
        "q4": {"json": "wgsl/decoder_q4.json", "parts": ["wgsl/decoder_q4.0.bin"]}}
    for entry in manifest["wgsl"].values():
        for rel in [entry["json"], *entry["parts"]]:
            assert manifest["files"][rel] == file_digest(bundle / rel)
        desc = json.loads((bundle / entry["json"]).read_text())
        assert desc["source_sha256"] == manifest["files"][f"onnx/{desc['source']}"]["sha256"]
    assert not [p for p in (bundle / "wgsl").iterdir() if p.name.startswith(".")]  # no staging left behind


def test_manifest_records_the_largest_buffer_of_every_variant_and_pack(bundle):
    """The page compares these with the adapter's limits before downloading: each graph file's largest
    initializer (as numpy holds it) and each pack's largest tensor (as the .bin holds it)."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    buffers = manifest["buffers"]
    for graph in (STEM, "lm_head", "prepare_inputs_embeds"):
        for dtype, suffix in (("fp32", ""), ("int8", "_int8"), ("q4", "_q4")):
            arrays = _initializers(bundle / "onnx" / f"{graph}{suffix}.onnx")
            top = max(arrays, key=lambda k: arrays[k].nbytes)
            assert buffers["variants"][graph][dtype] == {"tensor": top, "bytes": arrays[top].nbytes}
    for dtype, entry in manifest["wgsl"].items():
        desc = json.loads((bundle / entry["json"]).read_text())
        sizes = {name: _tensor(bundle, desc, name).nbytes for name in desc["tensors"]}
        top = max(sizes, key=sizes.get)
        assert buffers["packs"]["wgsl"][dtype] == {"tensor": top, "bytes": sizes[top]}


@pytest.fixture(scope="module")
def parted(bundle, tmp_path_factory):
    """The packs again in parts of 512 KiB (the tiny fp32 pack is 1.4 MB): three parts."""
    out = tmp_path_factory.mktemp("wgsl-parts") / "tiny"
    shutil.copytree(bundle, out)
    write_packs(out, "wgsl", ["fp32", "int8", "q4"], part_bytes=PART)
    return out


PART = 512 * 1024  # cos and sin (16384 x 8 fp32) are one part each


@pytest.mark.parametrize("dtype", ["fp32", "int8", "q4"])
def test_pack_in_parts_holds_every_tensor_byte_for_byte(bundle, parted, dtype):
    """Forced small parts: each part at most the part size, listed with its size and sha256; every tensor whole
    in one part, 256-byte aligned there, and equal byte for byte to the one-part pack's (whose tensors the tests
    above check against the graph); the one-part pack's files leave the bundle and its manifest."""
    manifest = json.loads((parted / "manifest.json").read_text())
    entry = manifest["wgsl"][dtype]
    suffix = "" if dtype == "fp32" else "_" + dtype
    assert entry["parts"] == [f"wgsl/decoder{suffix}.{i}.bin" for i in range(len(entry["parts"]))]
    assert len(entry["parts"]) > 2
    for rel in entry["parts"]:
        assert manifest["files"][rel] == file_digest(parted / rel) and 0 < (parted / rel).stat().st_size <= PART
    assert f"wgsl/decoder{suffix}.0.bin" in manifest["files"]
    desc = json.loads((parted / entry["json"]).read_text())
    whole = json.loads((bundle / entry["json"]).read_text())
    assert {k: v for k, v in desc.items() if k != "tensors"} == {k: v for k, v in whole.items() if k != "tensors"}
    assert list(desc["tensors"]) == list(whole["tensors"]) and len({t["part"] for t in desc["tensors"].values()}) > 2
    for name, t in desc["tensors"].items():
        assert t["offset"] % 256 == 0 and t["offset"] + t["bytes"] <= (parted / entry["parts"][t["part"]]).stat().st_size
        np.testing.assert_array_equal(_tensor(parted, desc, name), _tensor(bundle, whole, name))
    assert manifest["buffers"]["packs"]["wgsl"][dtype] == json.loads((bundle / "manifest.json").read_text())[
        "buffers"]["packs"]["wgsl"][dtype]


def test_repack_removes_the_parts_it_no_longer_has(parted, tmp_path):
    out = tmp_path / "tiny"
    shutil.copytree(parted, out)
    assert main(["--quiet", "wgsl-pack", str(out), "--dtype", "fp32"]) == 0  # 1 GiB parts again: one
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["wgsl"]["fp32"]["parts"] == ["wgsl/decoder.0.bin"]
    assert sorted(p.name for p in (out / "wgsl").glob("decoder.*.bin")) == ["decoder.0.bin"]
    assert not [f for f in manifest["files"] if f.startswith("wgsl/decoder.") and f != "wgsl/decoder.0.bin"
                and f.endswith(".bin")]


def test_a_tensor_larger_than_a_part_is_refused_by_name(bundle, tmp_path, capsys):
    out = tmp_path / "tiny"
    shutil.copytree(bundle, out)
    before = (out / "manifest.json").read_text()
    with pytest.raises(UserError, match=r"^layers\.0\.qkv is \d+ bytes, more than a pack part holds \(4096 bytes\)$"):
        write_packs(out, "wgsl", ["fp32"], part_bytes=4096)
    assert (out / "manifest.json").read_text() == before and not [p for p in out.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(("args", "message"), [
    (["--dtype", "fp16"], "fp16: WGSL packs are made for fp32, int8, q4"),
    (["--dtype", "int8,int4"], "int4: WGSL packs are made for fp32, int8, q4"),
])
def test_bad_dtype_is_one_clear_line(bundle, capsys, args, message):
    assert main(["--quiet", "wgsl-pack", str(bundle), *args]) != 0
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_missing_variant_and_missing_bundle(tiny_bundle, tmp_path, capsys):
    assert main(["--quiet", "wgsl-pack", str(tiny_bundle), "--dtype", "int8"]) != 0
    assert "no int8 variant of language_model_gqa (run janusweb quantize --dtype int8)" in capsys.readouterr().err
    assert main(["--quiet", "wgsl-pack", str(tmp_path), "--dtype", "fp32"]) != 0
    assert "has no manifest.json" in capsys.readouterr().err
    assert not (tiny_bundle / "wgsl").exists()  # the refused call wrote nothing into the bundle


def test_bundle_without_the_fused_graph(tiny_bundle, tmp_path, capsys):
    out = tmp_path / "tiny"
    shutil.copytree(tiny_bundle, out)
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["graphs"][STEM]  # as `janusweb export --no-fused` writes it
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert main(["--quiet", "wgsl-pack", str(out), "--dtype", "fp32"]) != 0
    assert "has no language_model_gqa graph (export without --no-fused)" in capsys.readouterr().err
