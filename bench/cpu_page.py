"""The demo page on WASM with the CPU engine on a whole bundle (janus-pro-1b int8), one long run:
`python -m janusweb.bench.cpu_page --bundle DIR --out bench/results/DATE-cpu-2core-1b-page` (run it under
`flock /work/heavy.lock` on a shared machine: ~10 GB at its peak).

1. A scratch copy of the bundle (graphs hard-linked, read only; JSON copied) gets a fresh int8 CPU pack
   (`janusweb cpu-pack`, this checkout's format), so the run measures the pack format of the code under test.
2. The Python reference: greedy text after an image prompt on onnxruntime (the fused int8 decoder, lm_head and
   prepare_inputs_embeds at int8 for the answer's tokens, the image prompt through prepare_inputs_embeds at the
   dtype the page's ORT session runs, fp32 on WASM), janusweb.generate's loop; with --accuracy-level 4 the
   decoder and lm_head run with MatMulNBits quantizing activations per block (for kernels that compute so).
3. The bench page (web/bench.js runBench, no warm-up) in Chromium on WASM, cross-origin isolated, ?engine=cpu,
   2 threads: the same prompt's tokens (must equal the reference), then one full CFG image (576 steps).
Recorded in results.json + NOTES.md: times per text token and per image step, load, the page's memory (each
Chromium process's peak RSS, VmHWM, and the peak of their sum sampled every second; the engine's own memory at
load), the machine's load average before and after.
"""

import argparse
import base64
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from janusweb.atomic import atomic_dir
from janusweb.bench.browser import aggregate
from janusweb.bench.chromium_memory import ChromiumMemory
from janusweb.bench.pagerun import page_runner
from janusweb.bench.workload import Workload, build_inputs
from janusweb.dtypes import graph_file
from janusweb.env import chromium_path, versions
from janusweb.fused import STEM, FusedGraphs
from janusweb.generate import generate_text
from janusweb.graphs import ImagePromptGraphs
from janusweb.log import setup, step
from janusweb.pack.driver import write_packs
from janusweb.site import build_site


