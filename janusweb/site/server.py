"""The HTTP server of `janusweb serve`: static files from a site folder (and a bundle under /model/), with the
headers the page needs (COOP/COEP on every response, error pages included), HTTP/1.1 keep-alive, single byte
ranges (206, so an interrupted download of a large graph resumes), 414 for a path no file system can hold, and
nothing but the page's own files and the bundle's listed ones: nothing outside its folders, nothing hidden, no
file of the bundle's folder that its manifest does not list (404)."""

import json
import mimetypes
import posixpath
import socket
import threading
import urllib.parse
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from janusweb.bundle_check import safe_rel
from janusweb.log import log

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
NAME_MAX, PATH_MAX = 255, 4096  # bytes, as Linux limits a file name and a path
UNSATISFIABLE = "unsatisfiable"


def too_long(url_path: str) -> bool:
    """True when the decoded path, or one of its segments, is longer than a file system allows (414)."""
    path = urllib.parse.unquote(urllib.parse.urlsplit(url_path).path).encode("utf-8", "surrogateescape")
    return len(path) > PATH_MAX or any(len(seg) > NAME_MAX for seg in path.split(b"/"))


class PageRoot:
    """The page's own files: anything in its folder but hidden names (a segment starting with '.')."""

    def __init__(self, folder: Path):
        self.folder = Path(folder).resolve()

    def allows(self, rel: list) -> bool:
        return not any(seg.startswith(".") for seg in rel)


class ModelRoot:
    """A bundle under /model/: its manifest.json and the files the manifest lists, nothing else (no temporary
    folder, no dot-file, nothing a manifest of an earlier state left). The list is read again when the manifest
    changes (quantize or a pack adding files while the server runs)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder).resolve()
        self._stamp, self._files = None, frozenset()
        self._lock = threading.Lock()

    def _listed(self) -> frozenset:
        path = self.folder / "manifest.json"
        try:
            st = path.stat()
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            return frozenset()
        with self._lock:
            if stamp != self._stamp:
                try:
                    files = json.loads(path.read_bytes()).get("files", {})
                    self._files = frozenset(rel for rel in files if safe_rel(rel)) | {"manifest.json"}
                except (OSError, ValueError, AttributeError):
                    self._files = frozenset({"manifest.json"})
                self._stamp = stamp
            return self._files

    def allows(self, rel: list) -> bool:
        return "/".join(rel) in self._listed()


def site_roots(site: Path, bundle: Path | None = None) -> dict:
    """The URL prefixes of a server: the page at /, the bundle (`bundle`, else site/model) at /model/."""
    return {"": PageRoot(site), "model": ModelRoot(bundle if bundle else Path(site) / "model")}


def resolve(roots: dict, url_path: str) -> Path | None:
    """The file a URL path names, or None (404). `roots` maps a URL prefix ('' or 'model') to a PageRoot or
    ModelRoot (site_roots), which says which files it serves.

    The path is percent-decoded once; any '..' segment, NUL or backslash is refused, and the resolved file
    (symlinks followed) must lie inside its root."""
    path = urllib.parse.unquote(urllib.parse.urlsplit(url_path).path)
    if "\0" in path or "\\" in path:
        return None
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None
    prefix = parts[0] if parts and parts[0] in roots and parts[0] != "" else ""
    root = roots[prefix]
    rel = parts[1:] if prefix else parts
    try:
        target = (root.folder / posixpath.join(*rel)).resolve() if rel else root.folder
        if target.is_dir():
            target, rel = target / "index.html", [*rel, "index.html"]
        if not root.allows(rel) or not target.is_relative_to(root.folder) or not target.is_file():
            return None
    except OSError:  # a name the file system refuses (too long, invalid): no such file
        return None
    return target


def byte_range(header: str, size: int):
    """(start, end) inclusive for a single `bytes=` range of a file of `size` bytes; None for a header this
    server answers with the whole file (other units, several ranges, malformed: allowed by RFC 9110);
    UNSATISFIABLE when the range lies beyond the file (416)."""
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or last.isdigit()) or (first and not first.isdigit()) or \
            (last and not last.isdigit()):
        return None
    if not first:  # the last N bytes
        n = int(last)
        return (max(0, size - n), size - 1) if n and size else UNSATISFIABLE
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if last and int(last) < start:
        return None
    return (start, end) if start < size else UNSATISFIABLE


def content_type(path: Path) -> str:
    return MIME.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


class Handler(BaseHTTPRequestHandler):
    roots: dict = {}
    server_version = "janusweb"
    protocol_version = "HTTP/1.1"  # keep-alive: the page's many requests share connections
    timeout = 60  # an idle keep-alive connection is closed after this many seconds
    disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms wait for a delayed ACK

    def _send(self, body: bool) -> None:
        if too_long(self.path):
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG, "a path segment is longer than a file name can be")
            return
        target = resolve(self.roots, self.path)
        if target is None:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        st = target.stat()
        size, etag = st.st_size, f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
        span = None
        if self.headers.get("Range") and self.headers.get("If-Range", etag) == etag:
            span = byte_range(self.headers["Range"], size)
        if span == UNSATISFIABLE:
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, end = span or (0, size - 1)
        self.send_response(HTTPStatus.PARTIAL_CONTENT if span else HTTPStatus.OK)
        self.send_header("Content-Type", content_type(target))
        self.send_header("Content-Length", str(end - start + 1))
        if span:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", formatdate(st.st_mtime, usegmt=True))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        if body and end >= start:
            try:
                with open(target, "rb") as f:
                    self.write_body(f, start, end - start + 1)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                log.debug("client closed the connection during %s", self.path)
                self.close_connection = True

    def write_body(self, f, offset: int, count: int) -> None:
        """`count` bytes of the open file `f` from `offset` (os.sendfile: no copy through Python)."""
        self.connection.sendfile(f, offset, count)

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


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = socket.SOMAXCONN  # http.server's 5 made every 6th of a burst of connects wait ~1 s


def make_server(site: Path, bundle: Path | None, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A server for `site` (a built page), with `bundle` under /model/ when given (else site/model)."""
    handler = type("SiteHandler", (Handler,), {"roots": site_roots(site, bundle)})
    return Server((host, port), handler)


def serve_in_thread(site: Path, bundle: Path | None = None) -> tuple:
    """(server, base URL) serving on a free port of 127.0.0.1 from a daemon thread (tests)."""
    server = make_server(site, bundle)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"
