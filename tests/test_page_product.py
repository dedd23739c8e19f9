"""The page as a product, in Chromium on the tiny bundle: the backend it picks by itself (never a software GPU over
WASM), only the files that run are downloaded, every phase is labelled in order, a first screen with a Start
button, images that form as they are drawn, a conversation that keeps its KV cache, and the README's screenshots.
Fixtures and helpers are the page tests' (test_web_page.py)."""

import pytest
from test_web_page import (  # noqa: F401 (fixtures)
    LOAD_TIMEOUT_MS, RUN_TIMEOUT_MS, browsers, bundle, open_page, playwright, site_url, test_png)


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
