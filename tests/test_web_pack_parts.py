"""Engine packs in several parts (pack/parts.py) in the page, on tiny with small parts forced: the WGSL decoder
(WebGPU) uploads every tensor from the part that holds it and its greedy tokens after an image prompt equal the
Python reference, as the one-part packs' do in tests/test_web_page.py; a corrupted part is a checksum error, a
missing part a download error, each one line on the page, and nothing runs."""

import json
import shutil

import pytest
from PIL import Image

from janusweb.cli import main
from janusweb.generate import generate_text
from janusweb.image import preprocess
from janusweb.pack.driver import write_packs
from janusweb.prompts import understanding_inputs
from janusweb.site import build_site, serve_in_thread
from pages import QUESTION, TEXT_TOKENS, chat, needs_page, open_page, reference, reference_dtypes

pytestmark = needs_page
PART = 512 * 1024  # the tiny pack's cos and sin are 512 KiB each: three parts


@pytest.fixture(scope="module")
def bundle(tiny_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("web-parts") / "bundle"
    shutil.copytree(tiny_bundle, out)
    assert main(["--quiet", "quantize", str(out), "--dtype", "int8", "--no-report"]) == 0
    write_packs(out, "wgsl", ["fp32", "int8"], part_bytes=PART)
    return out


@pytest.mark.parametrize("dtype", ["fp32", "int8"])
def test_wgsl_decoder_from_several_parts_matches_the_python_reference(browsers, site_url, bundle, test_png, dtype):
    if not browsers["webgpu_ok"]:
        pytest.skip("this Chromium offers no WebGPU adapter (not even SwiftShader)")
    parts = json.loads((bundle / "manifest.json").read_text())["wgsl"][dtype]["parts"]
    assert len(parts) == 3
    page = open_page(browsers["webgpu"], site_url, f"backend=webgpu&dtype={dtype}&engine=wgsl")
    info = page.evaluate("window.janusweb.backend")
    suffix = "" if dtype == "fp32" else "_" + dtype
    assert info["engine"] == "wgsl" and info["kvCache"].startswith(f"WGSL decoder (wgsl/decoder{suffix}.json, 3 parts)")
    graphs, dims, tok, ids = reference(bundle, reference_dtypes(info))
    pixels = preprocess(Image.open(test_png), dims.image_size)[None, None]
    expected = generate_text(graphs, dims, understanding_inputs(tok, ids, QUESTION, dims.num_image_tokens),
                             TEXT_TOKENS, pixel_values=pixels, eos_id=ids.eos)
    assert chat(page, QUESTION, test_png, TEXT_TOKENS)["tokens"] == expected
    page.context.close()


@pytest.mark.parametrize("case", ["corrupted", "missing"])
def test_a_bad_part_is_refused_in_one_line(browsers, bundle, tmp_path, case):
    if not browsers["webgpu_ok"]:
        pytest.skip("this Chromium offers no WebGPU adapter (not even SwiftShader)")
    site = build_site(bundle, tmp_path / "site")
    target = site / "model" / "wgsl" / "decoder.1.bin"
    if case == "corrupted":
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF  # same size: only the checksum can tell
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(bytes(data))
        tmp.replace(target)  # a new file: the bundle's copy (maybe a hard link) is untouched
    else:
        target.unlink()
    server, url = serve_in_thread(site)
    try:
        page = open_page(browsers["webgpu"], url, "backend=webgpu&dtype=fp32&engine=wgsl")
        error = page.evaluate("window.janusweb.error")
        status = page.inner_text("#status")
        assert not page.evaluate("window.janusweb.ready") and "\n" not in status.strip()
        if case == "corrupted":
            assert error["kind"] == "checksum" and status.startswith("Checksum error")
            assert "checksum mismatch for wgsl/decoder.1.bin" in status
        else:
            assert "wgsl/decoder.1.bin: HTTP 404" in error["message"] and "wgsl/decoder.1.bin: HTTP 404" in status
        page.context.close()
    finally:
        server.shutdown()
