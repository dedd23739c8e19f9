"""`janusweb export tiny`: bundle layout, manifest, parity against PyTorch/transformers, atomic writing."""

import hashlib
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from tokenizers import Tokenizer

from janusweb.cli import main
from janusweb.export import onnx_export
from janusweb.export.checkpoint import load_source
from janusweb.export.specs import graph_specs
from janusweb.export.validate import transformers_greedy
from janusweb.fused import STEM as FUSED
from janusweb.generate import ModelDims, generate_images, generate_text
from janusweb.graphs import GRAPH_NAMES, OrtGraphs, TorchGraphs
from janusweb.prompts import SpecialIds, generation_prompt, understanding_inputs
from janusweb.sampling import uniforms

# The tensor names transformers.js (MultiModalityCausalLM) feeds and reads.
TRANSFORMERS_JS_IO = {
    "prepare_inputs_embeds": (["input_ids", "pixel_values", "images_seq_mask", "images_emb_mask"], ["inputs_embeds"]),
    "lm_head": (["hidden_states"], ["logits"]),
    "gen_head": (["hidden_states"], ["logits"]),
    "gen_img_embeds": (["image_ids"], ["inputs_embeds"]),
    "image_decode": (["generated_tokens"], ["decoded_image"]),
}


@pytest.fixture(scope="module")
def reference():
    src = load_source("tiny", 0)
    yield src
    shutil.rmtree(src.tokenizer_dir, ignore_errors=True)


def _session(bundle, name):
    return ort.InferenceSession(str(bundle / "onnx" / f"{name}.onnx"), providers=["CPUExecutionProvider"])


def test_bundle_files_and_manifest(tiny_bundle):
    for name in ("config.json", "generation_config.json", "preprocessor_config.json", "processor_config.json",
                 "tokenizer.json", "tokenizer_config.json", "manifest.json"):
        assert (tiny_bundle / name).is_file(), name
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    assert set(manifest["graphs"]) == set(GRAPH_NAMES) | {FUSED}  # + the WebGPU decoder
    for rel, entry in manifest["files"].items():
        data = (tiny_bundle / rel).read_bytes()
        assert len(data) == entry["bytes"] and hashlib.sha256(data).hexdigest() == entry["sha256"], rel
    for name, graph in manifest["graphs"].items():
        s = _session(tiny_bundle, name)
        assert [i.name for i in s.get_inputs()] == [t["name"] for t in graph["inputs"]]
        assert [o.name for o in s.get_outputs()] == [t["name"] for t in graph["outputs"]]
        checks = graph.get("check_vs_language_model", {}).values()  # the fused decoder: against language_model
        assert graph.get("max_abs_diff_vs_pytorch", max((c["max_abs_diff"] for c in checks), default=1)) < 1e-3
    assert manifest["validation"]["graphs_ok"] and manifest["validation"]["end_to_end"]["ok"]
    assert json.loads((tiny_bundle / "generation_config.json").read_text())["guidance_scale"] == 5
    config = json.loads((tiny_bundle / "config.json").read_text())
    assert config["model_type"] == "multi_modality" and "transformers.js_config" in config


def test_transformers_js_tensor_names(tiny_bundle):
    for name, (inputs, outputs) in TRANSFORMERS_JS_IO.items():
        s = _session(tiny_bundle, name)
        assert [i.name for i in s.get_inputs()] == inputs and [o.name for o in s.get_outputs()] == outputs
    lm = _session(tiny_bundle, "language_model")
    layers = json.loads((tiny_bundle / "config.json").read_text())["language_config"]["num_hidden_layers"]
    kv = [f"past_key_values.{i}.{k}" for i in range(layers) for k in ("key", "value")]
    assert [i.name for i in lm.get_inputs()] == ["inputs_embeds", "attention_mask", "position_ids", *kv]
    assert [o.name for o in lm.get_outputs()] == ["hidden_states"] + [n.replace("past_key_values", "present")
                                                                      for n in kv]


def test_node_names_are_compact(tiny_bundle):
    """The page names the CPU-side nodes of prepare_inputs_embeds in one onnxruntime-web option of at most 8192
    characters: every exported node is n<base-36 index> (the 1B vision tower's 842 nodes then need ~4k)."""
    for name in GRAPH_NAMES:
        model = onnx.load(str(tiny_bundle / "onnx" / f"{name}.onnx"), load_external_data=False)
        names = [n.name for n in model.graph.node]
        assert all(re.fullmatch(r"n[0-9a-z]+", n) for n in names), name
        assert len(set(names)) == len(names), name
    assert [n.name for n in model.graph.node][:3] == ["n0", "n1", "n2"]


def test_text_only_step_with_384px_empty_pixels(tiny_bundle, reference):
    """transformers.js feeds pixel_values [0,0,3,384,384] on text steps whatever the image size."""
    ids = np.array([[5, 9, 30]], np.int64)
    out = _session(tiny_bundle, "prepare_inputs_embeds").run(None, {
        "input_ids": ids, "pixel_values": np.zeros((0, 0, 3, 384, 384), np.float32),
        "images_seq_mask": np.zeros((1, 3), bool), "images_emb_mask": np.zeros((1, 0, 16), bool)})[0]
    with torch.no_grad():
        ref = reference.model.get_input_embeddings()(torch.from_numpy(ids)).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-6)


