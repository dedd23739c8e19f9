"""The page in a real browser (Debian's Chromium through Playwright) on the tiny bundle, fp32 and int8:
on WebGPU (SwiftShader where there is no GPU) and on WASM (the same browser without WebGPU: no adapter).

Parity is against the Python reference loops on onnxruntime (janusweb.generate), graph by graph at the dtypes
the page reports it runs: greedy token ids after an image prompt, seeded image tokens, decoded pixels within
1e-3. Also: the WASM fallback is shown, a corrupted graph shows the checksum error, generation can be cancelled
while the page stays responsive, images show on the page."""

import json
import time

import pytest
from PIL import Image

from janusweb.dtypes import dtype as lookup
from janusweb.manifest import file_digest
from janusweb.fused import STEM as FUSED
from janusweb.generate import generate_text
from janusweb.image import preprocess
from janusweb.prompts import understanding_inputs
from janusweb.site import build_site, serve_in_thread
from pages import (LOAD_TIMEOUT_MS, QUESTION, RUN_TIMEOUT_MS, TEXT_TOKENS, chat, check_images, generate, needs_page,
                   open_page, reference, reference_dtypes, replace_file, shown_images_are_not_blank)

pytestmark = needs_page
METRICS: dict = {}

CASES = [  # backend, decoder engine (?engine=), dtype
    pytest.param("webgpu", "auto", "fp32", id="webgpu-fp32"),
    pytest.param("webgpu", "auto", "int8", id="webgpu-int8"),
    pytest.param("webgpu", "ort-grow", "fp32", id="webgpu-grown-kv-fp32"),  # language_model on WebGPU: comparisons
    pytest.param("webgpu", "wgsl", "fp32", id="webgpu-wgsl-fp32"),  # the decoder on the page's WGSL kernels
    pytest.param("webgpu", "wgsl", "int8", id="webgpu-wgsl-int8"),
    pytest.param("webgpu", "wgsl", "q4", id="webgpu-wgsl-q4"),  # MatMulNBits 4-bit in the kernels
    pytest.param("wasm", "auto", "fp32", id="wasm-fp32"),
    pytest.param("wasm", "auto", "int8", id="wasm-int8"),
]


