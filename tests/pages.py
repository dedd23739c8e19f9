"""The page tests' helpers (not a test module): the browsers' arguments and skip marks, the page's prompts, opening
the page, chatting and generating through its UI, and the Python reference at the dtypes the page reports. Their
fixtures (the bundle, the site, the browsers, a test image) are in conftest.py."""

import importlib.util
import io
import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tokenizers import Tokenizer

from janusweb.env import chromium_path
from janusweb.fused import STEM as FUSED
from janusweb.fused import FusedGraphs
from janusweb.generate import ModelDims, generate_images
from janusweb.graphs import OrtGraphs
from janusweb.prompts import SpecialIds, generation_prompt
from janusweb.sampling import uniforms

CHROMIUM = chromium_path()
REPO = Path(__file__).resolve().parent.parent
# the page tests' skip marks: `pytestmark = needs_page` in a test module
needs_page = [
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                       reason="Python Playwright is missing: pip install -e '.[test]'"),
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (apt-get install chromium); browser tests not run"),
    pytest.mark.skipif(shutil.which("node") is None or not (REPO / "node_modules" / "esbuild").is_dir(),
                       reason="building the page needs node and the npm packages (npm ci)"),
]

BROWSER_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run"]
WEBGPU_ARGS = ["--enable-unsafe-webgpu"]  # on machines without a GPU, Chromium's WebGPU adapter is SwiftShader
QUESTION = "Describe this image."
PROMPT = "A watercolor painting of mountains at sunset."
TEXT_TOKENS = 8
LOAD_TIMEOUT_MS = 120_000
RUN_TIMEOUT_MS = 240_000


def open_page(browser, url: str, query: str = "", autostart: bool = True):
    """The page, loaded (?autostart=1: past the Start button), with its details panel open."""
    page = browser.new_context().new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{url}?{'autostart=1&' if autostart else ''}{query}")
    page.evaluate("document.getElementById('details').open = true")
    if autostart:
        page.wait_for_function("window.janusweb && (window.janusweb.ready || window.janusweb.error)",
                               timeout=LOAD_TIMEOUT_MS)
    assert not errors, errors
    return page


@lru_cache(maxsize=8)
def page_graphs(bundle: Path, dtypes: tuple) -> OrtGraphs:
    """The page's graphs in Python: with the fused decoder (KV cache bound in place) where the page ran it."""
    dtypes = dict(dtypes)
    if FUSED in dtypes:
        return FusedGraphs(bundle, dtypes.pop(FUSED), dtypes)
    return OrtGraphs(bundle, dtypes=dtypes)


def reference_dtypes(info: dict) -> dict:
    """The page's session dtypes as the Python reference takes them: the WGSL decoder runs the fused graph's
    weights, so the fused graph is its reference."""
    dtypes = dict(info["dtypes"])
    if info["kvCache"].startswith("WGSL decoder"):
        dtypes[FUSED] = dtypes.pop("language_model")
    return dtypes


def reference(bundle: Path, dtypes: dict):
    """Python's graphs at the page's dtypes. The page's gen_step holds the weights of gen_head and
    gen_img_embeds, which the Python loop runs instead: those take gen_step's dtype."""
    dtypes = {"gen_head": dtypes["gen_step"], "gen_img_embeds": dtypes["gen_step"], **dtypes}
    graphs = page_graphs(bundle, tuple(sorted(dtypes.items())))
    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    return graphs, ModelDims.from_bundle_config(graphs.config), tok, SpecialIds.from_tokenizer(tok)


def chat(page, question: str, image: Path | None, max_tokens: int) -> dict:
    if image:
        page.set_input_files("#image-input", str(image))
    page.fill("#question", question)
    page.fill("#max-tokens", str(max_tokens))
    page.click("#ask")
    page.wait_for_function("window.janusweb.chat.done || window.janusweb.error", timeout=RUN_TIMEOUT_MS)
    assert page.evaluate("window.janusweb.error") is None
    return page.evaluate("window.janusweb.chat")


def generate(page, count: int, guidance: float, temperature: float, seed: int) -> dict:
    for field, value in (("#prompt", PROMPT), ("#count", count), ("#guidance", guidance),
                         ("#temperature", temperature), ("#seed", seed)):
        page.fill(field, str(value))
    page.click("#generate")
    page.wait_for_function("window.janusweb.images.done || window.janusweb.error", timeout=RUN_TIMEOUT_MS)
    assert page.evaluate("window.janusweb.error") is None
    return page.evaluate("({...janusweb.images, decoded: janusweb.images.decoded.map((d) => Array.from(d))})")


def check_images(bundle, dtypes, result, count, guidance, temperature, seed) -> None:
    graphs, dims, tok, ids = reference(bundle, dtypes)
    T = dims.num_image_tokens
    draws = uniforms(seed, count * T).reshape(count, T)
    ref = generate_images(graphs, dims, ids, generation_prompt(tok, ids, PROMPT), draws, guidance, temperature)
    assert result["tokens"] == ref.tokens.tolist()
    decoded = np.array(result["decoded"], np.float32).reshape(ref.images.shape)
    assert np.abs(decoded - ref.images).max() <= 1e-3


def shown_images_are_not_blank(page, count: int) -> None:
    canvases = page.locator("#gallery canvas")
    assert canvases.count() == count
    for i in range(count):
        shot = np.asarray(Image.open(io.BytesIO(canvases.nth(i).screenshot())).convert("RGB"), np.float32)
        assert shot.std() > 10 and len(np.unique(shot.reshape(-1, 3), axis=0)) > 50, f"image {i} looks blank"
    assert page.locator("#gallery a[download]").count() == count


def replace_file(path: Path, text: str) -> None:
    """Write a new file in place of `path` (the bundle's copy, maybe a hard link, is untouched)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
