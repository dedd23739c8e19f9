"""`janusweb bench` smoke on `tiny`: every backend this machine has (WebGPU on SwiftShader, WASM, native CPU,
onnxruntime CPU), report files written, honest labels, and 100% token parity for fp32 everywhere."""

import json
import shutil

import pytest

from janusweb.cli import main
from janusweb.env import chromium_path

BROWSER = pytest.mark.skipif(chromium_path() is None or shutil.which("node") is None,
                             reason="no Chromium or node here: browser backends not benchmarked")


def _bench(bundle, out, backends, images="1,2"):
    argv = ["--quiet", "bench", str(bundle), "--backends", backends, "--out", str(out), "--repeats", "1",
            "--text-tokens", "12", "--images", images]
    assert main(argv) == 0
    return json.loads((out / "report.json").read_text())


def _check_fp32_parity(report, names):
    ran = {r["name"]: r for r in report["rows"] if r["dtype"] == "fp32" and "result" in r}
    assert set(names) <= set(ran), [r.get("skipped") for r in report["rows"]]
    for name in names:
        p = ran[name]["parity"]
        assert p["text_token_agreement_pct"] == 100.0 and p["text_first_divergence"] is None, (name, p)
        assert p["image_token_agreement_pct_1"] == 100.0 and p["image_token_agreement_pct_2"] == 100.0, (name, p)
        g = ran[name]["result"]["generation"]["1"]
        assert g["s_per_image"] > 0 and g["ms_per_step"]["mean"] > 0
        assert ran[name]["result"]["understanding"]["decode_tokens_per_s"] > 0


def test_native_and_onnxruntime(tiny_bundle, tmp_path):
    report = _bench(tiny_bundle, tmp_path, "native-cpu,ort-cpu,native-cuda,ort-cuda")
    _check_fp32_parity(report, ["native-cpu", "ort-cpu"])
    skipped = {r["name"]: r["skipped"] for r in report["rows"] if "skipped" in r}
    assert "native-cuda" in skipped and "ort-cuda" in skipped  # this machine has no GPU: said, not faked
    for name in ("report.json", "report.md", "steps.png"):
        assert (tmp_path / name).stat().st_size > 0
    md = (tmp_path / "report.md").read_text()
    assert "| native-cpu | fp32 |" in md and "## Skipped" in md


@BROWSER
def test_browser_backends(tiny_bundle, tmp_path):
    report = _bench(tiny_bundle, tmp_path, "webgpu,wasm")
    _check_fp32_parity(report, ["webgpu", "wasm"])
    webgpu = next(r for r in report["rows"] if r["name"] == "webgpu" and "result" in r)
    assert webgpu["label"]["ep"] == "webgpu" and webgpu["label"]["browser"]
    if "swiftshader" in webgpu["label"]["adapter"].lower():
        assert webgpu["label"]["device"].startswith("software WebGPU")


def test_bad_input(tmp_path):
    assert main(["--quiet", "bench", str(tmp_path), "--out", str(tmp_path / "r")]) == 2


@BROWSER
def test_transformers_js_backends(tiny_bundle, tmp_path):
    """transformers.js on the same bundle and browser: greedy text equals the reference; images are timed per
    step (its own sampler: no image parity)."""
    report = _bench(tiny_bundle, tmp_path, "tjs-wasm,tjs-webgpu", images="1")
    ran = {r["name"]: r for r in report["rows"] if r["dtype"] == "fp32" and "result" in r}
    assert "tjs-wasm" in ran, [r.get("skipped") for r in report["rows"]]
    steps = json.loads((tiny_bundle / "config.json").read_text())["janusweb"]["num_image_tokens"]
    for row in ran.values():
        assert row["label"]["runner"].startswith("transformers.js ")
        assert row["parity"]["text_token_agreement_pct"] == 100.0
        g = row["result"]["generation"]
        assert len(g["1"]["step_ms"]) == steps - 1  # one time per token
        assert g["1"]["s_per_image"] > 0 and g["1"]["ms_per_step"]["p50"] > 0
    if "tjs-webgpu" in ran and "swiftshader" in ran["tjs-webgpu"]["label"]["adapter"].lower():
        assert ran["tjs-webgpu"]["label"]["device"].startswith("software WebGPU")


@BROWSER
def test_chromium_memory_samples_the_browser_it_started(tmp_path):
    """bench.chromium_memory sees a headless Chromium this process started: every measure non-zero, PSS at most
    RSS (shared pages are divided, not repeated), each process's peak at least its share."""
    import subprocess
    import time

    from janusweb.bench.chromium_memory import ChromiumMemory

    with ChromiumMemory(every_s=0.2) as mem:
        proc = subprocess.Popen([chromium_path(), "--headless=new", "--no-sandbox", f"--user-data-dir={tmp_path}",
                                 "--remote-debugging-port=0", "about:blank"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            time.sleep(3)
        finally:
            proc.kill()
            proc.wait()
    r = mem.report()
    assert r["chromium_processes"] and r["chromium_pss_peak_sum_bytes"] > 0
    assert r["chromium_pss_peak_largest_process_bytes"] <= r["chromium_pss_peak_sum_bytes"]
    assert r["chromium_pss_peak_sum_bytes"] <= r["chromium_peak_rss_sum_mib"] * 1024 * 1024
    assert r["chromium_largest_process_peak_rss_mib"] * 1024 * 1024 >= r["chromium_pss_peak_largest_process_bytes"]
