"""The static page around a bundle: `janusweb build-web` writes a self-contained site folder, `janusweb serve`
hosts a bundle (or a built site) on a small HTTP server with the headers the page needs.

Site layout: the esbuild output of web/ (index.html, ui.js, worker.js, style.css, ort/*.wasm) plus the bundle
under model/. WASM threads need cross-origin isolation, so every response carries COOP/COEP; `_headers` (the
Netlify / Cloudflare Pages format) documents the same headers for static hosts.
"""

import json
import mimetypes
import os
import posixpath
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from janusweb.atomic import atomic_dir
from janusweb.errors import UserError
from janusweb.log import log

REPO = Path(__file__).resolve().parent.parent
WEB = REPO / "web"
PAGE_GRAPHS = ("prepare_inputs_embeds", "language_model", "lm_head", "gen_step", "image_decode")

HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}
MIME = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
    ".json": "application/json", ".map": "application/json", ".wasm": "application/wasm",
    ".onnx": "application/octet-stream", ".onnx_data": "application/octet-stream", ".data": "application/octet-stream",
    ".png": "image/png", ".txt": "text/plain; charset=utf-8",
}
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


def check_bundle(path: Path) -> dict:
    """The manifest of a bundle the page can run; UserError (one line, exit 2) for anything else."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path} is not a folder")
    if not (path / "manifest.json").is_file() or not (path / "config.json").is_file():
        raise UserError(f"{path} is not a janusweb bundle (no manifest.json / config.json); "
                        "write one with `janusweb export`")
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path}/manifest.json is unreadable: {e}") from e
    missing = [g for g in PAGE_GRAPHS if g not in manifest.get("graphs", {})]
    if missing:
        raise UserError(f"{path} lacks the graphs {', '.join(missing)} that the page runs; re-export it")
    return manifest


def build_page(out: Path, bench: bool = False) -> None:
    """The esbuild output of web/ into `out` (node and node_modules are needed: `npm ci`); `bench`: with the
    benchmark pages (bench.html, kernels.html, tjs-bench.html and its ort-tjs/), which the demo site leaves out."""
    node = shutil.which("node")
    if not node or not (REPO / "node_modules" / "esbuild").is_dir():
        raise UserError("building the page needs node and the npm packages: run `npm ci` in the repository")
    done = subprocess.run([node, str(WEB / "build.mjs"), "--outdir", str(out), *(["--bench"] if bench else [])],
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


def resolve(roots: dict, url_path: str) -> Path | None:
    """The file a URL path names, or None (404). `roots` maps a URL prefix ('' or 'model') to a folder.

    The path is percent-decoded once; any '..' segment, NUL or backslash is refused, and the resolved file
    (symlinks followed) must lie inside its root."""
    path = urllib.parse.unquote(urllib.parse.urlsplit(url_path).path)
    if "\0" in path or "\\" in path:
        return None
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None
    prefix = parts[0] if parts and parts[0] in roots and parts[0] != "" else ""
    root = Path(roots[prefix]).resolve()
    rel = parts[1:] if prefix else parts
    target = (root / posixpath.join(*rel)).resolve() if rel else root
    if target.is_dir():
        target = target / "index.html"
    if not target.is_relative_to(root) or not target.is_file():
        return None
    return target


def content_type(path: Path) -> str:
    return MIME.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


class Handler(BaseHTTPRequestHandler):
    roots: dict = {}
    server_version = "janusweb"

    def _send(self, body: bool) -> None:
        target = resolve(self.roots, self.path)
        if target is None:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        size = target.stat().st_size
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type(target))
        self.send_header("Content-Length", str(size))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        if body:
            try:
                with open(target, "rb") as f:
                    shutil.copyfileobj(f, self.wfile, 1 << 20)
            except (BrokenPipeError, ConnectionResetError):
                log.debug("client closed the connection during %s", self.path)

    def end_headers(self) -> None:
        for k, v in HEADERS.items():  # on every response, error pages included
            self.send_header(k, v)
        super().end_headers()

    def do_GET(self) -> None:  # noqa: N802 (http.server's names)
        self._send(True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._send(False)

    def log_message(self, format, *args) -> None:  # noqa: A002
        log.debug("%s - %s", self.address_string(), format % args)


def make_server(site: Path, bundle: Path | None, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A server for `site` (a built page), with `bundle` under /model/ when given (else site/model)."""
    roots = {"": Path(site), "model": Path(bundle) if bundle else Path(site) / "model"}
    handler = type("SiteHandler", (Handler,), {"roots": roots})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def serve(path: Path, host: str, port: int) -> None:
    """`janusweb serve PATH`: a built site (index.html + model/) or a bundle (the page is built first)."""
    path = Path(path)
    if (path / "index.html").is_file() and (path / "model").is_dir():
        check_bundle(path / "model")
        site, bundle, tmp = path, None, None
    else:
        check_bundle(path)
        tmp = Path(tempfile.mkdtemp(prefix="janusweb-page-"))
        build_page(tmp)
        site, bundle = tmp, path
    try:
        server = make_server(site, bundle, host, port)
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror}") from e
    sys.stdout.write(f"serving {path} at http://{host}:{server.server_address[1]}/ (Ctrl-C stops)\n")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def serve_in_thread(site: Path, bundle: Path | None = None) -> tuple:
    """(server, base URL) serving on a free port of 127.0.0.1 from a daemon thread (tests)."""
    server = make_server(site, bundle)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"
