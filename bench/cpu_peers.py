"""The CPU speed report of the WASM fallback against its peers, in one run and one Chromium:
`python -m janusweb.bench.cpu_peers --out bench/results/DATE-cpu-2core-wasm-peers`.

In each round, at 1 and 2 threads: the page's CPU engine kernels on janus-pro-1b shapes, int8
(bench/cpu_engine.py: text token = decoder 1 row + lm_head, CFG image step = decoder 2 rows + image head);
llama.cpp's WebAssembly build (wllama) decoding a GGUF of the same decoder shapes, Q8_0 (bench/backends/wllama.py,
bench/gguf_peer.py; written to the temp folder the first time); onnxruntime-web's own WASM path on q4 graphs of
the 1B shapes that fit its heap (bench/ort_peer.py). numpy read bandwidth and the load before and after.
Writes results.json (every number, the targets met / not met) and NOTES.md. Needs ~4 GB: run it under the
machine's heavy-job lock where there is one.
"""

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from janusweb.atomic import atomic_dir
from janusweb.bench import cpu_engine, ort_peer, peer_report
from janusweb.bench.backends import wllama
from janusweb.bench.gguf_peer import cached_gguf, preset_shapes
from janusweb.bench.pagerun import page_runner
from janusweb.env import chromium_path, versions
from janusweb.log import setup, step
from janusweb.site import build_page

THREADS = (1, 2)
OURS_BUILD = {1: ("kernels-relaxed.wasm", "kernels.wasm"), 2: ("kernels-mt-relaxed.wasm", "kernels-mt.wasm")}  # what the engine loads
METHOD = [
    "ours: web/cpu's kernels in Chromium on random int8 weights of janus-pro-1b's shapes (bench/cpu_engine.py's "
    "jobs), text token = decoder_1row + lm_head_1row, CFG image step = decoder_2row + image_head_2rows, after 600 "
    "cached positions; at 2 threads the build the engine loads (relaxed SIMD where Chromium validates it)",
    "wllama: llama.cpp's WebAssembly build decoding a random-weight GGUF of the decoder's shapes (vocab 102400, "
    "hidden 2048, 24 layers, 16 heads of 128, intermediate 5632, Q8_0; norms F32), loaded as one Blob; per round "
    "the median of llama.cpp's predicted_per_token_ms over 3 greedy completions (EOS ignored) after a 130-token "
    "prompt",
    "onnxruntime-web WASM, q4: the 1B q4 bundle does not fit ORT's WASM heap, so its step is built from MatMulNBits "
    "(4 bits, block 32) graphs at the real shapes that fit: text token = 24 x one layer's matrices (M=1) + 6.25 x "
    "one 2048x16384 matrix (lm_head's 102400 columns, linear in the matrix: ORT's WASM MatMulNBits dequantizes it "
    "whole per call); image step = 24 x layer (M=2) + the image head's 2048x2048 and 2048x16384 (M=2). Attention, "
    "norms and rotary left out: a lower bound on ORT's step",
    "read bandwidth: numpy sum over 1 GiB of float32, best of 5, before and after the browser rows",
    "not like for like, both ways: ours is the kernel jobs' time (no sampling, no JS between tokens) after 600 "
    "cached positions (an image prompt's length); wllama is llama.cpp's whole decode step (sampling included) "
    "attending over 130-178 positions",
]


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _ours(runs: list, threads: int) -> dict:
    """Per-round text/image ms of the build the engine loads at `threads`."""
    builds = OURS_BUILD[threads] if isinstance(OURS_BUILD[threads], tuple) else (OURS_BUILD[threads],)
    done = {r["file"] for r in runs if r["threads"] == threads}
    build = next(b for b in builds if b in done)
    mine = [r["jobs"] for r in runs if r["threads"] == threads and r["file"] == build]
    med = lambda j, k: float(np.median(j[k]["ms"]))  # noqa: E731
    return {"build": build, "text_ms": [med(j, "decoder_1row") + med(j, "lm_head_1row") for j in mine],
            "image_ms": [med(j, "decoder_2row") + med(j, "image_head_2rows") for j in mine],
            "text_bytes": mine[0]["decoder_1row"]["bytes"] + mine[0]["lm_head_1row"]["bytes"],
            "image_bytes": mine[0]["decoder_2row"]["bytes"] + mine[0]["image_head_2rows"]["bytes"]}


