"""Load test of `janusweb serve`'s HTTP server on loopback: N keep-alive clients for a bounded time, a 100 MB
file (whole or a random byte range, as a resuming page asks) mixed with small files, every body checked.
The server runs in its own process, sampled once a second for open descriptors and resident memory.

    python -m janusweb.bench.serve_load --out bench/results/DATE-cpu-2core-serve [--clients 8 --seconds 30]

Writes report.json and report.md: requests/s, MB/s, errors, descriptors and memory (start, peak, end)."""

import argparse
import http.client
import json
import os
import platform
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
    """index.html, model/big.bin (100 MB) and small files; returns {url path: contents}."""
    (root / "model").mkdir(parents=True)
    rng = random.Random(0)
    files = {"/index.html": b"<!doctype html><title>load</title>", "/model/big.bin": os.urandom(BIG)}
    for i, size in enumerate(SMALL_SIZES * 4):
        files[f"/model/small-{i}.json"] = rng.randbytes(size)
    for url, data in files.items():
        (root / url.lstrip("/")).write_bytes(data)
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


def run(out: Path, clients: int, seconds: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="janusweb-load-") as tmp:
        files = make_site(Path(tmp))
        server = subprocess.Popen([sys.executable, "-c", SERVER, tmp], stdout=subprocess.PIPE, text=True)
        load_before = os.getloadavg()
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
    requests, nbytes = sum(w.requests for w in workers), sum(w.bytes for w in workers)
    report = {
        "what": f"{clients} keep-alive clients for {seconds:.0f} s on loopback; 5% of requests the 100 MB file "
                "(half of them a random byte range), the rest small files (0.5-256 KB); every body checked",
        "clients": clients, "seconds": round(wall, 1), "requests": requests,
        "requests_per_s": round(requests / wall, 1), "mb_per_s": round(nbytes / wall / 1e6, 1),
        "large_file_requests": sum(w.big for w in workers),
        "connections": sum(w.connections for w in workers), "errors": sum(w.errors for w in workers),
        "first_error": next((w.first_error for w in workers if w.first_error), None),
        "server_fds": {"start": samples[0][0], "peak": max(s[0] for s in samples), "after": after[0]},
        "server_rss_mb": {"start": samples[0][1], "peak": max(s[1] for s in samples), "after": after[1]},
        "host": {"cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
                 "kernel": platform.release(),
                 "load_average_1min": {"before": round(load_before[0], 1), "after": round(os.getloadavg()[0], 1)}},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(report_md(report))
    return report


def report_md(r: dict) -> str:
    return (f"# janusweb serve: load test\n\n{r['what']}.\n\n| | |\n|---|---|\n"
            f"| requests | {r['requests']} ({r['requests_per_s']} /s; {r['large_file_requests']} of the 100 MB file) |\n"
            f"| throughput | {r['mb_per_s']} MB/s |\n"
            f"| connections opened | {r['connections']} |\n| errors | {r['errors']} |\n"
            f"| server descriptors (start / peak / after) | {r['server_fds']['start']} / {r['server_fds']['peak']} / "
            f"{r['server_fds']['after']} |\n| server resident memory, MB (start / peak / after) | "
            f"{r['server_rss_mb']['start']} / {r['server_rss_mb']['peak']} / {r['server_rss_mb']['after']} |\n"
            f"| host | {r['host']['cpus']} CPUs, {r['host']['machine']}, Python {r['host']['python']}, "
            f"Linux {r['host']['kernel']}; load average {r['host']['load_average_1min']['before']} before, "
            f"{r['host']['load_average_1min']['after']} after (other jobs shared the cores) |\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m janusweb.bench.serve_load", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=30)
    args = p.parse_args(argv)
    r = run(Path(args.out), args.clients, args.seconds)
    sys.stdout.write(report_md(r))
    return 1 if r["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
