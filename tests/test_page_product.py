"""The page as a product, in Chromium on the tiny bundle: the backend it picks by itself (never a software GPU over
WASM), only the files that run are downloaded, every phase is labelled in order, a first screen with a Start
button, images that form as they are drawn, a conversation that keeps its KV cache, and the README's screenshots.
Fixtures are conftest.py's, helpers pages.py's."""

import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from janusweb.generate import generate_text
from janusweb.image import preprocess
from janusweb.prompts import conversation_inputs
from janusweb.site import build_page
from pages import LOAD_TIMEOUT_MS, RUN_TIMEOUT_MS, chat, generate, needs_page, open_page, reference, reference_dtypes

pytestmark = needs_page


def webgpu_or_skip(browsers) -> None:
    if not browsers["webgpu_ok"]:
        pytest.skip("this Chromium offers no WebGPU adapter (not even SwiftShader)")


def test_auto_never_picks_a_software_adapter_over_wasm(browsers, site_url):
    """Headless Chromium's only adapter is SwiftShader: automatic mode runs on WASM and says why in one sentence;
    ?backend=webgpu still runs on it."""
    webgpu_or_skip(browsers)
    page = open_page(browsers["webgpu"], site_url, "dtype=fp32")
    info = page.evaluate("window.janusweb.backend")
    assert info["ep"] == "wasm", info
    assert "software" in info["why"] and page.inner_text("#why") == info["why"]
    assert info["why"].startswith("Running on your CPU") and info["why"].count(".") == 1
    assert any("renders in software" in n for n in info["notes"])
    page.context.close()
    page = open_page(browsers["webgpu"], site_url, "dtype=fp32&backend=webgpu")
    info = page.evaluate("window.janusweb.backend")
    assert info["ep"] == "webgpu" and "as asked" in page.inner_text("#why")
    page.context.close()
    page = open_page(browsers["wasm"], site_url, "dtype=fp32")  # no adapter at all
    assert page.evaluate("window.janusweb.backend.ep") == "wasm" and "no adapter" in page.inner_text("#why")
    page.context.close()


def expected_downloads(bundle, dtypes: dict) -> set:
    """The bundle files of the graphs the page runs, at the dtypes it runs them (from the manifest)."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    out = set()
    for session, dtype in dtypes.items():
        entry = manifest["graphs"][session.split("@")[0]]
        files = entry["files"] if entry.get("dtype", "fp32") == dtype else entry["variants"][dtype]["files"]
        out |= set(files)
    return out


@pytest.mark.parametrize("backend", ["wasm", "webgpu"])
def test_only_what_runs_is_downloaded(browsers, site_url, bundle, backend):
    """The worker's download messages name exactly the files of the sessions it made (on WASM the int8
    prepare_inputs_embeds, which it cannot run, is never fetched), plus ORT's .wasm, each once."""
    if backend == "webgpu":
        webgpu_or_skip(browsers)
    dtype = "int8"
    page = open_page(browsers[backend], site_url, f"backend={backend}&dtype={dtype}")
    info = page.evaluate("window.janusweb.backend")
    downloads = page.evaluate("window.janusweb.downloads")
    page.context.close()
    assert len(downloads) == len(set(downloads)), downloads
    graph_files = {f for f in downloads if f.startswith("onnx/") or f.startswith("wgsl/")}
    assert graph_files == expected_downloads(bundle, info["dtypes"]), (downloads, info["dtypes"])
    assert "ort/ort-wasm-simd-threaded.asyncify.wasm" in downloads
    if backend == "wasm":
        assert info["dtypes"]["prepare_inputs_embeds"] == "fp32"
        assert "onnx/prepare_inputs_embeds_int8.onnx" not in downloads
        assert "GatherBlockQuantized" in " ".join(info["notes"])