def _ort_check(raw: dict, ref: dict) -> dict:
    """Median ms per graph, after checking the browser's output against onnxruntime's CPU EP."""
    out = {}
    for name, r in raw["results"].items():
        if "error" in r:
            raise RuntimeError(f"onnxruntime-web could not run {name}: {r['error']}")
        diff = float(np.abs(np.array(r["y"], np.float32).reshape(ref[name].shape) - ref[name]).max())
        if diff > 1e-2 * max(1.0, float(np.abs(ref[name]).max())):
            raise RuntimeError(f"onnxruntime-web's {name} differs from onnxruntime CPU by {diff}")
        out[name] = float(np.median(r["ms"]))
    return out


def run(out: Path, gguf: Path | None, rounds: int = 3, repeats: int = 5, tokens: int = 16,
        busy_note: str = "") -> dict:
    uptime_before, bw = _uptime(), [cpu_engine.read_bandwidth()]
    gguf = gguf or cached_gguf(preset_shapes("janus-pro-1b"))
    raw = {"cpu": [], "wllama": {t: [] for t in THREADS}, "ort": {t: {"text_ms": [], "image_ms": []} for t in THREADS}}
    with tempfile.TemporaryDirectory(prefix="janusweb-cpu-peers-") as tmp:
        site = Path(tmp) / "site"
        build_page(site, bench=True)
        wllama.link_gguf(site, gguf)
        with step("onnxruntime q4 graphs of the 1B shapes"):
            paths = ort_peer.write_models(site / "kernels")
            refs = {m: ort_peer.reference(paths, m) for m in (1, 2)}
        with page_runner(site, "wasm", chromium_path()) as runner:
            for r in range(rounds):
                label = f"round {r + 1}/{rounds}"
                raw["cpu"] += cpu_engine.measure(runner, repeats, label=label)
                for t in THREADS:
                    with step(f"{label}: wllama Q8_0, {t} thread(s)"):
                        got = wllama.measure(runner, t, tokens=tokens, repeats=3)
                        if got["threads"] != t:
                            raise RuntimeError(f"wllama asked for {t} threads ran {got['threads']}")
                        raw["wllama"][t].append(got)
                    with step(f"{label}: onnxruntime-web q4, {t} thread(s)"):
                        for m, key in ((1, "text_ms"), (2, "image_ms")):
                            med = _ort_check(ort_peer.measure(runner, paths, "kernels", m, t, repeats), refs[m])
                            raw["ort"][t][key].append(ort_peer.step_ms(med, m))
                            raw["ort"][t].setdefault(f"graphs_m{m}", []).append(med)
            chromium = runner.version
    bw.append(cpu_engine.read_bandwidth())
    uptime_after = _uptime()
    numbers = {"read_gbps": bw, "ours": {t: _ours(raw["cpu"], t) for t in THREADS},
               "wllama": {t: {"ms_per_token": [wllama.aggregate(g)["decode_ms_per_token"]["median"] for g in runs]}
                          for t, runs in raw["wllama"].items()},
               "ort": {t: {k: v for k, v in o.items() if k in ("text_ms", "image_ms")} for t, o in raw["ort"].items()}}
    w0 = raw["wllama"][THREADS[-1]][0]
    context = {"date": time.strftime("%Y-%m-%d %H:%M"), "uptime_before": uptime_before, "uptime_after": uptime_after,
               "rounds": rounds, "chromium": chromium, "cpus": os.cpu_count(), "busy_note": busy_note,
               "method": METHOD, "gguf": {"path": str(gguf), "bytes": w0["gguf_bytes"]},
               "versions": {**versions(), "chromium": chromium, "wllama": w0["wllama"], "llama.cpp": w0["libllama"]}}
    m = peer_report.measures(numbers)
    report = {"context": context, "measures": m, "verdicts": peer_report.verdicts(m), "numbers": numbers,
              "raw": {"cpu_engine": raw["cpu"], "ort_graph_ms": {t: {k: v for k, v in o.items() if k.startswith("graphs")}
                                                                  for t, o in raw["ort"].items()},
                      "wllama": raw["wllama"]}}
    with atomic_dir(out) as tmp_out:
        (tmp_out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
        (tmp_out / "NOTES.md").write_text(peer_report.notes(report))
    return report


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--gguf", type=Path, help="the peer GGUF to use (default: written once to the temp folder)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per kernel job in a round")
    ap.add_argument("--tokens", type=int, default=16, help="tokens per wllama completion")
    ap.add_argument("--busy-note", default="", help="a line for NOTES.md, e.g. that the machine was busy")
    args = ap.parse_args()
    setup()
    run(args.out, args.gguf, args.rounds, args.repeats, args.tokens, args.busy_note)
    print((args.out / "NOTES.md").read_text())
