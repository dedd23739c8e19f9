"""`janusweb bench run` on `tiny`: every backend this machine has (WebGPU on SwiftShader and WASM with each page
engine, native CPU, onnxruntime CPU, transformers.js), the results folder in the one schema, honest labels, 100 %
token parity for fp32 against native fp32, and, against onnxruntime over the row's own graphs, the very same
tokens and pixels on every page engine at fp32 and int8 (verdicts)."""

import json
import shutil

import pytest

from janusweb.cli import main
from janusweb.env import chromium_path

BROWSER = pytest.mark.skipif(chromium_path() is None or shutil.which("node") is None,
                             reason="no Chromium or node here: browser backends not benchmarked")


def _bench(out, *argv):
    code = main(["--quiet", "bench", "run", "--out", str(out), "--repeats", "1", "--text-tokens", "6", *argv])
    return code, json.loads((out / "report.json").read_text())


def _ran(report, **match):
    return [r for r in report["rows"] if r["status"] == "ran" and all(r["params"][k] == v for k, v in match.items())]


def test_native_and_onnxruntime(tiny_bundle, tmp_path):
    code, report = _bench(tmp_path, "--bundle", str(tiny_bundle), "--backend", "native-cpu,ort-cpu,native-cuda,ort-cuda",
                          "--images", "1,2")
    assert code == 0
    for backend in ("native-cpu", "ort-cpu"):
        rows = _ran(report, backend=backend, dtype="fp32")
        assert [r["params"]["images"] for r in rows] == [1, 2], backend
        for r in rows:
            m = r["metrics"]
            assert m["text_token_agreement_pct"] == 100.0 and "text_first_divergence" not in m, (backend, m)
            assert m["image_token_agreement_pct"] == 100.0 and m["pixels_max_abs_diff"] < 1e-3, (backend, m)
            assert m["s_per_image"] > 0 and m["image_step_ms"] > 0 and m["decode_tokens_per_s"] > 0
            assert m["decode_tokens_per_s"] == pytest.approx(1000 / m["decode_ms_per_token"])
            assert len(r["detail"]["image"]["step_ms"]) == 15  # tiny: 16 steps, the first holds the prefill
    skipped = {(r["params"]["backend"], r["params"]["dtype"]): r["reason"] for r in report["rows"]
               if r["status"] == "skipped"}
    # no GPU here: said, not faked; native-cuda runs the source at fp32 and bf16, whatever the bundle holds
    assert set(skipped) == {("native-cuda", "fp32"), ("native-cuda", "bf16"), ("ort-cuda", "fp32")}
    md = (tmp_path / "report.md").read_text()
    assert "| native-cpu | fp32 | 1 |" in md and "## Skipped" in md and report["load"]["after"]
    assert (tmp_path / "rows.csv").read_text().count("\n") == 1 + len(report["rows"])


def test_speed_targets_are_verdicts(tiny_bundle, tmp_path):
    """--targets judges each ran row's own figure; one not met makes the run's exit 1."""
    code, report = _bench(tmp_path, "--bundle", str(tiny_bundle), "--backend", "ort-cpu", "--dtype", "fp32",
                          "--text-tokens", "4", "--images", "1", "--repeats", "1", "--reference", "none",
                          "--targets", "s_per_image<=1000,decode_tokens_per_s>=1e9,load_s>=0")
    assert code == 1
    (row,) = _ran(report, backend="ort-cpu")
    got = {v["key"]: (v["value"], v["met"]) for v in report["verdicts"]}
    assert got == {"s_per_image": (row["metrics"]["s_per_image"], True),
                   "decode_tokens_per_s": (row["metrics"]["decode_tokens_per_s"], False),
                   "load_s": (row["metrics"].get("load_s"), None if "load_s" not in row["metrics"] else True)}


def test_greedy_images(tiny_bundle, tmp_path):
    """--temperature 0 reaches the row and its reference: onnxruntime's image tokens equal PyTorch's greedy ones,
    and differ from the tokens the same row draws at temperature 1."""
    def image_tokens(out, *argv):
        code, report = _bench(out, "--bundle", str(tiny_bundle), "--backend", "ort-cpu", "--dtype", "fp32",
                              "--text-tokens", "2", "--images", "1", *argv)
        assert code == 0
        (row,) = _ran(report, backend="ort-cpu")
        assert row["metrics"]["image_token_agreement_pct"] == 100.0, row["metrics"]
        return row["detail"]["image"]["tokens"]
    assert image_tokens(tmp_path / "greedy", "--temperature", "0") != image_tokens(tmp_path / "drawn")


