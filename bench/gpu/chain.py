"""The work that outlives the device tool's calls (started by step1 in a new process session): export, quantize,
WGSL pack, then, once step2 has assembled Chromium, `bench kernels` (beside the export: it needs no bundle) and
`bench run --suite gpu-1b` (bench/suites.json). Each step's time and exit status go to $JW/steps.json; `$JW/done` marks the end."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

CHROMIUM_WAIT_S = 600


def jw() -> Path:
    return Path(os.environ.get("JW", "/tmp/jw"))


def workload(model: str, quick: bool) -> dict:
    """The bench's arguments beyond the suite gpu-1b (1 image with CFG and 128 text tokens, every page engine, on
    the real model; native CUDA last: its torch.compile warm-up is the least predictable cost, and rows.jsonl keeps
    the browser rows if the run is cut short); --quick (the CI rehearsal) keeps one engine, a few tokens and a
    small kernel shape."""
    if quick:
        return {"bench": ["--backend", "webgpu,native-cuda", "--engine", "auto", "--text-tokens", "4"],
                "kernels": ["--shape", "2x64x96", "--repeats", "2"]}
    return {"bench": [], "kernels": ["--repeats", "20"]}


class Steps:
    def __init__(self, path: Path):
        self.path, self.rows, self.lock = path, [], threading.Lock()

    def run(self, name: str, argv: list, env: dict | None = None) -> int:
        t0 = time.time()
        with open(jw() / "chain.log", "a") as log:
            log.write(f"\n=== {name}: {' '.join(argv)}\n")
            log.flush()
            rc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
        with self.lock:
            self.rows.append({"step": name, "start": round(t0, 1), "seconds": round(time.time() - t0, 1), "rc": rc})
            self.path.write_text(json.dumps(self.rows, indent=1) + "\n")
        return rc


def chromium_env() -> dict | None:
    """The variables step2 wrote (CHROMIUM, CHROMIUM_GPU_FLAGS, the Vulkan driver's), once it has."""
    path = jw() / "chromium.json"
    deadline = time.time() + CHROMIUM_WAIT_S
    while not path.is_file() and time.time() < deadline:
        time.sleep(1)
    return json.loads(path.read_text()) if path.is_file() else None


def chain(model: str, quick: bool) -> int:
    root = jw()
    bundle, results, page = root / "bundle", root / "results", root / "page"
    steps = Steps(root / "steps.json")
    cli = [sys.executable, "-m", "janusweb", "--quiet"]
    args = workload(model, quick)
    kernels_done = threading.Event()

    def kernels():
        env = chromium_env()
        if env:
            steps.run("bench kernels", [*cli, "bench", "kernels", "--backend", "webgpu,ort-cpu", "--page", str(page),
                                        "--driver", "http", "--browser", env["CHROMIUM"], "--out",
                                        str(results / "kernels"), *args["kernels"]], {**os.environ, **env})
        kernels_done.set()

    threading.Thread(target=kernels, daemon=True).start()
    ok = (steps.run("export", [*cli, "export", model, "--out", str(bundle), "--no-validate"]) == 0
          and steps.run("quantize", [*cli, "quantize", str(bundle), "--dtype", "int8", "--no-report"]) == 0
          and steps.run("wgsl-pack", [*cli, "wgsl-pack", str(bundle), "--dtype", "int8"]) == 0)
    if ok:
        env = chromium_env() or {}
        kernels_done.wait()  # one GPU user at a time
        browser = ["--browser", env["CHROMIUM"]] if env else []
        steps.run("bench run", [*cli, "bench", "run", "--suite", "gpu-1b", "--bundle", str(bundle), "--page",
                                str(page), "--out", str(results / "bench"), *browser, *args["bench"]],
                  {**os.environ, **env})
    (root / "done").write_text("ok\n" if ok else "failed before the bench\n")
    return 0 if ok else 1
