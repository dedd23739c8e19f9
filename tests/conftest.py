"""Shared fixtures (one definition each; test modules never import fixtures from each other; their helpers live in
pages.py, cpu_reference.py, node_kernels.py, checkpoints.py):
- tiny_bundle: one `tiny` bundle exported per test session (the embedded default);
- tiny_packed: a copy with int8 variants and both page engines' packs (fp32, int8);
- shapes_bundle: the committed trained model (models/shapes) exported, with int8 variants (no report);
- page_bundle: a copy with int8 and q4 variants and the WGSL packs (the page tests'); `bundle` is it unless a test
  module defines its own `bundle`;
- site_url: the page (build-web of the module's `bundle`) served on loopback, one per module;
- playwright, browsers (Chromium with and without WebGPU), test_png (a non-square image);
- kernels_wasm: the CPU engine's WebAssembly kernels built once.

Under pytest-xdist (`make test` runs `pytest -n 2`), pytest_xdist_make_scheduler hands out whole modules, the long
ones first: a module's fixtures are built once, on one worker; a session fixture once per worker that needs it."""

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from janusweb.cli import main

REPO = Path(__file__).resolve().parent.parent

# pytest -n: modules that share an expensive session fixture run on one worker, as one unit (shapes_bundle: ~60 s)
SAME_WORKER = {"test_shapes_page.py": "test_shapes_model.py"}
# ... and the longest units start first (about their seconds alone), so that none of them is left for last while the
# other worker idles; the rest keep their collection order
LONG = {"test_web_page.py": 350, "test_stream.py": 300, "test_shapes_model.py": 300, "test_page_product.py": 200,
        "test_package.py": 150, "test_wheel.py": 120, "test_bench.py": 120, "test_gpu_rehearsal.py": 80}


def _unit(nodeid: str) -> str:
    """The unit of work of pytest -n that a test belongs to: its module's path, or SAME_WORKER's partner's."""
    module = nodeid.split("::", 1)[0]
    folder, _, name = module.rpartition("/")
    return f"{folder}/{SAME_WORKER.get(name, name)}" if folder else SAME_WORKER.get(name, name)


def pytest_collection_modifyitems(config, items):
    if os.environ.get("PYTEST_XDIST_WORKER"):  # a worker's collection: LONG's units first (the same on each worker)
        items.sort(key=lambda item: -LONG.get(_unit(item.nodeid).rpartition("/")[2], 0))


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: no error where it is not installed
def pytest_xdist_make_scheduler(config, log):
    """`-n N` with the default --dist load: whole units (_unit) to a worker, in the workers' collection order;
    an explicit --dist other than load is left as asked."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class UnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

    config.option.loadscopereorder = False  # the collection's order (LONG first), not the units' test counts
    return UnitScheduling(config, log)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A fresh `janusweb export tiny` bundle; tests must not modify it (copy it first)."""
    out = tmp_path_factory.mktemp("bundles") / "tiny"
    assert main(["--quiet", "export", "tiny", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def tiny_packed(tiny_bundle, tmp_path_factory) -> Path:
    """tiny with int8 variants (no accuracy report) and the WGSL and CPU packs at fp32 and int8; read only."""
    out = tmp_path_factory.mktemp("bundles") / "tiny-packed"
    shutil.copytree(tiny_bundle, out)
    assert main(["--quiet", "quantize", str(out), "--dtype", "int8", "--no-report"]) == 0
    assert main(["--quiet", "wgsl-pack", str(out), "--dtype", "fp32,int8"]) == 0
    assert main(["--quiet", "cpu-pack", str(out), "--dtype", "fp32,int8"]) == 0
    return out


@pytest.fixture(scope="session")
def page_bundle(tiny_bundle, tmp_path_factory) -> Path:
    """tiny with its int8 and q4 variants and the WGSL packs (fp32, int8, q4); read only."""
    out = tmp_path_factory.mktemp("bundles") / "tiny-page"
    shutil.copytree(tiny_bundle, out)
    assert main(["--quiet", "quantize", str(out), "--dtype", "int8"]) == 0
    assert main(["--quiet", "quantize", str(out), "--dtype", "q4", "--no-report"]) == 0
    assert main(["--quiet", "wgsl-pack", str(out), "--dtype", "fp32,int8,q4"]) == 0
    return out


@pytest.fixture(scope="module")
def bundle(page_bundle) -> Path:
    return page_bundle


@pytest.fixture(scope="module")
def site_url(bundle, tmp_path_factory):
    from janusweb.site import build_site, serve_in_thread
    server, url = serve_in_thread(build_site(bundle, tmp_path_factory.mktemp("web") / "site"))
    yield url
    server.shutdown()


@pytest.fixture(scope="module")
def playwright():
    sync_api = pytest.importorskip("playwright.sync_api", reason="Python Playwright is missing: pip install -e '.[test]'")
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browsers(playwright, site_url):
    """'webgpu': Chromium with WebGPU enabled; 'wasm': the same Chromium without it (no adapter)."""
    from pages import BROWSER_ARGS, CHROMIUM, WEBGPU_ARGS
    out = {name: playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS + extra)
           for name, extra in (("webgpu", WEBGPU_ARGS), ("wasm", []))}
    page = out["webgpu"].new_page()
    page.goto(site_url + "style.css")  # a secure-context origin; navigator.gpu needs one
    adapter = page.evaluate("async () => !!(navigator.gpu && await navigator.gpu.requestAdapter())")
    page.close()
    out["webgpu_ok"] = adapter
    yield out
    for b in (out["webgpu"], out["wasm"]):
        b.close()


@pytest.fixture(scope="module")
def test_png(tmp_path_factory) -> Path:
    """A non-square RGB image (PNG: the browser and PIL decode it to the same bytes)."""
    h, w = 48, 80
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([127 + 120 * np.sin(xx / 6.0), 127 + 120 * np.cos(yy / 5.0), (xx * 3 + yy * 2) % 256], -1)
    path = tmp_path_factory.mktemp("img") / "input.png"
    Image.fromarray(rgb.astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="session")
def kernels_wasm(tmp_path_factory) -> Path:
    """The CPU engine's kernels (web/lib/engines/cpu/build.py, PyPI ziglang) built into a temporary folder."""
    pytest.importorskip("ziglang", reason="the kernels are built with PyPI ziglang: pip install -e .")
    sys.path.insert(0, str(REPO / "web" / "lib" / "engines" / "cpu"))
    from build import build
    return build(tmp_path_factory.mktemp("cpu-wasm"))


MODELS = REPO / "models"


@pytest.fixture(scope="session")
def shapes_bundle(tmp_path_factory) -> Path:
    """`janusweb export models/shapes` (the trained embedded default) with int8 variants and their report, as
    `make demo` makes it; read only."""
    out = tmp_path_factory.mktemp("bundles") / "shapes"
    assert main(["--quiet", "export", str(MODELS / "shapes"), "--out", str(out)]) == 0
    assert main(["--quiet", "quantize", str(out), "--dtype", "int8"]) == 0
    return out