def test_the_demo_site_carries_no_benchmark_pages(site_url, tmp_path):
    """build-web's site: the page only; the benchmark build (`janusweb bench`) has its pages and transformers.js."""
    for path in ("bench.html", "bench.js", "kernels.html", "tjs-bench.html", "tjs-bench.js",
                 "ort-tjs/ort-wasm-simd-threaded.asyncify.wasm", "wllama-bench.html", "wllama/wllama.wasm"):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(site_url + path)
        assert e.value.code == 404, path
    assert urllib.request.urlopen(site_url + "index.html").status == 200
    build_page(tmp_path / "bench", bench=True)
    assert (tmp_path / "bench" / "bench.html").is_file() and (tmp_path / "bench" / "kernels.html").is_file()
    assert (tmp_path / "bench" / "wllama" / "wllama.wasm").is_file()  # llama.cpp's wasm: the bench build only


def test_every_phase_is_labelled_in_order(browsers, site_url, test_png):
    """Load: downloads (ORT's .wasm among them) then sessions; chat with an image: encoding, prompt, answer (time
    to the first token and decode speed reported apart); text-to-image: prompt, steps, decoding."""
    page = open_page(browsers["wasm"], site_url, "dtype=fp32")
    phases = page.evaluate("window.janusweb.phases")
    assert phases[0] == "downloading" and "creating sessions" in phases, phases
    page.evaluate("window.janusweb.phases = []")
    answer = chat(page, "Describe this image.", test_png, 6)
    assert page.evaluate("window.janusweb.phases") == [
        "encoding the image…", "reading the prompt…", "writing the answer…"]
    assert 0 < answer["firstTokenSeconds"] and answer["tokensPerSecond"] > 0
    speed = page.inner_text("#speed")
    assert "first token after" in speed and "decoding" in speed and "tokens/s" in speed
    page.evaluate("window.janusweb.phases = []")
    generate(page, 1, 5.0, 1.0, 3)
    assert page.evaluate("window.janusweb.phases") == [
        "reading the prompt…", "drawing the image…", "decoding the image…"]
    page.context.close()


def test_a_busy_error_goes_when_the_work_it_waited_for_ends(browsers, site_url):
    page = open_page(browsers["wasm"], site_url, "dtype=fp32")
    page.fill("#count", "2")
    page.evaluate("document.getElementById('generate').click(); document.getElementById('ask').click()")
    page.wait_for_function("window.janusweb.error?.kind === 'busy'", timeout=RUN_TIMEOUT_MS, polling=10)
    assert "busy" in page.inner_text("#status")
    page.wait_for_function("window.janusweb.images.done", timeout=RUN_TIMEOUT_MS)
    assert page.evaluate("window.janusweb.error") is None and "busy" not in page.inner_text("#status")
    assert page.is_enabled("#ask") and page.is_enabled("#generate")
    page.context.close()


def test_the_first_screen_asks_before_downloading(browsers, site_url):
    """The model, where it runs in plain words, the download size and Start; nothing large is fetched before
    Start; engineering facts sit in the closed details panel; a second visit (files cached) loads by itself."""
    page = open_page(browsers["wasm"], site_url, "dtype=fp32", autostart=False)
    page.wait_for_function("window.janusweb.plan", timeout=LOAD_TIMEOUT_MS)
    plan = page.evaluate("window.janusweb.plan")
    assert page.inner_text("#model-name") == "Janus-Pro (tiny)" and plan["where"].startswith("on your CPU, ")
    assert "thread" in page.inner_text("#where") and "Download: " in page.inner_text("#size")
    assert plan["bytes"] > 1e6 and plan["cachedBytes"] == 0 and page.is_enabled("#start")
    assert page.evaluate("window.janusweb.downloads") == [] and not page.evaluate("window.janusweb.ready")
    page.click("#start")
    page.wait_for_function("window.janusweb.ready || window.janusweb.error", timeout=LOAD_TIMEOUT_MS)
    assert page.evaluate("window.janusweb.ready") and page.is_hidden("#intro")
    page.goto(site_url + "?dtype=fp32")  # same browser context: the Cache API holds the files
    page.wait_for_function("window.janusweb && (window.janusweb.ready || window.janusweb.error)",
                           timeout=LOAD_TIMEOUT_MS)
    assert page.evaluate("window.janusweb.plan.cachedBytes == window.janusweb.plan.bytes")
    assert page.evaluate("window.janusweb.ready")
    assert not page.evaluate("document.getElementById('details').open")  # the engineering facts: one click away
    assert "language_model" in page.evaluate("document.getElementById('graph-dtypes').textContent")
    page.context.close()


