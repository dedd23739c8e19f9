"""The page's CPU engine (web/lib/engines/cpu/engine.js: token embeddings, the vision tower, the decoder, lm_head,
the image step and the VQ decoder on the page's own WebAssembly kernels) in Chromium without WebGPU, on the tiny
bundle with its CPU packs: greedy tokens after an image prompt and CFG image tokens from the same draws equal the
Python reference (onnxruntime on the graphs the pack was made from, at its dtype: the fused decoder, lm_head,
prepare_inputs_embeds for token rows and for the prompt with an image, gen_head, gen_img_embeds; at int8 the
matrices at accuracy_level 4, the kernels' int8-activation arithmetic), fp32 and int8, 1 and 2 threads, the int8
pack in several parts (pack/parts.py, small parts forced: each tensor copied from the part that holds it), the
pictures' pixels from the engine's VQ decoder within 1e-3 of onnxruntime's fp32 image_decode; no
prepare_inputs_embeds, gen_step, lm_head or image_decode graph is fetched; the kernels' Memory64 build
(?memory64=1) draws the 32-bit build's tokens. ?engine=ort-grow keeps onnxruntime-web's own path; a missing,
older or stale pack is one line."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from tokenizers import Tokenizer

from janusweb.accuracy_level import accuracy_view
from janusweb.cli import main
from janusweb.dtypes import graph_file
from janusweb.manifest import file_digest
from janusweb.fused import STEM as FUSED
from janusweb.generate import ModelDims, generate_images, generate_text
from janusweb.graphs import ImagePromptGraphs
from janusweb.image import preprocess
from janusweb.pack.driver import write_packs
from janusweb.prompts import SpecialIds, conversation_inputs, generation_prompt, understanding_inputs
from janusweb.sampling import uniforms
from janusweb.site import build_site, serve_in_thread
from pages import PROMPT, QUESTION, TEXT_TOKENS, chat, generate, needs_page, open_page, page_graphs, replace_file

pytestmark = needs_page


@pytest.fixture(scope="module")
def bundle(tiny_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("web-cpu") / "bundle"
    shutil.copytree(tiny_bundle, out)
    assert main(["--quiet", "quantize", str(out), "--dtype", "int8", "--no-report"]) == 0
    assert main(["--quiet", "cpu-pack", str(out), "--dtype", "fp32"]) == 0
    assert main(["--quiet", "cpu-pack", str(out), "--dtype", "int8"]) == 0
    tensors = json.loads((out / "cpu" / "decoder_int8.json").read_text())["tensors"].values()
    write_packs(out, "cpu", ["int8"], part_bytes=max(t["bytes"] for t in tensors))  # small parts forced
    assert len(json.loads((out / "manifest.json").read_text())["cpu"]["int8"]["parts"]) > 1
    return out


@pytest.fixture(scope="module")
def int8_reference(bundle, tmp_path_factory):
    """The bundle with the CPU engine's int8 graphs at accuracy_level 4: onnxruntime then quantizes their
    activations per block of 32 as the kernels do (tests/test_cpu_kernels.py checks that arithmetic)."""
    return accuracy_view(bundle, tmp_path_factory.mktemp("web-cpu") / "level4",
                         [graph_file(g, "int8") for g in (FUSED, "lm_head", "gen_head", "gen_img_embeds",
                                                          "prepare_inputs_embeds")], 4)


@pytest.fixture(scope="module")
def wasm_browser(browsers):
    return browsers["wasm"]


def cpu_engine_reference(bundle, info: dict) -> ImagePromptGraphs:
    """The Python reference of the page on the CPU engine: the graphs its pack was made from at the pack's dtype
    (prepare_inputs_embeds: the token table's for token rows, the vision tower's for the prompt with an image);
    image_decode at the page's dtype."""
    d = info["dtypes"]
    graphs = page_graphs(bundle, tuple(sorted({FUSED: d["language_model"], "lm_head": d["lm_head"],
                                           "prepare_inputs_embeds": d["embed_tokens"], "gen_head": d["gen_head"],
                                           "gen_img_embeds": d["gen_img_embeds"],
                                           "image_decode": d["image_decode"]}.items())))
    return ImagePromptGraphs(graphs, bundle / graph_file("prepare_inputs_embeds", d["prepare_inputs_embeds"]))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", ["fp32", "int8"])
