"""`janusweb build-web` and `janusweb serve`: the site's layout and headers file, atomic writing, bad input, and a
server that stays inside its folders and sends COOP/COEP and the right MIME types."""

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from janusweb.cli import main
from janusweb.site import build_site, serve_in_thread

REPO = Path(__file__).resolve().parent.parent
NEEDS_NODE = pytest.mark.skipif(shutil.which("node") is None or not (REPO / "node_modules" / "esbuild").is_dir(),
                                reason="building the page needs node and the npm packages (npm ci)")
pytestmark = NEEDS_NODE


@pytest.fixture(scope="module")
def site(tiny_bundle, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site") / "site"
    assert main(["--quiet", "build-web", str(tiny_bundle), "--out", str(out)]) == 0
    return out


# files in a served site that are not the page's own or listed in the bundle's manifest
HIDDEN = {"model/.git/config": "[core]", "model/.secret": "token", "model/.quantize.stage-1-x/onnx/g.onnx": "partial",
          "model/.manifest.json.tmp-7": "{}", "model/extra.txt": "unlisted", "model/onnx/.lm_head.onnx.swp": "swap",
          ".env": "KEY=1", ".git/HEAD": "ref"}


@pytest.fixture(scope="module")
def server(site):
    (site.parent / "secret.txt").write_text("outside the site")
    os.symlink(site.parent / "secret.txt", site / "link-out.txt")
    for rel, text in HIDDEN.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)
    srv, url = serve_in_thread(site)
    yield srv.server_address[1]
    srv.shutdown()