@pytest.mark.parametrize(("backend", "engine", "dtype"), CASES)
def test_page_matches_the_python_reference(browsers, site_url, bundle, test_png, backend, engine, dtype):
    if backend == "webgpu" and not browsers["webgpu_ok"]:
        pytest.skip("this Chromium offers no WebGPU adapter (not even SwiftShader)")
    t0 = time.perf_counter()
    page = open_page(browsers[backend], site_url,
                     f"backend={backend}&dtype={dtype}" + (f"&engine={engine}" if engine != "auto" else ""))
    load_s = time.perf_counter() - t0
    info = page.evaluate("window.janusweb.backend")
    assert info["ep"] == backend
    assert page.inner_text("#ep").startswith("WebGPU" if backend == "webgpu" else "WASM")
    assert page.inner_text("#adapter") == info["adapter"] and info["adapter"]
    assert page.inner_text("#dtype").startswith(lookup(dtype).label)
    assert info["engine"] == ("ort-gqa" if backend == "webgpu" else "ort-grow") if engine == "auto" else engine
    fused = backend == "webgpu" and engine == "auto"  # WebGPU: the KV cache bound in place
    lm = FUSED if fused else "language_model"
    assert info["dtypes"][lm] == dtype and {FUSED, "language_model"} & set(info["dtypes"]) == {lm}
    assert page.inner_text("#kv-cache") == info["kvCache"]
    if engine == "wgsl":  # the fused graph's weights on the page's kernels: the fused graph is the reference
        assert info["kvCache"].startswith(f"WGSL decoder (wgsl/decoder{'' if dtype == 'fp32' else '_' + dtype}.json, "
                                          "1 part)")  # a small pack: one part
    else:
        assert info["kvCache"].startswith(lm)
    if fused:
        # only the fused decoder's mask arithmetic and the text-only embedding's vision tower sit on the CPU by
        # name; lm_head passed session.disable_cpu_ep_fallback; image prompts go through an all-GPU session
        assert info["cpuNodes"][FUSED] == "named nodes" and info["cpuNodes"]["prepare_inputs_embeds"] == "named nodes"
        assert info["cpuNodes"].get("lm_head") is None and info["dtypes"]["prepare_inputs_embeds@image"] == dtype
    for graph, used in info["dtypes"].items():
        if used != dtype:  # a graph this backend has no kernel for at this dtype: said on the page
            assert graph in page.inner_text("#notes")
    graphs, dims, tok, ids = reference(bundle, reference_dtypes(info))

    answer = chat(page, QUESTION, test_png, TEXT_TOKENS)
    pixels = preprocess(Image.open(test_png), dims.image_size)[None, None]
    expected = generate_text(graphs, dims, understanding_inputs(tok, ids, QUESTION, dims.num_image_tokens),
                             TEXT_TOKENS, pixel_values=pixels, eos_id=ids.eos)
    assert answer["tokens"] == expected
    assert answer["text"] == page.inner_text("#answer") and "tokens/s" in page.inner_text("#speed")

    images = generate(page, 2, 5.0, 1.0, 7)
    check_images(bundle, reference_dtypes(info), images, 2, 5.0, 1.0, 7)
    assert page.evaluate("document.getElementById('image-bar').value") == 1
    assert page.inner_text("#image-progress").startswith("2 images in")
    shown_images_are_not_blank(page, 2)
    if backend == "webgpu":  # state stays on the GPU: reads do not grow with the steps
        assert images["gpuReads"] <= 3, images["gpuReads"]
        # one row of logits per token, plus at most 3 at the image prompt (the mask arithmetic ORT keeps on the
        # CPU in prepare_inputs_embeds@image reads its inputs back once)
        assert answer["gpuReads"] <= len(answer["tokens"]) + 4, answer["gpuReads"]
    key = f"{backend}{'' if engine == 'auto' else '-grown-kv' if engine == 'ort-grow' else '-wgsl'}-{dtype}"
    METRICS[key] = {"load_s": round(load_s, 2), "tokens_per_s": round(answer["tokensPerSecond"], 2),
                                     "image_s_2x16_tokens": round(images["seconds"], 2),
                                     "gpu_reads_image": images.get("gpuReads"), "dtypes": info["dtypes"]}
    print(f"\n[web metrics] {key}: {json.dumps(METRICS[key])}")
    page.context.close()


def test_other_sampling_settings_match_on_wasm(browsers, site_url, bundle):
    """Guidance, temperature (greedy included), 3 and 4 images, and another seed: same tokens as Python."""
    page = open_page(browsers["wasm"], site_url, "dtype=fp32")
    info = page.evaluate("window.janusweb.backend")
    for count, guidance, temperature, seed in ((3, 2.5, 0.7, 123), (4, 5.0, 0.0, 1), (1, 1.0, 1.3, 2**31 + 9)):
        images = generate(page, count, guidance, temperature, seed)
        check_images(bundle, info["dtypes"], images, count, guidance, temperature, seed)
    answer = chat(page, "Hello there", None, TEXT_TOKENS)  # text-only chat
    graphs, dims, tok, ids = reference(bundle, info["dtypes"])
    expected = generate_text(graphs, dims, understanding_inputs(tok, ids, "Hello there", dims.num_image_tokens,
                                                                with_image=False), TEXT_TOKENS, eos_id=ids.eos)
    assert answer["tokens"] == expected
    page.context.close()


