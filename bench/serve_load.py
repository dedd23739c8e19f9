"""The `serve` scenario's load: `janusweb serve`'s HTTP server (janusweb.site.server.make_server) on loopback in
its own process, N keep-alive clients for a bounded time, a 100 MB file (whole or a random byte range, as a
resuming page asks) mixed with small files, every body checked; the server sampled once a second for open
descriptors and resident memory."""

import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BIG = 100 * 2**20
SMALL_SIZES = (512, 4096, 32768, 262144)
SERVER = """
import sys
from pathlib import Path
from janusweb.site.server import make_server
s = make_server(Path(sys.argv[1]), None, "127.0.0.1", 0)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


def make_site(root: Path) -> dict:
    """index.html, model/big.bin (100 MB), small files and the manifest that lists them; returns {url path:
    contents}."""
    (root / "model").mkdir(parents=True)
    rng = random.Random(0)
    files = {"/index.html": b"<!doctype html><title>load</title>", "/model/big.bin": os.urandom(BIG)}
    for i, size in enumerate(SMALL_SIZES * 4):
        files[f"/model/small-{i}.json"] = rng.randbytes(size)
    for url, data in files.items():
        (root / url.lstrip("/")).write_bytes(data)
    # the server answers under /model/ only the files a manifest lists (janusweb/site/server.py ModelRoot)
    listed = {url.removeprefix("/model/"): {"bytes": len(data)} for url, data in files.items()
              if url.startswith("/model/")}
    (root / "model" / "manifest.json").write_text(json.dumps({"files": listed}))
    return {url: memoryview(data) for url, data in files.items()}


def sample(pid: int) -> tuple:
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    rss = next(int(line.split()[1]) for line in open(f"/proc/{pid}/status") if line.startswith("VmRSS:"))
    return fds, rss // 1024


class Client(threading.Thread):
    def __init__(self, port: int, files: dict, until: float, seed: int):
        super().__init__(daemon=True)
        self.port, self.files, self.until, self.rng = port, files, until, random.Random(seed)
        self.requests = self.bytes = self.errors = self.connections = self.big = 0
        self.first_error = None

    def run(self) -> None:
        conn = None
        small = [u for u, data in self.files.items() if len(data) < BIG]
        while time.perf_counter() < self.until:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                self.connections += 1
            big = self.rng.random() < 0.05
            url = "/model/big.bin" if big else self.rng.choice(small)
            headers, lo = {}, 0
            if big and self.rng.random() < 0.5:
                lo = self.rng.randrange(BIG)
                headers["Range"] = f"bytes={lo}-"
            try:
                conn.request("GET", url, headers=headers)
                r = conn.getresponse()
                body = r.read()
                ok = r.status == (206 if lo else 200) and self.files[url][lo:] == body
                self.requests += 1
                self.big += big
                self.bytes += len(body)
                if not ok:
                    raise RuntimeError(f"{url}: status {r.status}, {len(body)} bytes")
            except (OSError, http.client.HTTPException, RuntimeError) as e:
                self.errors += 1
                self.first_error = self.first_error or repr(e)
                conn.close()
                conn = None
        if conn:
            conn.close()


def run(clients: int, seconds: float) -> dict:
    """The server on a fresh site in its own process, `clients` keep-alive clients for `seconds`; every body
    checked; the server's descriptors and resident memory sampled once a second."""
    with tempfile.TemporaryDirectory(prefix="janusweb-load-") as tmp:
        files = make_site(Path(tmp))
        server = subprocess.Popen([sys.executable, "-c", SERVER, tmp], stdout=subprocess.PIPE, text=True)
        try:
            port = int(server.stdout.readline())
            samples = [sample(server.pid)]
            t0 = time.perf_counter()
            workers = [Client(port, files, t0 + seconds, seed) for seed in range(clients)]
            for w in workers:
                w.start()
            while any(w.is_alive() for w in workers):
                time.sleep(1)
                samples.append(sample(server.pid))
            wall = time.perf_counter() - t0
            time.sleep(2)  # the server closes its side of the finished connections
            after = sample(server.pid)
        finally:
            server.terminate()
            server.wait(10)
    return {"wall_s": wall, "workers": workers, "samples": samples, "after": after}