def get(port: int, path: str, method: str = "GET"):
    """A raw request: http.client sends the path exactly as given (a browser would normalise '..')."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest(method, path, skip_accept_encoding=True)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


def test_site_layout(site, tiny_bundle):
    for rel in ("index.html", "ui.js", "worker.js", "style.css", "_headers", "ort/ort-wasm-simd-threaded.asyncify.wasm",
                "ort/ort-wasm-simd-threaded.asyncify.mjs", "model/manifest.json", "model/onnx/gen_step.onnx"):
        assert (site / rel).is_file(), rel
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    assert all((site / "model" / rel).read_bytes() == (tiny_bundle / rel).read_bytes() for rel in manifest["files"])
    headers = (site / "_headers").read_text()
    assert "Cross-Origin-Opener-Policy: same-origin" in headers
    assert "Cross-Origin-Embedder-Policy: require-corp" in headers
    assert "application/wasm" in headers
    assert not [p for p in site.parent.iterdir() if p.name.startswith(".site.")]  # no temp folders left
    assert "cdn" not in (site / "worker.js").read_text().lower()  # ORT's files come from the site


def test_build_web_replaces_a_site_atomically_and_refuses_other_folders(tiny_bundle, tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["--quiet", "build-web", str(tiny_bundle), "--out", str(out)]) == 0
    (out / "stale.txt").write_text("old")
    assert main(["--quiet", "build-web", str(tiny_bundle), "--out", str(out)]) == 0
    assert not (out / "stale.txt").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert main(["--quiet", "build-web", str(tiny_bundle), "--out", str(other)]) == 2
    assert (other / "keep.txt").read_text() == "mine"
    assert "not a janusweb site" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["build-web", "serve"])
def test_bad_input_is_one_line_and_exit_2(tmp_path, command):
    args = [str(tmp_path)] + (["--out", str(tmp_path / "out")] if command == "build-web" else ["--port", "0"])
    done = subprocess.run([sys.executable, "-m", "janusweb", command, *args], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a janusweb bundle" in lines[0], done.stderr


@pytest.mark.parametrize("path", [
    "/../manifest.json", "/model/../../secret.txt", "/%2e%2e/secret.txt", "/model/%2e%2e/%2e%2e/secret.txt",
    "/..%2fsecret.txt", "/model/..%2F..%2Fsecret.txt", "/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/model%2f..%2f..%2fsecret.txt",
    "/link-out.txt", "/nope.js", "/model/onnx/nope.onnx", "/model\\..\\..\\secret.txt", "/%00index.html",
])
def test_server_refuses_paths_outside_the_site(server, path):
    status, headers, body = get(server, path)
    assert status == 404, path
    assert b"outside the site" not in body
    assert headers["cross-origin-opener-policy"] == "same-origin"  # error pages too


@pytest.mark.parametrize("rel", HIDDEN)
def test_server_serves_nothing_hidden_or_unlisted(server, rel):
    for path in (f"/{rel}", f"/{rel.replace('.', '%2e')}"):
        status, _, body = get(server, path)
        assert status == 404 and HIDDEN[rel].encode() not in body, path


def test_server_follows_the_manifest_as_it_changes(server, site):
    """A file the manifest starts listing while the server runs (quantize, a pack) is served from then on."""
    assert get(server, "/model/extra.txt")[0] == 404
    manifest = json.loads((site / "model" / "manifest.json").read_text())
    manifest["files"]["extra.txt"] = {"bytes": 8, "sha256": "0" * 64}
    (site / "model" / "manifest.json").unlink()  # a hard link to the bundle's: written anew, as the writers do
    (site / "model" / "manifest.json").write_text(json.dumps(manifest))
    status, _, body = get(server, "/model/extra.txt")
    assert status == 200 and body == b"unlisted"


def test_server_takes_a_burst_of_connections(server):
    """200 connects back to back, none answered yet: none waits for a SYN to be sent again (~1 s; http.server's
    listen backlog of 5 made every 6th do)."""
    socks, slowest = [], 0.0
    try:
        for _ in range(200):
            t0 = time.perf_counter()
            socks.append(socket.create_connection(("127.0.0.1", server), timeout=5))
            slowest = max(slowest, time.perf_counter() - t0)
    finally:
        for sock in socks:
            sock.close()
    assert slowest < 0.9, f"a connect took {slowest:.2f} s"


@pytest.mark.parametrize("how", ["link-out", "relative-out"])
def test_build_web_never_publishes_what_is_outside_the_bundle(tiny_bundle, tmp_path, capsys, how):
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    outside = tmp_path / "elsewhere.onnx"
    shutil.copyfile(bundle / "onnx" / "lm_head.onnx", outside)  # the same bytes: only where it lies is wrong
    (bundle / "onnx" / "lm_head.onnx").unlink()
    os.symlink(outside if how == "link-out" else Path("..") / ".." / outside.name, bundle / "onnx" / "lm_head.onnx")
    assert main(["--quiet", "build-web", str(bundle), "--out", str(tmp_path / "site")]) == 2
    line = capsys.readouterr().err.strip()
    assert len(line.splitlines()) == 1 and "resolves outside the bundle" in line and "Traceback" not in line
    assert not (tmp_path / "site").exists() and not list(tmp_path.glob(".site*"))


def test_build_web_publishes_files_not_links(tiny_bundle, tmp_path):
    """A symlink inside the bundle to a file inside it becomes a plain file of the site."""
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    (bundle / "onnx" / "lm_head.onnx").rename(bundle / "lm_head.real")
    os.symlink(Path("..") / "lm_head.real", bundle / "onnx" / "lm_head.onnx")
    build_site(bundle, tmp_path / "site")
    published = tmp_path / "site" / "model" / "onnx" / "lm_head.onnx"
    assert not published.is_symlink() and published.read_bytes() == (bundle / "lm_head.real").read_bytes()
    assert not (tmp_path / "site" / "model" / "lm_head.real").exists()  # only what the manifest lists


@pytest.mark.parametrize("path,mime", [
    ("/", "text/html"), ("/index.html", "text/html"), ("/worker.js", "text/javascript"),
    ("/ort/ort-wasm-simd-threaded.asyncify.mjs", "text/javascript"),
    ("/ort/ort-wasm-simd-threaded.asyncify.wasm", "application/wasm"), ("/style.css", "text/css"),
    ("/model/config.json", "application/json"), ("/model/onnx/language_model.onnx", "application/octet-stream"),
])
def test_server_headers_and_mime_types(server, site, path, mime):
    status, headers, body = get(server, path)
    assert status == 200
    assert headers["content-type"].startswith(mime)
    assert headers["cross-origin-opener-policy"] == "same-origin"
    assert headers["cross-origin-embedder-policy"] == "require-corp"
    assert int(headers["content-length"]) == len(body)
    status, headers, body = get(server, path, "HEAD")
    assert status == 200 and body == b""


def test_serve_command_hosts_a_bundle(tiny_bundle):
    proc = subprocess.Popen([sys.executable, "-m", "janusweb", "serve", str(tiny_bundle), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, proc.stderr.read() if proc.poll() is not None else line
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        assert get(port, "/")[0] == 200
        status, headers, _ = get(port, "/model/manifest.json")
        assert status == 200 and headers["content-type"].startswith("application/json")
        assert get(port, "/model/../../etc/passwd")[0] == 404
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_build_site_api_returns_the_folder(tiny_bundle, tmp_path):
    assert build_site(tiny_bundle, tmp_path / "x") == (tmp_path / "x").resolve()
