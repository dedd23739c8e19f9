"""`janusweb build-web`: the esbuild output of web/build.mjs (index.html, ui.js, worker.js, style.css, ort/*.wasm) plus
the bundle under model/, and `_headers` (the Netlify / Cloudflare Pages format) with the headers the page needs:
WASM threads need cross-origin isolation (COOP/COEP)."""

import os
import shutil
import subprocess
from pathlib import Path

from janusweb.atomic import atomic_dir
from janusweb.bundle_check import safe_rel
from janusweb.errors import UserError
from janusweb.site.bundle import check_bundle

REPO = Path(__file__).resolve().parent.parent.parent
WEB = REPO / "web"
PACKAGED = Path(__file__).resolve().parent / "dist"  # the page a wheel carries (`make wheel`; no node needed)
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


def check_node(bench: bool = False) -> str | None:
    """The node executable that builds the page from a checkout's web/ (its npm packages installed), or None where
    an installed janusweb carries the page built (PACKAGED; the demo page only); UserError when neither is here."""
    node = shutil.which("node")
    if node and (WEB / "build.mjs").is_file() and (REPO / "node_modules" / "esbuild").is_dir():
        return node
    if not bench and (PACKAGED / "index.html").is_file():
        return None
    raise UserError("building the page needs node and the npm packages: run `npm ci` in the repository "
                    "(or install a janusweb wheel, which carries the page built)")


def build_page(out: Path, bench: bool = False) -> None:
    """The esbuild output of web/build.mjs into `out` (node and node_modules are needed: `npm ci`), or the page the
    installed package carries; `bench`: with the benchmark pages (bench.html, kernels.html, tjs-bench.html and its
    ort-tjs/), which the demo site leaves out."""
    node = check_node(bench)
    if node is None:
        shutil.copytree(PACKAGED, out, dirs_exist_ok=True)
        return
    done = subprocess.run([node, str(WEB / "build.mjs"), "--outdir", str(out), *(["--bench"] if bench else [])],
                          cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        said = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        first = next((line for line in said if "error" in line.lower()), said[-1] if said else "")
        raise RuntimeError(f"web/build.mjs failed (exit code {done.returncode}): {first}")


def _publish(bundle: Path, rel: str, dst: Path) -> None:
    """The bundle's file `rel` at `dst`: a hard link to the file itself (bundles are large) or a copy of it, never a
    symbolic link; a file that resolves outside the bundle is refused (a site is uploaded as it is)."""
    src = (bundle / rel).resolve()
    if not safe_rel(rel) or not src.is_relative_to(bundle.resolve()):
        raise UserError(f"{bundle / rel} resolves outside the bundle ({src}); refusing to publish it")
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed there
        shutil.copyfile(src, dst)


def build_site(bundle: Path, out: Path, page: Path | None = None, bench: bool = False) -> Path:
    """Write the page + the bundle (its manifest's files) to `out`, atomically (temp folder + rename).
    `page`: an already built page (web/build.mjs output) to copy instead of building one (hosts without node);
    `bench`: build the benchmark pages too (`janusweb bench`)."""
    bundle = Path(bundle)
    manifest = check_bundle(bundle)
    out = Path(out).resolve()
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "index.html").is_file())):
        raise UserError(f"{out} exists and is not a janusweb site; refusing to overwrite it")
    if out.is_relative_to(bundle.resolve()):
        raise UserError(f"{out} lies inside the bundle {bundle}; write the site elsewhere")
    with atomic_dir(out) as tmp:
        if page:
            shutil.copytree(page, tmp, dirs_exist_ok=True)
        else:
            build_page(tmp, bench=bench)
        for rel in [*manifest["files"], "manifest.json"]:
            _publish(bundle, rel, tmp / "model" / rel)
        (tmp / "_headers").write_text(HEADERS_FILE)
    return out