@pytest.mark.parametrize(("query", "notice"), [
    ("dtype=bogus", "This bundle has no bogus variant"), ("dtype=fp16", "This bundle has no fp16 variant"),
    ("backend=cuda", "Unknown backend ?backend=cuda"), ("colour=red", "Unknown URL parameter ?colour")])
def test_unknown_url_parameters_are_a_one_line_notice(browsers, site_url, query, notice):
    page = open_page(browsers["wasm"], site_url, query)
    notices = page.evaluate("window.janusweb.notices")
    assert len(notices) == 1 and notices[0].startswith(notice) and page.inner_text("#notices") == notices[0]
    assert page.evaluate("window.janusweb.ready")  # the default ran instead
    assert page.evaluate("document.getElementById('dtype-choice').value") in ("", "fp32", "int8")
    page.context.close()


@pytest.mark.parametrize("backend", ["wasm", "webgpu"])
def test_previews_show_the_image_forming_and_change_nothing(browsers, site_url, backend):
    """?preview=4 on tiny (16 image tokens): 3 previews per image (after steps 4, 8, 12, none after the last), drawn
    in place in the image's canvas; the final tokens and pixels are those of a run without previews. (One image on
    SwiftShader, where the VQ decoder takes seconds per call.)"""
    if backend == "webgpu":
        webgpu_or_skip(browsers)
    count = 2 if backend == "wasm" else 1
    runs = {}
    for every in (0, 4):
        page = open_page(browsers[backend], site_url, f"backend={backend}&dtype=fp32&preview={every}")
        runs[every] = generate(page, count, 5.0, 1.0, 11)
        assert page.locator("#gallery canvas").count() == count
        page.context.close()
    assert runs[0]["previews"] == []
    assert sorted((p["index"], p["step"]) for p in runs[4]["previews"]) == [
        (i, s) for i in range(count) for s in (4, 8, 12)]
    assert runs[4]["tokens"] == runs[0]["tokens"] and runs[4]["decoded"] == runs[0]["decoded"]
    cost = runs[4]["previewSeconds"] / 3
    print(f"\n[preview cost] {backend} tiny {count} image(s): {1000 * cost:.1f} ms per preview, "
          f"{100 * runs[4]['previewSeconds'] / runs[4]['seconds']:.1f} % of {runs[4]['seconds']:.2f} s "
          f"(without previews {runs[0]['seconds']:.2f} s)")


