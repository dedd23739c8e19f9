"""`janusweb bench kernels` on a small shape: every weight format runs on onnxruntime's CPU EP and in Chromium on
WASM, with the same outputs, one typed row per backend and format."""

import json

import pytest

from janusweb.cli import main
from janusweb.env import chromium_path

pytest.importorskip("playwright.sync_api", reason="Python Playwright is missing: pip install -e '.[test]'")


@pytest.mark.skipif(chromium_path() is None, reason="no Chromium (apt-get install chromium)")
def test_every_format_runs_and_matches_on_wasm(tmp_path):
    out = tmp_path / "kernels"
    assert main(["--quiet", "bench", "kernels", "--out", str(out), "--backend", "ort-cpu,wasm", "--shape", "2x64x96",
                 "--repeats", "2", "--threads", "1,2"]) == 0
    rep = json.loads((out / "report.json").read_text())
    rows = {(r["params"]["backend"], r["params"]["threads"], r["params"]["format"]): r for r in rep["rows"]}
    formats = ("fp32", "int8", "int8-acc4", "q4", "q4-acc4")
    assert set(rows) == {("ort-cpu", None, f) for f in formats} | {("wasm", t, f) for t in (1, 2) for f in formats}
    assert all(r["status"] == "ran" and len(r["detail"]["ms"]) == 2 and r["metrics"]["ms"] > 0 for r in rows.values())
    for t in (1, 2):
        wasm = {f: rows[("wasm", t, f)]["metrics"]["max_abs_diff_vs_ort_cpu"] for f in formats}
        # same file, same input: float activations agree to rounding; int8 activations (acc4) within their rounding
        assert max(wasm[f] for f in ("fp32", "int8", "q4")) < 1e-4
        assert max(wasm[f] for f in ("int8-acc4", "q4-acc4")) < 0.1
        assert rows[("wasm", t, "fp32")]["label"]["threads"] == t
    assert "onnxruntime" in rows[("ort-cpu", None, "fp32")]["label"]["runner"]
