"""The server's edges: 414 for a path segment longer than a file name, byte ranges (206/416, If-Range),
HTTP/1.1 keep-alive; the page's loader resuming a broken download with a Range request; and `janusweb serve`
leaving no temporary page behind (port taken, SIGTERM)."""

import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from janusweb.site.server import Handler, serve_in_thread, site_roots

REPO = Path(__file__).resolve().parent.parent
NODE = shutil.which("node")
DATA = os.urandom(3 * 2**20 + 123)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("serve") / "site"
    (root / "model").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>t</title>")
    (root / "model" / "big.bin").write_bytes(DATA)
    manifest = {"files": {"big.bin": {"bytes": len(DATA), "sha256": hashlib.sha256(DATA).hexdigest()}}, "graphs": {}}
    (root / "model" / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def port(site):
    server, _ = serve_in_thread(site)
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def request(port: int, path: str, headers=None, method="GET"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, headers=headers or {})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


@pytest.mark.parametrize("path", ["/" + "a" * 256, "/model/" + "b" * 300 + ".onnx", "/x/" + "%41" * 256])
def test_a_path_segment_longer_than_a_file_name_is_414(port, path):
    status, headers, _ = request(port, path)
    assert status == 414
    assert headers["cross-origin-embedder-policy"] == "require-corp"
    assert request(port, "/" + "a" * 255)[0] == 404  # the longest legal name: an ordinary miss


@pytest.mark.parametrize("spec,lo,hi", [("bytes=10-19", 10, 19), ("bytes=1000-", 1000, len(DATA) - 1),
                                        ("bytes=-7", len(DATA) - 7, len(DATA) - 1),
                                        ("bytes=5-99999999", 5, len(DATA) - 1)])
def test_range_requests_get_206(port, spec, lo, hi):
    status, headers, body = request(port, "/model/big.bin", {"Range": spec})
    assert status == 206
    assert headers["content-range"] == f"bytes {lo}-{hi}/{len(DATA)}"
    assert body == DATA[lo:hi + 1] and int(headers["content-length"]) == len(body)


def test_unsatisfiable_and_ignored_ranges(port):
    status, headers, body = request(port, "/model/big.bin", {"Range": f"bytes={len(DATA)}-"})
    assert status == 416 and headers["content-range"] == f"bytes */{len(DATA)}" and body == b""
    for spec in ("bytes=0-1,5-6", "items=0-3", "bytes=9-3"):  # answered with the whole file
        status, headers, body = request(port, "/model/big.bin", {"Range": spec})
        assert status == 200 and body == DATA and headers["accept-ranges"] == "bytes"


def test_if_range(port):
    etag = request(port, "/model/big.bin", method="HEAD")[1]["etag"]
    assert request(port, "/model/big.bin", {"Range": "bytes=0-3", "If-Range": etag})[0] == 206
    status, _, body = request(port, "/model/big.bin", {"Range": "bytes=0-3", "If-Range": '"other"'})
    assert status == 200 and body == DATA  # the file changed since: the whole of it


def test_keep_alive(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    socks = []
    for path in ("/index.html", "/model/manifest.json", "/model/big.bin", "/index.html"):
        conn.request("GET", path)
        r = conn.getresponse()
        assert r.status == 200 and r.version == 11
        r.read()
        socks.append(conn.sock)
    assert all(s is socks[0] and s is not None for s in socks)  # one connection for all four
    conn.close()


class Flaky(Handler):
    """Drops the connection after `cuts[i]` bytes of the i-th body; `ignore_range` answers every request whole."""
    cuts: list = []
    ranges: list = []
    ignore_range = False

    def do_GET(self):  # noqa: N802
        if self.path.endswith("big.bin"):
            self.ranges.append(self.headers.get("Range"))
            if self.ignore_range and "Range" in self.headers:
                del self.headers["Range"]
        super().do_GET()

    def write_body(self, f, offset, count):
        if self.path.endswith("big.bin") and self.cuts:
            self.connection.sendfile(f, offset, min(self.cuts.pop(0), count))
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        super().write_body(f, offset, count)


LOADER_SCRIPT = """
import { BundleLoader } from '@WEB@/loader.js';
const loader = new BundleLoader(process.argv[2], () => {});
await loader.loadManifest();
const data = await loader.file('big.bin');
const digest = Buffer.from(await crypto.subtle.digest('SHA-256', data)).toString('hex');
process.stdout.write(JSON.stringify({ bytes: data.length, sha256: digest }));
"""


@pytest.mark.skipif(NODE is None, reason="node is needed to run web/lib/loader.js")
@pytest.mark.parametrize("ignore_range", [False, True], ids=["resumes-with-range", "server-without-ranges"])
def test_loader_resumes_a_broken_download(site, tmp_path, ignore_range):
    handler = type("T", (Flaky,), {"roots": site_roots(site), "cuts": [2**20, 2**20 + 5],
                                   "ranges": [], "ignore_range": ignore_range})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (tmp_path / "t.mjs").write_text(LOADER_SCRIPT.replace("@WEB@", (REPO / "web" / "lib").as_posix()))
        done = subprocess.run([NODE, str(tmp_path / "t.mjs"), f"http://127.0.0.1:{server.server_address[1]}/model/"],
                              capture_output=True, text=True, timeout=60)
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"bytes": len(DATA), "sha256": hashlib.sha256(DATA).hexdigest()}
    if ignore_range:
        assert len(handler.ranges) == 3  # restarted twice from the start, whole file each time
    else:
        assert handler.ranges == [None, f"bytes={2**20}-", f"bytes={2 * 2**20 + 5}-"]


def _pages(tmp: Path) -> set:
    return {p.name for p in tmp.glob("janusweb-page-*")}


@pytest.mark.skipif(NODE is None or not (REPO / "node_modules" / "esbuild").is_dir(), reason="needs node + npm ci")
def test_serve_leaves_no_temporary_page(tiny_bundle, tmp_path):
    # the commands' temporary folder is this test's own (TMPDIR): a `janusweb serve` of a test running beside this
    # one (pytest -n) neither adds a page here nor removes one
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    before = _pages(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "janusweb", "serve", str(tiny_bundle), "--port", str(busy)],
                              capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and str(busy) in done.stderr
    assert _pages(tmp_path) <= before
    proc = subprocess.Popen([sys.executable, "-m", "janusweb", "serve", str(tiny_bundle), "--port", "0", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert "http://127.0.0.1:" in proc.stdout.readline()
    assert len(_pages(tmp_path) - before) == 1  # the page it built, while it runs
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and len(err.strip().splitlines()) == 1 and "SIGTERM" in err
    assert _pages(tmp_path) <= before
