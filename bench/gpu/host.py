"""The steps the device tool's calls run on the GPU host (plan.py has the command lines). Results go to $OUT,
flat: at most 8 files, each well under 16 MiB."""

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from janusweb.bench.gpu.chain import jw
from janusweb.bench.gpu.plan import PAGE_ARCHIVE
from janusweb.env import versions

CHROMIUM_KEYS = ("CHROMIUM", "CHROMIUM_GPU_FLAGS", "LD_LIBRARY_PATH", "VK_DRIVER_FILES", "VK_ICD_FILENAMES",
                 "__EGL_VENDOR_LIBRARY_FILENAMES")
LOG_TAIL_BYTES = 2 * (1 << 20)


def out_dir() -> Path:
    out = Path(os.environ.get("OUT") or jw() / "out")
    out.mkdir(parents=True, exist_ok=True)
    return out


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def step1(model: str, quick: bool, carry: Path) -> int:
    """Stage Chromium part 1 in /tmp (where env.sh looks for it) and start the chain in a new process session
    (setsid: it outlives this call)."""
    root = jw()
    root.mkdir(parents=True, exist_ok=True)
    (root / "started").write_text(f"{time.time()}\n")  # the calls' waits count from here
    if (carry / "chr.part.aa").is_file():
        shutil.copyfile(carry / "chr.part.aa", "/tmp/chr.part.aa")
    argv = [sys.executable, "-m", "janusweb", "bench", "gpu", "chain", "--model", model, *(["--quick"] if quick else [])]
    with open(root / "chain.log", "a") as log:
        chain = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=root)
    import importlib.util
    import janusweb
    lines = [f"chain started: pid {chain.pid}, session of its own; {' '.join(argv)}",
             f"janusweb from {Path(janusweb.__file__).parent}",
             f"transformers from {Path(importlib.util.find_spec('transformers').origin).parent}",
             json.dumps(versions())]
    (out_dir() / "step1.txt").write_text("\n".join(lines) + "\n")
    say("\n".join(lines))
    return 0


def chromium_variables(carry: Path) -> dict:
    """env.sh's exports (it assembles Chromium in /tmp/chr and unpacks the GL/Vulkan loaders), or, in a rehearsal,
    the local Chromium named by JW_LOCAL_CHROMIUM (software WebGPU)."""
    local = os.environ.get("JW_LOCAL_CHROMIUM")
    if local:
        return {"CHROMIUM": local, "CHROMIUM_GPU_FLAGS": ""}
    dump = "import json, os; print(json.dumps(dict(os.environ)))"
    done = subprocess.run(["bash", "-c", f'source "$1" "" "$2" >&2 && {sys.executable} -c "{dump}"', "env.sh",
                           str(carry / "env.sh"), str(carry)], capture_output=True, text=True, check=True)
    env = json.loads(done.stdout.strip().splitlines()[-1])
    return {k: env[k] for k in CHROMIUM_KEYS if k in env}


def step2(carry: Path, until_s: int) -> int:
    root = jw()
    page = root / "page"
    shutil.rmtree(page, ignore_errors=True)
    with tarfile.open(carry / PAGE_ARCHIVE) as tar:
        tar.extractall(page, filter="data")
    env = chromium_variables(carry)
    tmp = root / "chromium.json.tmp"
    tmp.write_text(json.dumps(env))
    tmp.rename(root / "chromium.json")  # the chain waits for this file: written whole
    say(f"Chromium ready: {env['CHROMIUM']}; page in {page}")
    return collect(until_s)


def _steps() -> list:
    path = jw() / "steps.json"
    return json.loads(path.read_text()) if path.is_file() else []


def collect(until_s: int) -> int:
    """Wait for the chain, at most until `until_s` seconds after step1 started it, then copy what it wrote to
    $OUT (whatever it has by then: the device time is a hard limit, the results are not)."""
    root, out = jw(), out_dir()
    deadline, last = float((root / "started").read_text()) + until_s, None
    while not (root / "done").is_file() and time.time() < deadline:
        steps = _steps()
        if steps and steps[-1] != last:
            last = steps[-1]
            say(f"  {last['step']}: {last['seconds']} s, rc {last['rc']}")
        time.sleep(2)
    done = (root / "done").is_file()
    bench, kernels = root / "results" / "bench", root / "results" / "kernels"
    # a bench still running writes its rows to rows.jsonl in its temporary folder (bench/driver.py)
    partial = sorted((root / "results").glob(".bench.tmp-*/rows.jsonl"))
    picks = {"report.md": bench / "report.md", "report.json": bench / "report.json",
             "rows.jsonl": bench / "rows.jsonl" if (bench / "rows.jsonl").is_file() or not partial else partial[-1],
             "kernels.md": kernels / "report.md", "kernels.json": kernels / "report.json",
             "chain-steps.json": root / "steps.json"}
    copied = [name for name, src in picks.items() if src.is_file() and not shutil.copyfile(src, out / name)]
    log = root / "chain.log"
    if log.is_file():
        data = log.read_bytes()
        (out / "chain.log").write_bytes(data[-LOG_TAIL_BYTES:])
        copied.append("chain.log")
    for s in _steps():
        say(f"{s['step']:<14} {s['seconds']:>7.1f} s  rc {s['rc']}")
    say(("done: " + (root / "done").read_text().strip()) if done else
        "not done yet: paste call 3 (collect) now, within 30 s")
    say("returned: " + ", ".join(copied))
    return 0
