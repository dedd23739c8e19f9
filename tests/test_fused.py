"""The fused language_model (onnxruntime-genai builder: GroupQueryAttention with a KV buffer bound in place) on
the tiny bundle: its ops and inputs, hidden states against language_model.onnx, and the reference loops
giving the fp32 tokens through the adapter."""

import json
import shutil

import numpy as np
import onnx
import pytest
from tokenizers import Tokenizer

from janusweb.fused import STEM, FusedGraphs, FusedLanguageModel, hidden_state_diff
from janusweb.generate import ModelDims, generate_images, generate_text
from janusweb.graphs import OrtGraphs
from janusweb.prompts import SpecialIds, generation_prompt, understanding_inputs
from janusweb.quantize.driver import quantize_bundle
from janusweb.quantize.graph_io import WEBGPU_FORBIDDEN_OPS
from janusweb.sampling import uniforms

# Ops the graph may hold: each has a kernel in onnxruntime-web 1.30's WebGPU EP.
WEBGPU_OPS = {"GroupQueryAttention", "SkipSimplifiedLayerNormalization", "SimplifiedLayerNormalization",
              "MatMulNBits", "MatMul", "Sigmoid", "Mul", "Cast", "ReduceSum", "ReduceMax", "Sub", "Constant"}


@pytest.fixture(scope="module")
def bundle(tiny_bundle, tmp_path_factory):
    """The exported tiny bundle (which holds the fp32 fused decoder) quantized to int8 (report skipped)."""
    out = tmp_path_factory.mktemp("fused") / "tiny"
    shutil.copytree(tiny_bundle, out)
    quantize_bundle(out, "int8", report=False)
    manifest = json.loads((out / "manifest.json").read_text())
    return out, manifest["graphs"][STEM]


def _graph(bundle_dir, name):
    return onnx.load(str(bundle_dir / "onnx" / name))


def test_files_and_manifest_entry(bundle):
    out, entry = bundle
    assert set(entry["files"]) == {"onnx/language_model_gqa.onnx", "onnx/language_model_gqa.onnx_data"}
    assert "onnx/language_model_gqa_int8.onnx" in entry["variants"]["int8"]["files"]  # (+ _data when large)
    for files in (entry["files"], entry["variants"]["int8"]["files"]):
        for rel, digest in files.items():
            assert (out / rel).stat().st_size == digest["bytes"]
    assert entry["attention_mask"] == "capacity" and entry["replaces"] == "language_model"
    assert entry["provider_options"] == [{"webgpu": {"enableGraphCapture": "1", "validationMode": "disabled"}}]
    assert not list(out.glob(".fused-*")) and not list(out.glob(".quantize-*"))
    # the six transformers.js graphs' config is untouched by the extra graph
    config = json.loads((out / "config.json").read_text())
    assert not any("gqa" in name for name in config["transformers.js_config"]["use_external_data_format"])


def test_export_checked_it_against_language_model(tiny_bundle):
    """`janusweb export` runs the check and puts it in the manifest; a broken fused graph would fail there."""
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    check = manifest["graphs"][STEM]["check_vs_language_model"]
    assert set(check) == {"batch=1", "batch=2"}
    assert all(0 <= c["max_abs_diff"] < 1e-5 and c["reference_abs_max"] > 0.1 for c in check.values())


def test_fused_ops(bundle):
    out, _ = bundle
    for precision, name in (("fp32", "language_model_gqa.onnx"), ("int8", "language_model_gqa_int8.onnx")):
        model = _graph(out, name)
        ops = {n.op_type for n in model.graph.node}
        assert ops <= WEBGPU_OPS and not ops & WEBGPU_FORBIDDEN_OPS, ops - WEBGPU_OPS
        assert "Shape" not in ops  # graph capture: no shape computed on the CPU
        gqa = [n for n in model.graph.node if n.op_type == "GroupQueryAttention"]
        assert len(gqa) == 2  # one per layer of tiny
        assert all(onnx.helper.get_attribute_value(a) == 1 for n in gqa for a in n.attribute if a.name == "do_rotary")
        assert {"SkipSimplifiedLayerNormalization", "SimplifiedLayerNormalization"} <= ops
        assert [i.name for i in model.graph.input][:2] == ["attention_mask", "inputs_embeds"]
        # int32 mask, no int64 Cast (the WebGPU EP has none outside graph capture): see export/fused.finish_graph
        assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT32
        assert not [n for n in model.graph.node if n.op_type == "Cast" and "attention_mask" in n.input]
        assert "position_ids" not in {i.name for i in model.graph.input}
        matmuls = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
        if precision == "int8":
            assert len(matmuls) == 10 and "MatMul" not in ops  # per layer: qkv (packed), o, gate, up, down
            attrs = [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in matmuls]
            assert all(a["bits"] == 8 and a["block_size"] == 32 for a in attrs)
        else:
            assert not matmuls