def test_cpu_engine_matches_the_python_reference(wasm_browser, site_url, bundle, int8_reference, test_png, dtype,
                                                 threads):
    page = open_page(wasm_browser, site_url, f"dtype={dtype}&threads={threads}")
    info = page.evaluate("window.janusweb.backend")
    assert info["ep"] == "wasm" and info["threads"] == threads and info["engine"] == "cpu"
    parts = len(json.loads((bundle / "manifest.json").read_text())["cpu"][dtype]["parts"])
    pack = f"cpu/decoder{'' if dtype == 'fp32' else '_' + dtype}.json, {parts} part{'s' if parts > 1 else ''}"
    assert info["kvCache"].startswith(f"CPU engine ({pack}, {threads} thread") and "language_model" in info["dtypes"]
    assert page.inner_text("#kv-cache") == info["kvCache"]
    for graph in ("language_model", "lm_head", "embed_tokens", "prepare_inputs_embeds", "gen_head", "gen_img_embeds"):
        assert info["dtypes"][graph] == dtype, graph
    assert "gen_step" not in info["dtypes"] and info["dtypes"]["image_decode"] == "fp32"  # the engine's VQ decoder
    fetched = " ".join(page.evaluate("janusweb.downloads"))
    assert not any(g in fetched for g in ("prepare_inputs_embeds", "gen_step", "lm_head", "image_decode")), fetched
    graphs = cpu_engine_reference(int8_reference if dtype == "int8" else bundle, info)
    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    dims, ids = ModelDims.from_bundle_config(graphs.config), SpecialIds.from_tokenizer(tok)
    inputs = understanding_inputs(tok, ids, QUESTION, dims.num_image_tokens)
    pixels = preprocess(Image.open(test_png), dims.image_size)[None, None]
    expected = generate_text(graphs, dims, inputs, TEXT_TOKENS, pixel_values=pixels, eos_id=ids.eos)
    assert chat(page, QUESTION, test_png, TEXT_TOKENS)["tokens"] == expected
    count, guidance, temperature, seed = 2, 5.0, 1.0, 7
    result = generate(page, count, guidance, temperature, seed)
    draws = uniforms(seed, count * dims.num_image_tokens).reshape(count, -1)
    ref = generate_images(graphs, dims, ids, generation_prompt(tok, ids, PROMPT), draws, guidance, temperature)
    assert result["tokens"] == ref.tokens.tolist()
    assert len({t for row in ref.tokens.tolist() for t in row}) > 8  # varied tokens, not one repeated
    decoded = np.array(result["decoded"], np.float32).reshape(ref.images.shape)
    assert np.abs(decoded - ref.images).max() <= 1e-3
    page.context.close()


@pytest.mark.parametrize("threads", [1, 2])
def test_memory64_build_draws_the_32_bit_builds_tokens(wasm_browser, site_url, test_png, threads):
    """?memory64=1 forces the kernels' Memory64 build (64-bit addresses in the plan, at the module's boundary and
    in the engine's own memory) on a bundle that a 32-bit memory holds: the greedy tokens after an image prompt and
    the CFG image tokens equal the 32-bit build's (which equal the Python reference: the test above), int8 (the
    integer kernels), 1 and 2 threads."""
    runs = []
    for query in ("", "&memory64=1"):
        page = open_page(wasm_browser, site_url, f"dtype=int8&threads={threads}{query}")
        info = page.evaluate("window.janusweb.backend")
        assert info["engine"] == "cpu" and info["threads"] == threads
        assert ("-m64.wasm" in info["kvCache"] and "64-bit memory" in info["kvCache"]) == bool(query), info["kvCache"]
        runs.append((chat(page, QUESTION, test_png, TEXT_TOKENS)["tokens"], generate(page, 2, 5.0, 1.0, 7)["tokens"]))
        page.context.close()
    assert runs[1] == runs[0]
    assert len({t for row in runs[0][1] for t in row}) > 8  # varied image tokens, not one repeated


