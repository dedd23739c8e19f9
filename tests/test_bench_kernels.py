"""`janusweb bench-kernels` on a small shape: every weight format runs on onnxruntime's CPU EP and in Chromium on
WASM, with the same outputs, and the report files are written."""

import json

import pytest

from janusweb.cli import main
from janusweb.env import chromium_path

pytest.importorskip("playwright.sync_api", reason="Python Playwright is missing: pip install -e '.[test]'")


@pytest.mark.skipif(chromium_path() is None, reason="no Chromium (apt-get install chromium)")
def test_every_format_runs_and_matches_on_wasm(tmp_path):
    out = tmp_path / "kernels"
    assert main(["--quiet", "bench-kernels", "--out", str(out), "--backends", "ort-cpu,wasm", "--shape", "2x64x96",
                 "--repeats", "2"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert set(rep["backends"]) == {"ort-cpu", "wasm"}
    formats = {"fp32", "int8", "int8-acc4", "q4", "q4-acc4"}
    for backend in rep["backends"].values():
        assert set(backend["results"]) == formats
        assert all(r["ms"]["n"] == 2 and r["ms"]["p50"] > 0 for r in backend["results"].values())
    wasm = rep["backends"]["wasm"]["results"]
    # same file, same input: float activations agree to rounding; int8 activations (acc4) within their rounding
    assert max(wasm[f]["max_abs_diff_vs_ort_cpu"] for f in ("fp32", "int8", "q4")) < 1e-4
    assert max(wasm[f]["max_abs_diff_vs_ort_cpu"] for f in ("int8-acc4", "q4-acc4")) < 0.1
    assert "| onnxruntime CPU EP (Python) |" in (out / "report.md").read_text()