def test_int8_hidden_states_near_fp32(bundle):
    out, _ = bundle
    config = json.loads((out / "config.json").read_text())["janusweb"]
    fp32 = out / "onnx" / "language_model.onnx"
    int8 = hidden_state_diff(out / "onnx" / "language_model_gqa_int8.onnx", fp32, config)
    plain = hidden_state_diff(out / "onnx" / "language_model_gqa.onnx", fp32, config)
    assert all(1e-4 < c["max_abs_diff"] < 0.2 for c in int8.values())  # quantized: near, not equal
    assert all(c["max_abs_diff"] < 1e-5 for c in plain.values())


def test_generation_matches_fp32_tokens(bundle):
    out, _ = bundle
    ref = OrtGraphs(out)
    fused = FusedGraphs(out, "fp32", capacity=128)
    dims = ModelDims.from_bundle_config(ref.config)
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    ids = SpecialIds.from_tokenizer(tok)
    pixels = np.random.default_rng(0).uniform(-1, 1, (1, 1, 3, dims.image_size, dims.image_size))
    inputs = understanding_inputs(tok, ids, "Describe this image in detail.", dims.num_image_tokens)
    expected = generate_text(ref, dims, inputs, 24, pixel_values=pixels.astype(np.float32))
    assert generate_text(fused, dims, inputs, 24, pixel_values=pixels.astype(np.float32)) == expected
    prompt = generation_prompt(tok, ids, "A watercolor painting of mountains at sunset.")
    for n in (1, 2):  # CFG: batch 2 and batch 4, rows of one length
        draws = uniforms(n, n * dims.num_image_tokens).reshape(n, -1)
        a = generate_images(ref, dims, ids, prompt, draws)
        b = generate_images(fused, dims, ids, prompt, draws)
        np.testing.assert_array_equal(a.tokens, b.tokens)
        np.testing.assert_array_equal(a.images, b.images)


def _feeds(dims, batch, seq, past, hidden=64):
    empty = np.zeros((batch, dims.kv_heads, past, dims.head_dim), np.float32)
    return {"inputs_embeds": np.ones((batch, seq, hidden), np.float32),
            "attention_mask": np.ones((batch, past + seq), np.int64),
            "position_ids": np.tile(np.arange(past, past + seq), (batch, 1)),
            **{f"past_key_values.{i}.{k}": empty for i in range(dims.layers) for k in ("key", "value")}}


def test_kv_buffers_bound_in_place(bundle):
    out, _ = bundle
    dims = ModelDims(2, 4, 16, 64, 16)
    lm = FusedLanguageModel(out / "onnx" / "language_model_gqa.onnx", dims, capacity=8)
    first = lm.run(_feeds(dims, 2, 5, 0))
    buffers = [id(b) for b in lm.buffers]
    feeds = _feeds(dims, 2, 1, 5) | {f"past_key_values.{i // 2}.{('key', 'value')[i % 2]}": t
                                     for i, t in enumerate(first[1:])}
    second = lm.run(feeds)
    assert [id(b) for b in lm.buffers] == buffers and lm.buffers[0].shape == (2, 4, 8, 16)
    assert all(np.shares_memory(view, buf) for view, buf in zip(second[1:], lm.buffers))
    assert second[1].shape == (2, 4, 6, 16) and np.abs(lm.buffers[0][:, :, 5]).sum() > 0
    assert not lm.buffers[0][:, :, 6:].any()  # nothing written past the filled positions
    with pytest.raises(ValueError, match="holds 8 positions"):
        lm.run(_feeds(dims, 1, 9, 0))
    padded = _feeds(dims, 2, 3, 0)
    padded["attention_mask"][1, 0] = 0
    with pytest.raises(ValueError, match="unpadded rows"):
        lm.run(padded)


def test_foreign_cache_is_copied_in(bundle):
    """A cache written by language_model.onnx carries on in the fused graph (copied into its buffers)."""
    out, _ = bundle
    dims = ModelDims(2, 4, 16, 64, 16)
    reference = OrtGraphs(out).sessions["language_model"]
    lm = FusedLanguageModel(out / "onnx" / "language_model_gqa.onnx", dims, capacity=8)
    rng = np.random.default_rng(3)
    prefill = _feeds(dims, 2, 4, 0) | {"inputs_embeds": rng.standard_normal((2, 4, 64)).astype(np.float32)}
    cache = reference.run(None, prefill)[1:]
    names = [f"past_key_values.{i // 2}.{('key', 'value')[i % 2]}" for i in range(4)]
    step = _feeds(dims, 2, 1, 4) | dict(zip(names, cache))
    step["inputs_embeds"] = rng.standard_normal((2, 1, 64)).astype(np.float32)
    np.testing.assert_allclose(lm.run(step)[0], reference.run(None, step)[0], atol=1e-5)