def test_engine_ort_grow_keeps_onnxruntimes_path(wasm_browser, site_url):
    page = open_page(wasm_browser, site_url, "dtype=fp32&engine=ort-grow")
    info = page.evaluate("window.janusweb.backend")
    assert info["engine"] == "ort-grow" and info["kvCache"].startswith("language_model")
    assert "lm_head" in info["dtypes"] and "(language_model): requested" in page.inner_text("#notes")
    page.context.close()


@pytest.mark.parametrize("case", ["missing", "stale", "stale-gen-head", "older"])
def test_cpu_engine_without_its_pack_is_one_line(wasm_browser, bundle, tmp_path, case):
    model = build_site(bundle, tmp_path / "site") / "model"
    manifest = json.loads((model / "manifest.json").read_text())
    if case == "missing":
        del manifest["cpu"]
    else:  # a pack made from an earlier lm_head / gen_head (its recorded source checksum differs), or by an older
        # cpu-pack (no token table)
        desc = json.loads((model / "cpu" / "decoder.json").read_text())
        if case == "older":
            del desc["embed_tokens"]
        else:
            desc["lm_head" if case == "stale" else "gen_head"]["source_sha256"] = "0" * 64
        replace_file(model / "cpu" / "decoder.json", json.dumps(desc))
        manifest["files"]["cpu/decoder.json"] = file_digest(model / "cpu" / "decoder.json")
    replace_file(model / "manifest.json", json.dumps(manifest))
    server, url = serve_in_thread(model.parent)
    try:
        page = open_page(wasm_browser, url, "dtype=fp32&engine=cpu")
        error = page.evaluate("window.janusweb.error")
        assert error["kind"] == "input" and not page.evaluate("window.janusweb.ready"), error
        expected = {"missing": "the bundle has no fp32 CPU pack: run janusweb pack cpu",
                    "stale": "the fp32 CPU pack was made from another lm_head.onnx",
                    "stale-gen-head": "the fp32 CPU pack was made from another gen_head.onnx",
                    "older": "the fp32 CPU pack has no embed_tokens (made by an older janusweb)"}[case]
        assert expected in error["message"] and expected in page.inner_text("#status")
        assert "\n" not in error["message"]
        page.context.close()
    finally:
        server.shutdown()


def test_an_image_request_keeps_the_conversation(wasm_browser, site_url, bundle, test_png):
    """The CPU engine holds several KV caches at once: a chat turn with an image, then an image request, then the
    next turn continues the kept cache (only the new positions are prefilled) and answers what Python answers to
    the whole conversation encoded from scratch; the image is the reference's too."""
    page = open_page(wasm_browser, site_url, "dtype=fp32&threads=2")
    info = page.evaluate("window.janusweb.backend")
    assert info["engine"] == "cpu"
    graphs = cpu_engine_reference(bundle, info)
    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    dims, ids = ModelDims.from_bundle_config(graphs.config), SpecialIds.from_tokenizer(tok)
    pixels = preprocess(Image.open(test_png), dims.image_size)[None, None]
    first = chat(page, QUESTION, test_png, 6)
    inputs = conversation_inputs(tok, ids, [(QUESTION, True, None)], dims.num_image_tokens)
    assert first["tokens"] == generate_text(graphs, dims, inputs, 6, pixel_values=pixels, eos_id=ids.eos)
    result = generate(page, 1, 5.0, 1.0, 3)
    draws = uniforms(3, dims.num_image_tokens).reshape(1, -1)
    ref = generate_images(graphs, dims, ids, generation_prompt(tok, ids, PROMPT), draws, 5.0, 1.0)
    assert result["tokens"] == ref.tokens.tolist()
    history = [(QUESTION, True, first["tokens"]), ("And its colours?", False, None)]
    second = chat(page, "And its colours?", None, 6)
    inputs = conversation_inputs(tok, ids, history, dims.num_image_tokens)
    assert second["tokens"] == generate_text(graphs, dims, inputs, 6, pixel_values=pixels, eos_id=ids.eos)
    assert second["reusedTokens"] == first["prefillTokens"] + len(first["tokens"]) - 1
    page.context.close()