def scratch_bundle(src: Path, dst: Path) -> Path:
    """dst: src's graphs hard-linked (never written: a re-pack writes new files), its other files copied, no packs."""
    for path in src.rglob("*"):
        rel = path.relative_to(src)
        if path.is_dir() or rel.parts[0] in ("cpu", "wgsl"):
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.parts[0] == "onnx":
            os.link(path, dst / rel)
        else:
            shutil.copy2(path, dst / rel)
    manifest = json.loads((dst / "manifest.json").read_text())
    for key in ("cpu", "wgsl"):
        for paths in manifest.pop(key, {}).values():
            for rel in paths.values():
                manifest["files"].pop(rel, None)
    (dst / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return dst


def run(bundle: Path, out: Path, tokens: int, threads: int, work: Path | None,
        accuracy_level: int | None = None) -> dict:
    load = [os.getloadavg()]
    w = Workload(text_tokens=tokens, image_counts=(1,), repeats=1)
    with tempfile.TemporaryDirectory(prefix="janusweb-cpu-page-", dir=work) as tmp:
        copy = scratch_bundle(Path(bundle), Path(tmp) / "bundle")
        t0 = time.perf_counter()
        with step("cpu-pack --dtype int8 (this checkout's format)"):
            write_packs(copy, "cpu", ["int8"])
        pack_s = time.perf_counter() - t0
        inp = build_inputs(copy, w)
        ref_bundle = copy
        if accuracy_level is not None:  # the decoder and lm_head with MatMulNBits at that level (a view: links)
            from janusweb.accuracy_level import accuracy_view
            ref_bundle = accuracy_view(copy, Path(tmp) / f"level{accuracy_level}",
                                       [graph_file(STEM, "int8"), graph_file("lm_head", "int8")], accuracy_level)
        with step(f"Python int8 reference: {tokens} greedy tokens after the image prompt"):
            graphs = ImagePromptGraphs(FusedGraphs(ref_bundle, "int8", {"prepare_inputs_embeds": "int8",
                                                                        "lm_head": "int8"}),
                                       copy / graph_file("prepare_inputs_embeds", "fp32"))
            t0 = time.perf_counter()
            expected = generate_text(graphs, inp.dims, inp.understanding, tokens, pixel_values=inp.pixel_values)
            ref_s = time.perf_counter() - t0
            del graphs
        config = {"question": w.question, "imagePng": base64.b64encode(inp.image_png).decode(), "textTokens": tokens,
                  "prompt": w.prompt, "counts": [1], "guidance": w.guidance, "temperature": w.temperature,
                  "seed": w.draw_seed, "repeats": 1, "kvCache": "cpu", "backend": "wasm", "dtype": "int8",
                  "threads": threads, "warmup": False}
        site = build_site(copy, Path(tmp) / "site", bench=True)
        with ChromiumMemory(every_s=1.0) as mem, page_runner(site, "wasm", chromium_path(), driver="playwright") as runner:
            with step(f"the page on WASM, CPU engine, {threads} threads: {tokens} tokens, one "
                      f"{inp.dims.num_image_tokens}-step image"):
                raw = runner.call("bench.html", "runBench", config)
            mem.sample()
            browser = runner.version
    load.append(os.getloadavg())
    dims = json.loads((Path(bundle) / "config.json").read_text())["janusweb"]
    result = aggregate(raw, inp, dims)
    und, gen = raw["understanding"][0], result["generation"]["1"]
    times = np.diff(np.array(und["token_times_ms"]))
    info = raw["backend"]
    engine_mib = re.search(r"([\d.]+) MiB of its own memory", info.get("kvCache", ""))
    report = {
        "bundle": str(bundle), "reference_accuracy_level": accuracy_level,
        "model": json.loads((Path(bundle) / "manifest.json").read_text()).get("source", {}).get("name", "?"),
        "versions": {**versions(), "chromium": browser}, "cpus": os.cpu_count(),
        "load_average_before_after": load, "pack_s": pack_s, "reference_s": ref_s, "load_s": raw["load_ms"] / 1000,
        "backend": {k: info.get(k) for k in ("ep", "threads", "engine", "kvCache", "dtypes", "notes")},
        "text": {"tokens": und["tokens"], "reference": expected, "equal": und["tokens"] == expected,
                 "first_token_ms": und["token_times_ms"][0], "ms_per_token_median": float(np.median(times)),
                 "ms_per_token": times.tolist()},
        "image": {"steps": len(gen["step_ms"]) + 1, "ms_per_step": gen["ms_per_step"], "prefill_ms": gen["prefill_ms"],
                  "vq_decode_ms": gen["vq_decode_ms"], "s_per_image": gen["s_per_image"],
                  "tokens_drawn": len(gen["tokens"][0]) if gen["tokens"] else 0,
                  "distinct_tokens": len(set(gen["tokens"][0])) if gen["tokens"] else 0},
        "memory": {**mem.report(), "engine_memory_at_load_mib": float(engine_mib.group(1)) if engine_mib else None,
                   "js_heap": raw.get("memory")},
    }
    with atomic_dir(out) as tmp_out:
        (tmp_out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
        (tmp_out / "NOTES.md").write_text(notes(report))
    return report


def notes(r: dict) -> str:
    t, im, m = r["text"], r["image"], r["memory"]
    return "\n".join([
        f"# The page on WASM, CPU engine, {r['model']} int8 ({time.strftime('%Y-%m-%d')})", "",
        f"Command: `python -m janusweb.bench.cpu_page --bundle {r['bundle']} --out DIR`; {r['cpus']} CPUs; "
        f"1/5/15-minute load before {r['load_average_before_after'][0]}, after {r['load_average_before_after'][1]} "
        "(a busy machine makes the times longer, not the tokens different).", "",
        f"Versions: {r['versions']}", f"Page: {r['backend']}", "",
        f"- text after the image prompt: {len(t['tokens'])} greedy tokens, "
        f"**{'equal' if t['equal'] else 'NOT equal'}** "
        f"to the Python int8 reference (MatMulNBits accuracy_level {r['reference_accuracy_level'] or 'as exported'}); "
        f"first token {t['first_token_ms'] / 1000:.1f} s after the request (vision "
        f"tower on ORT + prefill), then **{t['ms_per_token_median']:.0f} ms per token** (median)",
        f"- one CFG image: {im['steps']} steps, **{im['ms_per_step']['p50']:.0f} ms per step** (median; mean "
        f"{im['ms_per_step']['mean']:.0f}), prefill {im['prefill_ms'] / 1000:.1f} s, VQ decode "
        f"{im['vq_decode_ms'] / 1000:.1f} s, {im['s_per_image']:.0f} s per image; {im['tokens_drawn']} tokens drawn, "
        f"{im['distinct_tokens']} distinct",
        f"- memory: Chromium's largest process peaked at {m['chromium_largest_process_peak_rss_mib']:.0f} MiB RSS "
        f"(VmHWM), all its processes together at {m['chromium_peak_rss_sum_mib']:.0f} MiB (sampled each second); "
        f"the CPU engine's own memory at load {m['engine_memory_at_load_mib']} MiB (KV caches are added per request)",
        f"- set-up: cpu-pack {r['pack_s']:.0f} s, Python reference {r['reference_s']:.0f} s, page load "
        f"{r['load_s']:.0f} s",
        ""])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, required=True, help="a janus-pro-1b bundle with int8 variants (read only)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None, help="where the scratch copy goes (default: the temp folder)")
    ap.add_argument("--accuracy-level", type=int, default=None,
                    help="run the reference's int8 decoder and lm_head with MatMulNBits at this accuracy_level "
                         "(4: activations quantized per block, for kernels that do so; default: the graphs as they "
                         "are)")
    a = ap.parse_args(argv)
    setup()
    r = run(a.bundle, a.out, a.tokens, a.threads, a.work, a.accuracy_level)
    return 0 if r["text"]["equal"] and r["image"]["steps"] == r["image"]["tokens_drawn"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
