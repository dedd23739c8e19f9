"""The wheel, installed as a user installs it: built from this checkout's files with the page in it (as
`make wheel` builds it), installed into a fresh virtual environment outside the checkout, then run there with no
node on PATH: `janusweb export tiny --out b`, `janusweb serve b`, and the served page answers in Chromium with the
Python reference's tokens.

The slowest test of the suite's installation kind: a fresh venv installs torch (from the local wheel pip already
uses) and every dependency; the time of each step is printed."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from janusweb.env import chromium_path
from janusweb.errors import UserError
from janusweb.generate import ModelDims, generate_text
from janusweb.graphs import OrtGraphs
from janusweb.prompts import SpecialIds, understanding_inputs
from janusweb.site.page import PACKAGED, REPO, build_page, check_node

sync_api = pytest.importorskip("playwright.sync_api", reason="Python Playwright is missing: pip install -e '.[test]'")
CHROMIUM = chromium_path()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (apt-get install chromium)")
QUESTION, TOKENS = "Hello there", 6


def _timed(what: str, cmd: list, **kwargs) -> subprocess.CompletedProcess:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    print(f"[wheel] {what}: {time.perf_counter() - t0:.0f} s")
    assert done.returncode == 0, f"{what}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of this checkout's files (tracked and new, not ignored) with the page built into the package."""
    try:
        if check_node() is None:
            raise UserError("no node")
    except UserError:
        pytest.skip("building the page needs node and the npm packages (npm ci)")
    src = tmp_path_factory.mktemp("src")
    files = subprocess.run(["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard", "-z"],
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        if (REPO / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, src / rel)
    build_page(src / PACKAGED.relative_to(REPO))
    out = tmp_path_factory.mktemp("wheel")
    _timed("pip wheel", [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)])
    return next(out.glob("janusweb-*.whl"))


def test_installed_wheel_exports_and_serves_without_node(wheel, tmp_path):
    venv, home = tmp_path / "venv", tmp_path / "user"
    home.mkdir()
    _timed("venv", [sys.executable, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    _timed("pip install torch==2.13.0", [*pip, "torch==2.13.0"])
    _timed("pip install the wheel", [*pip, str(wheel)])
    env = {"PATH": str(venv / "bin"), "HOME": str(home), "LANG": "C.UTF-8", "TMPDIR": str(tmp_path)}
    assert shutil.which("node", path=env["PATH"]) is None
    where = _timed("import", [str(venv / "bin" / "python"), "-c", "import janusweb; print(janusweb.__file__)"],
                   env=env, cwd=home).stdout
    assert Path(where.strip()).is_relative_to(venv)  # the installed package, not this checkout
    _timed("janusweb export tiny", [str(venv / "bin" / "janusweb"), "--quiet", "export", "tiny", "--out", "b"],
           env=env, cwd=home, timeout=1800)
    bundle = home / "b"
    server = subprocess.Popen([str(venv / "bin" / "janusweb"), "serve", "b", "--port", "0"], env=env, cwd=home,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        assert line.startswith("serving b at http://127.0.0.1:"), line + server.stderr.read()
        url = line.split(" at ")[1].split()[0]
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{url}?autostart=1&backend=wasm&dtype=fp32")
            page.wait_for_function("window.janusweb && (window.janusweb.ready || window.janusweb.error)",
                                   timeout=300_000)
            assert page.evaluate("window.janusweb.error") is None and not errors, errors
            served = page.evaluate("async () => new Uint8Array(await (await fetch('cpu/kernels.wasm'))"
                                   ".arrayBuffer()).length")
            page.fill("#question", QUESTION)
            page.fill("#max-tokens", str(TOKENS))
            page.click("#ask")
            page.wait_for_function("window.janusweb.chat.done || window.janusweb.error", timeout=300_000)
            assert page.evaluate("window.janusweb.error") is None
            tokens = page.evaluate("window.janusweb.chat.tokens")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=60)
    packaged = next(venv.glob("lib/python*/site-packages/janusweb/site/dist"))
    assert served == (packaged / "cpu" / "kernels.wasm").stat().st_size > 0  # the wheel's own kernels
    graphs = OrtGraphs(bundle)
    dims = ModelDims.from_bundle_config(graphs.config)
    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    ids = SpecialIds.from_tokenizer(tok)
    inputs = understanding_inputs(tok, ids, QUESTION, dims.num_image_tokens, with_image=False)
    assert tokens == generate_text(graphs, dims, inputs, TOKENS, eos_id=ids.eos)
