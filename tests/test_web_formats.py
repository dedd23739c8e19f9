"""The demo page on a bundle of another format version (web/lib/formats.js; the library's own answers are compared
with janusweb/formats.py's in tests/test_formats.py): the refusal is the page's error and status line."""

import json

from pages import BROWSER_ARGS, CHROMIUM, needs_page, open_page, replace_file

from janusweb.manifest import file_digest
from janusweb.site import build_site, serve_in_thread

pytestmark = needs_page


def test_the_demo_page_shows_a_pack_of_another_format_in_one_line(playwright, tiny_packed, tmp_path):
    """The page built by build-web, on a bundle whose CPU pack is newer than it reads: the refusal is its error and
    status line, of kind 'bundle'."""
    model = build_site(tiny_packed, tmp_path / "site") / "model"
    manifest = json.loads((model / "manifest.json").read_text())
    rel = manifest["cpu"]["fp32"]["json"]
    replace_file(model / rel, json.dumps({**json.loads((model / rel).read_text()), "format": "janusweb-cpu/5"}))
    manifest["files"][rel] = file_digest(model / rel)
    replace_file(model / "manifest.json", json.dumps(manifest))
    server, url = serve_in_thread(model.parent)
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
    try:
        page = open_page(browser, url, "backend=wasm&engine=cpu&dtype=fp32")
        error = page.evaluate("window.janusweb.error")
        expected = (f"{url}model/{rel}: cpu pack format 'janusweb-cpu/5', this janusweb reads janusweb-cpu/4; "
                    "update janusweb to read it")
        assert error["kind"] == "bundle" and error["message"] == expected, error
        assert expected in page.inner_text("#status") and not page.evaluate("window.janusweb.ready")
    finally:
        browser.close()
        server.shutdown()
