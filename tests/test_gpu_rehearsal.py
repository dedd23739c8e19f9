"""The GPU run's rehearsal, short version (bench/gpu/README.md): the plan's calls in order, each from a clean
folder of HEAD's files + that call's carry, on `tiny` with software WebGPU; every call within 64 MiB and its
time limit, what comes back within the tool's limits, and the chain's bench report holding a WebGPU int8 row
driven without Playwright (native-cuda skipped here, with its reason)."""

import json
import shutil
import subprocess
import sys

import pytest

from janusweb.bench.gpu.cli import REPO
from janusweb.bench.gpu.plan import LIMITS, MIB, calls
from janusweb.bench.gpu.rehearse import find_kit
from janusweb.env import chromium_path
from janusweb.errors import UserError

pytestmark = pytest.mark.skipif(
    chromium_path() is None or shutil.which("node") is None or not (REPO / ".git").exists(),
    reason="the rehearsal needs Chromium, node (the page is built here) and a git checkout")


def test_plan_fits_the_host_limits():
    for call in calls():
        assert call.timeout_s <= LIMITS["call_s"] and call.expected_s <= LIMITS["planned_call_s"], call
        assert len(call.command) <= 2000 and len(call.carry) <= 8, call


def test_readme_pastes_the_plans_commands():
    readme = (REPO / "bench" / "gpu" / "README.md").read_text()
    for call in calls():
        assert f"`{call.command}`" in readme, f"bench/gpu/README.md does not carry {call.name}'s command as plan.py has it"


def test_rehearsal_on_tiny(tmp_path):
    try:
        find_kit(REPO)
    except UserError as e:
        pytest.skip(f"the GPU-browser kit the calls carry is missing: {e}")
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run([sys.executable, "-m", "janusweb", "bench", "gpu", "rehearse", "--work", str(work), "--quick"],
                          capture_output=True, text=True, timeout=1500)
    summary = json.loads((work / "rehearsal.json").read_text())
    assert done.returncode == 0 and summary["ok"], done.stdout[-4000:] + done.stderr[-4000:]
    assert [c["call"] for c in summary["calls"]][:2] == ["1-start", "2-browser-collect"]
    assert all(c["travels_mib"] * MIB <= LIMITS["travel_bytes"] for c in summary["calls"])
    assert [s["step"] for s in summary["steps"] if s["step"] != "bench kernels"] == \
        ["export", "quantize", "wgsl-pack", "bench run"]
    last = work / f"out{len(summary['calls'])}"
    report = json.loads((last / "report.json").read_text())
    assert report["scenario"] == "run" and report["label"] == "gpu-1b"
    webgpu = next(r for r in report["rows"] if r["params"]["backend"] == "webgpu" and r["status"] == "ran")
    assert webgpu["params"]["dtype"] == "int8" and webgpu["metrics"]["text_token_agreement_pct"] > 0
    assert webgpu["label"]["browser"] != "unknown"  # read from the page's user agent, no Playwright
    assert all(r["status"] == "skipped" for r in report["rows"] if r["params"]["backend"].startswith("native-cuda"))
    kernels = json.loads((last / "kernels.json").read_text())["rows"]
    assert all(r["status"] == "ran" and r["metrics"]["ms"] > 0 for r in kernels if r["params"]["backend"] == "webgpu")
