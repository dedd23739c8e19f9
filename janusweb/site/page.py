"""`janusweb build-web`: the esbuild output of web/ (index.html, ui.js, worker.js, style.css, ort/*.wasm) plus
the bundle under model/, and `_headers` (the Netlify / Cloudflare Pages format) with the headers the page needs:
WASM threads need cross-origin isolation (COOP/COEP)."""

import os
import shutil
import subprocess
from pathlib import Path

from janusweb.atomic import atomic_dir
from janusweb.errors import UserError
from janusweb.site.bundle import check_bundle

REPO = Path(__file__).resolve().parent.parent.parent
WEB = REPO / "web"
HEADERS_FILE = """# Headers for static hosts that read this file (Netlify, Cloudflare Pages). Elsewhere, configure the same:
# the page needs cross-origin isolation (COOP + COEP) for multi-threaded WASM, and these MIME types.
/*
  Cross-Origin-Opener-Policy: same-origin
  Cross-Origin-Embedder-Policy: require-corp
  Cross-Origin-Resource-Policy: same-origin
  X-Content-Type-Options: nosniff
/*.wasm
  Content-Type: application/wasm
/*.mjs
  Content-Type: text/javascript
/*.js
  Content-Type: text/javascript
/*.onnx
  Content-Type: application/octet-stream
/*.onnx_data
  Content-Type: application/octet-stream
/*.json
  Content-Type: application/json
"""


def check_node() -> str:
    """The node executable, or UserError when node or the npm packages are missing."""
    node = shutil.which("node")
    if not node or not (REPO / "node_modules" / "esbuild").is_dir():
        raise UserError("building the page needs node and the npm packages: run `npm ci` in the repository")
    return node


def build_page(out: Path, bench: bool = False) -> None:
    """The esbuild output of web/ into `out` (node and node_modules are needed: `npm ci`); `bench`: with the
    benchmark pages (bench.html, kernels.html, tjs-bench.html and its ort-tjs/), which the demo site leaves out."""
    done = subprocess.run([check_node(), str(WEB / "build.mjs"), "--outdir", str(out), *(["--bench"] if bench else [])],
                          cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"web/build.mjs failed:\n{done.stdout}{done.stderr}")


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)  # bundles are large: a hard link when on the same file system
    except OSError:
        shutil.copy2(src, dst)


def build_site(bundle: Path, out: Path, page: Path | None = None, bench: bool = False) -> Path:
    """Write the page + the bundle (its manifest's files) to `out`, atomically (temp folder + rename).
    `page`: an already built page (web/build.mjs output) to copy instead of building one (hosts without node);
    `bench`: build the benchmark pages too (`janusweb bench`)."""
    manifest = check_bundle(bundle)
    out = Path(out).resolve()
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "index.html").is_file())):
        raise UserError(f"{out} exists and is not a janusweb site; refusing to overwrite it")
    with atomic_dir(out) as tmp:
        if page:
            shutil.copytree(page, tmp, dirs_exist_ok=True)
        else:
            build_page(tmp, bench=bench)
        for rel in [*manifest["files"], "manifest.json"]:
            _link_or_copy(Path(bundle) / rel, tmp / "model" / rel)
        (tmp / "_headers").write_text(HEADERS_FILE)
    return out