@pytest.mark.parametrize("backend", ["wasm", "webgpu"])
def test_a_conversation_keeps_the_cache_of_earlier_turns(browsers, site_url, bundle, test_png, backend):
    """Three turns (the image on the second): each answer is Python's greedy answer to the whole conversation so
    far (prompts.conversation_inputs, encoded from scratch), while the page prefills only the new positions: the end
    of the last answer and the new question. New chat starts again from an empty cache."""
    if backend == "webgpu":
        webgpu_or_skip(browsers)
    page = open_page(browsers[backend], site_url, f"backend={backend}&dtype=fp32")
    graphs, dims, tok, ids = reference(bundle, reference_dtypes(page.evaluate("window.janusweb.backend")))
    pixels = preprocess(Image.open(test_png), dims.image_size)[None, None]
    turns = [("Hello there", False), ("Describe this image.", True), ("And its colours?", False)]
    answers, fed = [], 0
    for k, (question, with_image) in enumerate(turns):
        answer = chat(page, question, test_png if with_image else None, 6)
        history = [(q, i, a) for (q, i), a in zip(turns[:k], answers)] + [(question, with_image, None)]
        inputs = conversation_inputs(tok, ids, history, dims.num_image_tokens)
        expected = generate_text(graphs, dims, inputs, 6, pixel_values=pixels if k >= 1 else None, eos_id=ids.eos)
        assert answer["tokens"] == expected, k
        assert answer["reusedTokens"] == fed and answer["prefillTokens"] == inputs["input_ids"].shape[1] - fed, k
        fed = inputs["input_ids"].shape[1] + len(expected) - 1  # the last answer token is fed with the next turn
        answers.append(expected)
    transcript = page.evaluate("window.janusweb.transcript")
    assert [(t["role"], t["image"]) for t in transcript] == [
        ("user", False), ("assistant", False), ("user", True), ("assistant", False), ("user", False),
        ("assistant", False)]
    assert page.locator("#transcript .turn").count() == 6 and page.locator("#transcript img").count() == 1
    page.click("#new-chat")
    assert page.locator("#transcript .turn").count() == 0
    answer = chat(page, "Hello there", None, 6)
    assert answer["reusedTokens"] == 0 and answer["tokens"] == answers[0]
    page.context.close()


def test_readme_screenshots(browsers, site_url, test_png):
    """The README's pictures, taken here so they follow the page: a chat with an image (docs/page-chat.png),
    text-to-image runs side by side with their seeds (docs/page-image.png) and, where WebGPU (SwiftShader) makes
    the loop slow enough to catch it, an image half drawn (docs/page-preview.png). The tiny model has random
    weights: its words and pictures are noise, the page around them is the point."""
    DOCS.mkdir(exist_ok=True)
    page = open_page(browsers["wasm"], site_url, "dtype=fp32&preview=4")
    page.evaluate("document.getElementById('details').open = false")
    page.set_viewport_size({"width": 1000, "height": 900})
    chat(page, "Describe this image.", test_png, 24)
    chat(page, "What colours does it have?", None, 16)
    shoot(page.locator("body"), "page-chat.png", clip_height=900)
    generate(page, 2, 5.0, 1.0, 0)
    page.click("#again")
    page.wait_for_function("window.janusweb.images.done && document.querySelectorAll('#gallery .run').length == 2",
                           timeout=RUN_TIMEOUT_MS)
    assert [c.inner_text() for c in page.locator("#gallery figcaption").all()] == [
        "seed 1 · #1", "seed 1 · #2", "seed 0 · #1", "seed 0 · #2"]
    shoot(page.locator("#t2i"), "page-image.png")
    page.context.close()
    if browsers["webgpu_ok"]:
        page = open_page(browsers["webgpu"], site_url, "backend=webgpu&dtype=fp32&preview=4")
        page.evaluate("document.getElementById('details').open = false")
        page.fill("#count", "2")
        page.click("#generate")
        page.wait_for_function("window.janusweb.images.previews.length >= 2", timeout=RUN_TIMEOUT_MS, polling=20)
        assert not page.evaluate("window.janusweb.images.done")
        shoot(page.locator("#t2i"), "page-preview.png")
        page.click("#image-cancel")
        page.context.close()


DOCS = Path(__file__).resolve().parent.parent / "docs"


def shoot(locator, name: str, clip_height: int | None = None) -> None:
    """A screenshot into docs/ (temp file, then rename), checked to show something."""
    tmp = DOCS / f".{name}.tmp.png"
    locator.screenshot(path=str(tmp))
    img = Image.open(tmp)
    if clip_height and img.height > clip_height:
        img.crop((0, 0, img.width, clip_height)).save(tmp)
    pixels = np.asarray(Image.open(tmp).convert("L"), np.float32)
    assert pixels.shape[0] > 200 and pixels.std() > 10, name
    tmp.replace(DOCS / name)