def test_image_prompt_embeds_match_transformers(tiny_bundle, reference):
    """The image features land where transformers' own JanusModel puts them."""
    model = reference.model
    tok = Tokenizer.from_file(str(reference.tokenizer_dir / "tokenizer.json"))
    inputs = understanding_inputs(tok, SpecialIds.from_tokenizer(tok), "What is this?", 16)
    pixels = np.random.default_rng(3).uniform(-1, 1, (1, 1, 3, 64, 64)).astype(np.float32)
    ours = _session(tiny_bundle, "prepare_inputs_embeds").run(None, {**inputs, "pixel_values": pixels})[0]
    with torch.no_grad():
        ids = torch.from_numpy(inputs["input_ids"])
        embeds = model.get_input_embeddings()(ids)
        feats = model.model.get_image_features(torch.from_numpy(pixels[0])).pooler_output.reshape(-1, 64)
        mask = (ids == model.config.image_token_id).unsqueeze(-1).expand_as(embeds)
        ref = embeds.masked_scatter(mask, feats).numpy()
    assert inputs["images_seq_mask"].sum() == 16
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_end_to_end_against_transformers(tiny_bundle, reference):
    """Greedy text after an image prompt equals transformers.generate; CFG image tokens equal the PyTorch loop."""
    graphs = OrtGraphs(tiny_bundle)
    dims = ModelDims.from_bundle_config(graphs.config)
    tok = Tokenizer.from_file(str(tiny_bundle / "tokenizer.json"))
    ids = SpecialIds.from_tokenizer(tok)
    inputs = understanding_inputs(tok, ids, "Describe the picture.", dims.num_image_tokens)
    pixels = np.random.default_rng(7).uniform(-1, 1, (1, 1, 3, 64, 64)).astype(np.float32)
    ours = generate_text(graphs, dims, inputs, 40, pixel_values=pixels)
    assert ours == transformers_greedy(reference.model, inputs, pixels, 40)
    assert len(set(ours)) > 3, "degenerate output would make the comparison meaningless"

    draws = uniforms(11, 2 * dims.num_image_tokens).reshape(2, -1)
    prompt = generation_prompt(tok, ids, "a red apple")
    a = generate_images(graphs, dims, ids, prompt, draws, guidance=5.0)
    b = generate_images(TorchGraphs(reference.model, graph_specs(reference.model)), dims, ids, prompt, draws,
                        guidance=5.0)
    assert np.array_equal(a.tokens, b.tokens) and len(np.unique(a.tokens)) > 3
    assert a.images.shape == (2, 3, 64, 64) and np.abs(a.images - b.images).max() <= 1e-3


def test_external_data_for_large_graphs(tmp_path, reference, monkeypatch):
    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_THRESHOLD", 0)
    spec = next(s for s in graph_specs(reference.model) if s.name == "lm_head")
    module = spec.wrapper(reference.model).eval()
    files = onnx_export.export_graph(spec, module, tmp_path)
    assert [f.name for f in files] == ["lm_head.onnx", "lm_head.onnx_data"]
    assert files[0].stat().st_size < 10_000 < files[1].stat().st_size
    x = np.random.default_rng(0).standard_normal((1, 2, 64)).astype(np.float32)
    out = ort.InferenceSession(str(files[0]), providers=["CPUExecutionProvider"]).run(None, {"hidden_states": x})[0]
    with torch.no_grad():
        np.testing.assert_allclose(out, module(torch.from_numpy(x)).numpy(), atol=1e-5)


def test_mismatch_fails_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from janusweb.export import driver
    real = driver.graph_specs

    def strict(model):  # an impossible tolerance makes validation fail
        import dataclasses
        return [dataclasses.replace(s, tolerance=-1.0) if s.name == "gen_head" else s for s in real(model)]

    monkeypatch.setattr(driver, "graph_specs", strict)
    out = tmp_path / "bundle"
    assert main(["--quiet", "export", "tiny", "--out", str(out)]) == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert "NOT OK" in capsys.readouterr().out
    assert main(["--quiet", "export", "tiny", "--out", str(out), "--allow-mismatch"]) == 0
    assert not json.loads((out / "manifest.json").read_text())["validation"]["graphs_ok"]


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    r = subprocess.run([sys.executable, "-m", "janusweb", "export", "tiny", "--out", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and (tmp_path / "notes.txt").read_text() == "keep me"
    assert len(r.stderr.strip().splitlines()) == 1 and "not a janusweb bundle" in r.stderr


@pytest.mark.parametrize("source", ["deepseek-ai/Janus-Pro-1B", "/nonexistent/folder", "llama-7b"])
def test_bad_sources_exit_2_with_one_line(source):
    r = subprocess.run([sys.executable, "-m", "janusweb", "export", source, "--out", "/tmp/never-written"],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("janusweb: error:")