def test_bad_input(tmp_path):
    assert main(["--quiet", "bench", "run", "--bundle", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert not (tmp_path / "r").exists()


@BROWSER
def test_page_engines_give_the_reference_tokens(tiny_packed, tmp_path):
    """The page's own engines, int8, 2 images of 4 steps: the WGSL decoder on WebGPU (SwiftShader) and the CPU
    engine on WASM give onnxruntime's tokens and pixels over the same graphs (the CPU engine's at accuracy_level 4,
    its arithmetic): verdicts; the browser's memory is sampled, WebGPU's reads counted; an engine a backend does not
    run is a skipped row, not a silent fallback. (ort-gqa and ort-grow: tests/test_web_page.py.)"""
    code, report = _bench(tmp_path, "--bundle", str(tiny_packed), "--backend", "webgpu,wasm", "--engine", "wgsl,cpu",
                          "--dtype", "int8", "--images", "2", "--image-steps", "4", "--reference", "ort",
                          "--memory", "yes", "--warmup", "no")
    ran = {(r["params"]["backend"], r["params"]["engine"]): r for r in _ran(report)}
    assert set(ran) == {("webgpu", "wgsl"), ("wasm", "cpu")}, [(r["params"], r.get("reason")) for r in report["rows"]]
    assert [(v["row"], v["key"], v["met"]) for v in report["verdicts"]] == [
        (f"backend={b} engine={e}", k, True) for b, e in (("webgpu", "wgsl"), ("wasm", "cpu"))
        for k in ("text_tokens_equal", "image_tokens_equal", "pixels_close")]
    assert code == 0
    for (backend, engine), r in ran.items():
        assert r["label"]["engine"] == engine and r["label"]["ep"] == backend
        assert r["metrics"]["peak_pss_sum_bytes"] > 0 and r["detail"]["reference"].startswith("onnxruntime")
        assert [len(t) for t in r["detail"]["image"]["tokens"]] == [4, 4]  # 2 images, image_steps 4
    assert "accuracy_level 4" in ran[("wasm", "cpu")]["detail"]["reference"]
    assert ran[("wasm", "cpu")]["metrics"]["engine_memory_bytes"] > 0
    for r in ran.values():  # ttft's parts from the page's phases: the image's encoding, then the prefill
        m = r["metrics"]
        assert m["image_encode_ms"] > 0 and m["prompt_prefill_ms"] > 0
        assert m["image_encode_ms"] + m["prompt_prefill_ms"] <= m["ttft_ms"] + 1
    assert "reads_per_token" not in ran[("wasm", "cpu")]["metrics"]  # WASM: no GPU counters
    webgpu = ran[("webgpu", "wgsl")]
    if "swiftshader" in webgpu["label"]["adapter"].lower():
        assert webgpu["label"]["device"].startswith("software WebGPU")
    assert webgpu["metrics"]["reads_per_token"] > 0  # GPU->CPU reads counted per decode step
    not_run = {(r["params"]["backend"], r["params"]["engine"]): r["reason"] for r in report["rows"]
               if r["status"] == "skipped"}
    assert "not cpu" in not_run[("webgpu", "cpu")] and "not wgsl" in not_run[("wasm", "wgsl")]


@BROWSER
def test_centred_draws_reach_the_page_and_the_reference(tiny_packed, tmp_path):
    """--draws centred: the page and its ort reference get the seed's draws moved to the middle of each token's
    interval in that reference (the CPU engine's arithmetic, accuracy_level 4); the reference then draws the very
    tokens the seed's draws give it, and so does the page. Checked here against onnxruntime run apart, with the
    seed's draws."""
    import dataclasses

    import numpy as np

    from janusweb.accuracy_level import accuracy_view
    from janusweb.bench.reference import LEVEL_GRAPHS, graph_dtypes
    from janusweb.bench.workload import Workload, build_inputs
    from janusweb.dtypes import graph_file
    from janusweb.fused import STEM, FusedGraphs
    from janusweb.generate import generate_images
    from janusweb.sampling import cfg_logits
    code, report = _bench(tmp_path / "r", "--bundle", str(tiny_packed), "--backend", "wasm", "--engine", "cpu",
                          "--dtype", "int8", "--threads", "1", "--text-tokens", "0", "--images", "1",
                          "--image-steps", "6", "--reference", "ort", "--warmup", "no", "--draws", "centred")
    assert code == 0 and [(v["key"], v["met"]) for v in report["verdicts"]] == [("image_tokens_equal", True),
                                                                                 ("pixels_close", True)]
    (row,) = _ran(report)
    page_tokens, centred = row["detail"]["image"]["tokens"][0], np.asarray(row["detail"]["draws"])
    w = Workload(text_tokens=0, images=1, image_steps=6, repeats=1, warmup=False)
    inp = build_inputs(tiny_packed, w)
    decoder, others, _ = graph_dtypes(row["detail"]["dtypes"])
    quantized = [graph_file(n, d) for n, d in ((STEM, decoder), *((g, others.get(g, "fp32")) for g in LEVEL_GRAPHS))
                 if d != "fp32"]
    cdfs = []

    def keep(step, logits):
        z = cfg_logits(logits[:1], logits[1:], w.guidance)[0].astype(np.float64) / w.temperature
        cdf = np.cumsum(np.exp(z - z.max()))
        cdfs.append(cdf / cdf[-1])

    graphs = FusedGraphs(accuracy_view(tiny_packed, tmp_path / "view", quantized, 4), decoder, others)
    seeded = generate_images(graphs, inp.dims, inp.ids, inp.prompt_ids, inp.draws, w.guidance, w.temperature,
                             on_logits=keep).tokens[0]
    assert page_tokens == seeded.tolist()  # the seed's tokens, drawn from the centred draws
    for step, (t, cdf) in enumerate(zip(seeded, cdfs)):
        lo, hi = (cdf[t - 1] if t else 0.0), cdf[t]
        assert centred[0, step] == pytest.approx((lo + hi) / 2, abs=1e-6), step
        assert centred[0, step] != inp.draws[0, step]
    # what the page is sent: these draws for the steps drawn, the seed's after them (web/bench-pages/bench.js
    # refuses a result drawn from a seed when draws were sent)
    from janusweb.bench.backends.page import page_config
    from janusweb.bench.scenarios.run import Work
    from janusweb.sampling import uniforms
    work = Work(tiny_packed, w, dataclasses.replace(inp, draws=centred), {}, centred_on=("int8", "cpu"))
    sent = np.asarray(page_config("wasm", {"dtype": "int8", "engine": "cpu", "threads": 1}, work)["draws"])
    T = inp.dims.num_image_tokens
    assert sent.shape == (T,) and (sent[:6] == centred[0].astype(np.float32)).all()
    assert (sent[6:] == uniforms(w.draw_seed, T)[6:].astype(np.float32)).all()


@BROWSER
def test_transformers_js_backends(tiny_bundle, tmp_path):
    """transformers.js on the same bundle and browser: greedy text equals the reference; images are timed per
    step (its own sampler: no image parity)."""
    code, report = _bench(tmp_path, "--bundle", str(tiny_bundle), "--backend", "tjs-wasm,tjs-webgpu")
    ran = {r["params"]["backend"]: r for r in _ran(report, dtype="fp32")}
    assert "tjs-wasm" in ran, [r.get("reason") for r in report["rows"]]
    steps = json.loads((tiny_bundle / "config.json").read_text())["janusweb"]["num_image_tokens"]
    for row in ran.values():
        assert row["label"]["runner"].startswith("transformers.js ")
        assert row["metrics"]["text_token_agreement_pct"] == 100.0
        assert "image_token_agreement_pct" not in row["metrics"]
        assert len(row["detail"]["image"]["step_ms"]) == steps - 1  # one time per token
        assert row["metrics"]["s_per_image"] > 0 and row["metrics"]["image_step_ms"] > 0
    if "tjs-webgpu" in ran and "swiftshader" in ran["tjs-webgpu"]["label"]["adapter"].lower():
        assert ran["tjs-webgpu"]["label"]["device"].startswith("software WebGPU")


@BROWSER
def test_process_tree_memory_samples_the_browser_it_started(tmp_path):
    """bench.memory sees a headless Chromium this process started: every measure non-zero, PSS at most RSS
    (shared pages are divided, not repeated), each process's peak at least its share."""
    import subprocess
    import time

    from janusweb.bench.memory import ProcessTreeMemory

    with ProcessTreeMemory(name="chrom", every_s=0.2) as mem:
        proc = subprocess.Popen([chromium_path(), "--headless=new", "--no-sandbox", f"--user-data-dir={tmp_path}",
                                 "--remote-debugging-port=0", "about:blank"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            time.sleep(3)
        finally:
            proc.kill()
            proc.wait()
    r = mem.report()
    assert r["processes"] and r["peak_pss_sum_bytes"] > 0
    assert r["peak_pss_largest_bytes"] <= r["peak_pss_sum_bytes"] <= r["peak_rss_sum_bytes"]
    assert r["largest_process_peak_rss_bytes"] >= r["peak_pss_largest_bytes"]


def test_process_tree_memory_reads_pss_only_at_a_new_rss_high(monkeypatch):
    """PSS (smaps_rollup: a walk of the measured process's page tables) is read at the first sample and then only
    when the summed RSS rises 2 % over the one at the last read; RSS and each process's peak at every sample."""
    from janusweb.bench import memory

    rss = iter([100, 101, 101, 101, 103, 90, 104, 110])  # MB of the one process, a sample each
    reads = []
    monkeypatch.setattr(memory, "_status", lambda pid: {"VmRSS": next(rss) * 2**20, "VmHWM": 120 * 2**20,
                                                        "name": "chromium"})
    monkeypatch.setattr(memory, "_pss", lambda pid: reads.append(pid) or 50 * len(reads))
    mem = memory.ProcessTreeMemory(name="chrom")
    monkeypatch.setattr(mem, "pids", lambda: [7])
    for _ in range(8):
        mem.sample()
    assert len(reads) == 3  # at 100, 103 (over 102) and 110 (over 105.06); not at 101, 90 or 104
    r = mem.report()
    assert r["peak_rss_sum_bytes"] == 110 * 2**20 and r["peak_pss_sum_bytes"] == 150
    assert r["processes"][0]["peak_rss_bytes"] == 120 * 2**20
