"""The page's CPU engine (web/engines/cpu.js: the decoder and lm_head on the page's own WebAssembly kernels) in
Chromium without WebGPU, on the tiny bundle with its CPU packs: greedy tokens after an image prompt and CFG image
tokens from the same draws equal the Python reference (the fused decoder graph and lm_head at the pack's dtype
on onnxruntime), fp32 and int8, 1 and 2 threads; the int8 pack in several parts (pack/parts.py, small parts forced),
each tensor copied from the part that holds it. ?engine=ort-grow keeps onnxruntime-web's own path; a missing
or stale pack is one line."""

import json
import shutil

import pytest
from PIL import Image

from janusweb.cli import main
from janusweb.manifest import file_digest
from janusweb.fused import STEM as FUSED
from janusweb.generate import generate_text
from janusweb.image import preprocess
from janusweb.pack.driver import write_packs
from janusweb.prompts import understanding_inputs
from janusweb.site import build_site, serve_in_thread
from test_web_page import (QUESTION, TEXT_TOKENS, _replace, browsers, chat, check_images, generate,  # noqa: F401
                           open_page, playwright, pytestmark, reference, test_png)  # (fixtures)

pytestmark = pytestmark


@pytest.fixture(scope="module")
def bundle(tiny_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("web-cpu") / "bundle"
    shutil.copytree(tiny_bundle, out)
    assert main(["--quiet", "quantize", str(out), "--dtype", "int8", "--no-report"]) == 0
    assert main(["--quiet", "cpu-pack", str(out), "--dtype", "fp32"]) == 0
    write_packs(out, "cpu", ["int8"], part_bytes=512 * 1024)  # cos, sin 512 KiB each: four parts
    return out


@pytest.fixture(scope="module")
def site(bundle, tmp_path_factory):
    return build_site(bundle, tmp_path_factory.mktemp("web-cpu") / "site")


@pytest.fixture(scope="module")
def site_url(site):
    server, url = serve_in_thread(site)
    yield url
    server.shutdown()


@pytest.fixture(scope="module")
def wasm_browser(browsers):
    return browsers["wasm"]


def cpu_reference_dtypes(info: dict) -> dict:
    """The CPU engine runs the fused graph's weights (and lm_head's): those graphs are its reference."""
    dtypes = dict(info["dtypes"])
    dtypes[FUSED] = dtypes.pop("language_model")
    return dtypes


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", ["fp32", "int8"])
def test_cpu_engine_matches_the_python_reference(wasm_browser, site_url, bundle, test_png, dtype, threads):
    page = open_page(wasm_browser, site_url, f"dtype={dtype}&threads={threads}")
    info = page.evaluate("window.janusweb.backend")
    assert info["ep"] == "wasm" and info["threads"] == threads and info["engine"] == "cpu"
    pack = f"cpu/decoder{'' if dtype == 'fp32' else '_' + dtype}.json, {'1 part' if dtype == 'fp32' else '4 parts'}"
    assert info["kvCache"].startswith(f"CPU engine ({pack}, {threads} thread") and "language_model" in info["dtypes"]
    assert page.inner_text("#kv-cache") == info["kvCache"]
    assert info["dtypes"]["language_model"] == dtype and info["dtypes"]["lm_head"] == dtype
    graphs, dims, tok, ids = reference(bundle, cpu_reference_dtypes(info))
    inputs = understanding_inputs(tok, ids, QUESTION, dims.num_image_tokens)
    pixels = preprocess(Image.open(test_png), dims.image_size)[None, None]
    expected = generate_text(graphs, dims, inputs, TEXT_TOKENS, pixel_values=pixels, eos_id=ids.eos)
    assert chat(page, QUESTION, test_png, TEXT_TOKENS)["tokens"] == expected
    images = generate(page, 2, 5.0, 1.0, 7)
    check_images(bundle, cpu_reference_dtypes(info), images, 2, 5.0, 1.0, 7)
    page.context.close()


def test_engine_ort_grow_keeps_onnxruntimes_path(wasm_browser, site_url):
    page = open_page(wasm_browser, site_url, "dtype=fp32&engine=ort-grow")
    info = page.evaluate("window.janusweb.backend")
    assert info["engine"] == "ort-grow" and info["kvCache"].startswith("language_model")
    assert "lm_head" in info["dtypes"] and "(language_model): requested" in page.inner_text("#notes")
    page.context.close()


@pytest.mark.parametrize("case", ["missing", "stale"])
def test_cpu_engine_without_its_pack_is_one_line(wasm_browser, bundle, tmp_path, case):
    model = build_site(bundle, tmp_path / "site") / "model"
    manifest = json.loads((model / "manifest.json").read_text())
    if case == "missing":
        del manifest["cpu"]
    else:  # a pack made from an earlier lm_head: its recorded source checksum differs
        desc = json.loads((model / "cpu" / "decoder.json").read_text())
        desc["lm_head"]["source_sha256"] = "0" * 64
        _replace(model / "cpu" / "decoder.json", json.dumps(desc))
        manifest["files"]["cpu/decoder.json"] = file_digest(model / "cpu" / "decoder.json")
    _replace(model / "manifest.json", json.dumps(manifest))
    server, url = serve_in_thread(model.parent)
    try:
        page = open_page(wasm_browser, url, "dtype=fp32&engine=cpu")
        error = page.evaluate("window.janusweb.error")
        assert error["kind"] == "input" and not page.evaluate("window.janusweb.ready")
        expected = ("the bundle has no fp32 CPU pack: run janusweb cpu-pack" if case == "missing"
                    else "the fp32 CPU pack was made from another lm_head.onnx")
        assert expected in error["message"] and expected in page.inner_text("#status")
        assert "\n" not in error["message"]
        page.context.close()
    finally:
        server.shutdown()