def test_without_webgpu_the_page_runs_on_wasm_and_says_so(browsers, site_url):
    page = open_page(browsers["wasm"], site_url)
    assert page.inner_text("#status") == "Ready on WASM"
    assert "WebGPU not used" in page.inner_text("#notes") and "no adapter" in page.inner_text("#notes")
    assert page.evaluate("crossOriginIsolated")  # COOP/COEP: WASM gets threads
    # the graphs come from the network on a first visit (the first screen's plan has cached the small JSON files)
    assert not [line for line in page.inner_text("#downloads").splitlines() if "onnx/" in line and "(cache)" in line]
    page.reload()
    page.wait_for_function("window.janusweb && window.janusweb.ready", timeout=LOAD_TIMEOUT_MS)
    page.evaluate("document.getElementById('details').open = true")
    assert "onnx/language_model" in page.inner_text("#downloads")
    assert "(cache)" in page.inner_text("#downloads")  # the second visit reads verified files from the Cache API
    page.context.close()


def test_corrupted_graph_shows_the_checksum_error(browsers, bundle, tmp_path):
    site = build_site(bundle, tmp_path / "site")
    target = site / "model" / "onnx" / "lm_head.onnx"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the checksum can tell
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(bytes(data))
    tmp.replace(target)  # a new file: the bundle's copy (maybe a hard link) is untouched
    server, url = serve_in_thread(site)
    try:
        page = open_page(browsers["wasm"], url, "dtype=fp32")
        error = page.evaluate("window.janusweb.error")
        assert error["kind"] == "checksum"
        status = page.inner_text("#status")
        assert status.startswith("Checksum error") and "onnx/lm_head.onnx" in status
        assert not page.evaluate("window.janusweb.ready")
        page.context.close()
    finally:
        server.shutdown()


@pytest.mark.parametrize("kv", ["auto", "wgsl"])
def test_long_prompt_in_chunks_matches_on_webgpu(browsers, site_url, bundle, kv):
    """A prompt longer than one call takes (the WGSL decoder: 256 tokens; the fused graph: 16 positions) goes in
    several calls, each with the cache filled by the ones before: same tokens as Python."""
    if not browsers["webgpu_ok"]:
        pytest.skip("this Chromium offers no WebGPU adapter (not even SwiftShader)")
    page = open_page(browsers["webgpu"], site_url, f"backend=webgpu&dtype=fp32&kv={kv}")
    graphs, dims, tok, ids = reference(bundle, reference_dtypes(page.evaluate("window.janusweb.backend")))
    question = " ".join(f"word{i} and more" for i in range(120))
    inputs = understanding_inputs(tok, ids, question, dims.num_image_tokens, with_image=False)
    assert inputs["input_ids"].shape[1] > 300
    answer = chat(page, question, None, TEXT_TOKENS)
    assert answer["tokens"] == generate_text(graphs, dims, inputs, TEXT_TOKENS, eos_id=ids.eos)
    page.context.close()


@pytest.mark.parametrize("case", ["missing", "stale"])
def test_wgsl_decoder_without_its_pack_is_a_clear_error(browsers, bundle, tmp_path, case):
    if not browsers["webgpu_ok"]:
        pytest.skip("this Chromium offers no WebGPU adapter (not even SwiftShader)")
    model = build_site(bundle, tmp_path / "site") / "model"
    manifest = json.loads((model / "manifest.json").read_text())
    if case == "missing":
        del manifest["wgsl"]
    else:  # a pack made from an earlier fused graph: its recorded source checksum differs
        desc = json.loads((model / "wgsl" / "decoder.json").read_text())
        desc["source_sha256"] = "0" * 64
        replace_file(model / "wgsl" / "decoder.json", json.dumps(desc))
        manifest["files"]["wgsl/decoder.json"] = file_digest(model / "wgsl" / "decoder.json")
    replace_file(model / "manifest.json", json.dumps(manifest))
    server, url = serve_in_thread(model.parent)
    try:
        page = open_page(browsers["webgpu"], url, "backend=webgpu&dtype=fp32&kv=wgsl")  # ?kv=, the old name of ?engine=
        error = page.evaluate("window.janusweb.error")
        assert error["kind"] == "input" and not page.evaluate("window.janusweb.ready")
        expected = ("the bundle has no fp32 WGSL pack: run janusweb pack wgsl" if case == "missing"
                    else "the fp32 WGSL pack was made from another language_model_gqa.onnx")
        assert expected in error["message"] and expected in page.inner_text("#status")
        page.context.close()
    finally:
        server.shutdown()


