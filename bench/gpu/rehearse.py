"""The rehearsal: the plan's calls, in order, each from a clean folder holding only what would travel (HEAD's
files + that call's carry), on `tiny` with Chromium's software WebGPU adapter. It checks each call's size and
what it returns against the host's limits, and prints per-call and per-step times.

Differences from the GPU host, and only these: `python3` is this machine's (a shim to the running
interpreter); JW (the host's /tmp/jw) is a folder under --work; step2 takes the local Chromium
(JW_LOCAL_CHROMIUM) instead of assembling pack.sh's parts with env.sh (which unpacks the GL loaders into /)."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from janusweb.bench.gpu import stage
from janusweb.bench.gpu.plan import LIMITS, MIB, calls
from janusweb.env import chromium_path
from janusweb.errors import UserError

NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def find_kit(repo: Path) -> Path:
    for up in (repo.parent, repo.parent.parent):
        if (up / "shared" / "gpu-browser" / "env.sh").is_file():
            return up / "shared" / "gpu-browser"
    raise UserError("../shared/gpu-browser (env.sh) not found beside the repository: pass --kit")


def clean_folder(repo: Path, dest: Path, carry: tuple) -> Path:
    """HEAD's files (git archive) plus the carried folders: what the device tool would send."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=repo, capture_output=True, check=True).stdout
    subprocess.run(["tar", "xf", "-"], cwd=dest, input=archive, check=True)
    for c in carry:
        shutil.copytree(repo / c, dest / c)
    return dest


def check_returned(out: Path) -> list:
    """Problems with what a call leaves in $OUT, against the tool's limits on what comes back."""
    files = [f for f in out.rglob("*") if f.is_file()]
    problems = [f"{len(files)} files (at most {LIMITS['files_back']})"] if len(files) > LIMITS["files_back"] else []
    for f in files:
        rel = f.relative_to(out)
        if f.stat().st_size > LIMITS["file_back_bytes"]:
            problems.append(f"{rel}: {f.stat().st_size / MIB:.1f} MiB (at most 16)")
        if len(rel.parts) > 3 or not all(NAME.match(p) for p in rel.parts):
            problems.append(f"{rel}: too deep or an odd name")
    return problems


def rehearse(repo: Path, kit: Path, work: Path, model: str, quick: bool, pack: Path | None, page: Path | None,
             wheels: Path | None) -> int:
    if work.exists() and any(work.iterdir()):
        raise UserError(f"{work} is not empty")
    chromium = chromium_path()
    if not chromium:
        raise UserError("no Chromium here (apt-get install chromium)")
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True,
                           text=True).stdout.strip()
    if dirty:
        sys.stderr.write("note: uncommitted changes are not rehearsed (the clean folders hold HEAD)\n")
    t0 = time.time()
    carried = stage.stage(repo, kit, pack, page, wheels)
    summary = {"stage_s": round(time.time() - t0, 1), "sizes": stage.check_sizes(repo, carried,
                                                                                  stage.missing_parts(pack))}
    shim = work / "bin" / "python3"
    shim.parent.mkdir(parents=True)
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{shim.parent}:{os.environ['PATH']}", "JW": str(work / "host-tmp"),
           "JW_LOCAL_CHROMIUM": chromium}
    for k in ("PYTHONPATH", "CHROMIUM", "CHROMIUM_GPU_FLAGS", "OUT"):
        env.pop(k, None)
    summary["calls"], ok = [], True
    for n, call in enumerate(calls(model, quick), 1):
        if n == 3 and "not done yet" not in summary["calls"][-1]["output_tail"]:
            break  # the chain ended within call 2: call 3 is not pasted
        folder = clean_folder(repo, work / f"call{n}", call.carry)
        size = stage.folder_bytes(folder) + sum(stage.missing_parts(pack).get(c, 0) for c in call.carry)
        out = work / f"out{n}"
        out.mkdir()
        started = time.time()
        done = subprocess.run(["bash", "-c", call.command], cwd=folder, env={**env, "OUT": str(out)},
                              capture_output=True, text=True, timeout=call.timeout_s)
        seconds = time.time() - started
        problems = check_returned(out) + ([f"{size / MIB:.1f} MiB travels"] if size > LIMITS["travel_bytes"] else [])
        problems += [f"exit {done.returncode}"] if done.returncode else []
        problems += [f"{seconds:.0f} s (limit {call.timeout_s})"] if seconds > call.timeout_s else []
        ok &= not problems
        summary["calls"].append({"call": call.name, "travels_mib": round(size / MIB, 1), "seconds": round(seconds, 1),
                                 "returned": sorted(p.name for p in out.iterdir()), "problems": problems,
                                 "output_tail": (done.stdout + done.stderr)[-3000:]})
        shutil.rmtree(folder)  # as on the host, the next call comes with a fresh checkout
    steps_file = work / "host-tmp" / "steps.json"
    summary["steps"] = json.loads(steps_file.read_text()) if steps_file.is_file() else []
    problems = verify_results(work, summary)
    ok &= not problems
    summary["problems"], summary["ok"] = problems, ok
    (work / "rehearsal.json").write_text(json.dumps(summary, indent=1) + "\n")
    sys.stdout.write(text(summary))
    return 0 if ok else 1


def verify_results(work: Path, summary: dict) -> list:
    """The last call's report: the page rows ran on WebGPU, native-cuda is skipped with its reason here."""
    last = work / f"out{len(summary['calls'])}"
    problems = [f"step {s['step']} exited {s['rc']}" for s in summary["steps"] if s["rc"]]
    if not (last / "report.json").is_file():
        return problems + [f"no report.json in {last}"]
    rows = json.loads((last / "report.json").read_text())["rows"]
    if not any(r["params"]["backend"] == "webgpu" and r["status"] == "ran" for r in rows):
        problems.append("no webgpu row ran: " + "; ".join(str(r.get("reason")) for r in rows))
    if not (last / "kernels.json").is_file():
        problems.append("no kernels.json")
    return problems


def text(summary: dict) -> str:
    lines = ["rehearsal: " + ("OK" if summary["ok"] else "FAILED"), f"stage: {summary['stage_s']} s",
             *summary["sizes"], ""]
    for c in summary["calls"]:
        lines.append(f"{c['call']}: {c['seconds']} s, {c['travels_mib']} MiB travelled, returned {len(c['returned'])}"
                     f" files {c['returned']}" + (f"  PROBLEMS: {c['problems']}" if c["problems"] else ""))
    lines += ["", "chain steps (on the simulated host):"]
    lines += [f"  {s['step']:<14} {s['seconds']:>7.1f} s  rc {s['rc']}" for s in summary["steps"]]
    lines += [f"problem: {p}" for p in summary["problems"]]
    return "\n".join(lines) + "\n"