def test_adapter_that_cannot_hold_the_largest_buffer_is_refused_before_downloading(browsers, bundle, tmp_path):
    """A bundle whose manifest records a buffer over the adapter's limits (SwiftShader: 1 GiB): ?backend=webgpu
    fails with one line naming the buffer and the limit, and no graph is fetched; the same bundle as recorded
    loads (the other tests)."""
    if not browsers["webgpu_ok"]:
        pytest.skip("this Chromium offers no WebGPU adapter (not even SwiftShader)")
    model = build_site(bundle, tmp_path / "site") / "model"
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["buffers"]["variants"]["lm_head"]["fp32"]["bytes"] < 2**20  # the real record: tiny
    manifest["buffers"]["variants"]["lm_head"]["fp32"] = {"tensor": "lm_head.weight", "bytes": 3 * 2**30}
    replace_file(model / "manifest.json", json.dumps(manifest))
    server, url = serve_in_thread(model.parent)
    try:
        page = browsers["webgpu"].new_context().new_page()
        fetched = []
        page.on("request", lambda r: fetched.append(r.url))
        page.goto(f"{url}?autostart=1&backend=webgpu&dtype=fp32")
        page.wait_for_function("window.janusweb && (window.janusweb.ready || window.janusweb.error)",
                               timeout=LOAD_TIMEOUT_MS)
        limit = page.evaluate("(async () => (await navigator.gpu.requestAdapter()).limits.maxStorageBufferBindingSize)()")
        error = page.evaluate("window.janusweb.error")
        expected = (f"this bundle's largest buffer, {3 * 2**30 / 1e6:.0f} MB (lm_head fp32 lm_head.weight), exceeds "
                    f"this adapter's maxStorageBufferBindingSize {limit / 1e6:.0f} MB")
        assert error is not None and expected in error["message"] and "\n" not in error["message"]
        assert expected in page.inner_text("#status")
        assert not [u for u in fetched if "/onnx/" in u or u.endswith(".wasm")]  # refused before any download
        page.context.close()
    finally:
        server.shutdown()


def test_generation_can_be_cancelled_and_the_page_stays_responsive(browsers, site_url):
    if not browsers["webgpu_ok"]:
        pytest.skip("needs WebGPU: on WASM the tiny model finishes before a cancel can land")
    page = open_page(browsers["webgpu"], site_url, "backend=webgpu&dtype=fp32")
    page.fill("#count", "4")
    stepping = "/ [1-9]\\d*\\/\\d+ image tokens/.test(document.getElementById('image-progress').textContent)"
    finished = []
    for _ in range(3):  # on a busy machine the tiny model's 16 steps can end before the cancel reaches the worker
        page.click("#generate")
        page.wait_for_function(stepping, timeout=RUN_TIMEOUT_MS, polling=20)
        t0 = time.perf_counter()
        assert page.evaluate("1 + 1") == 2
        assert time.perf_counter() - t0 < 1.0  # the main thread is free while the worker generates
        page.click("#image-cancel")
        page.wait_for_function("window.janusweb.images.done", timeout=RUN_TIMEOUT_MS)
        if "cancelled" in page.inner_text("#image-progress"):
            break
        finished.append(page.inner_text("#image-progress"))
    else:
        pytest.fail(f"every run finished before its cancel landed: {finished}")
    assert page.evaluate("window.janusweb.images.tokens") == []
    assert page.is_enabled("#generate") and not page.is_enabled("#image-cancel")
    page.context.close()
