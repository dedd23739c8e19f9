"""The CPU engine against its WASM peers in one Chromium: llama.cpp's WebAssembly build (wllama), onnxruntime-web.

Per round, peer and thread count (rounds interleaved, so that every peer sees the same load drift):
- ours: the page's CPU engine kernels on random int8 weights of janus-pro-1b's shapes (web/bench-pages/cpu-kernels.js, the
  relaxed-SIMD build the engine loads): text token = decoder 1 row + lm_head, CFG image step = decoder 2 rows +
  image head, after 600 cached positions; a prompt of `prompt` positions through the decoder in one call
  (the engine's prefill, lm_head left out);
- wllama: llama.cpp's WebAssembly build on a random-weight GGUF of the decoder's shapes (Q8_0, norms F32;
  `--gguf`, default written once to the temp folder, 1.76 GB): llama.cpp's own per-token decode time and its
  prompt evaluation (tokens/s, the last position's logits included) of a `prompt`-token prompt, median of 3
  completions;
- ort: onnxruntime-web's own WASM path on q4 MatMulNBits graphs of the 1B shapes that fit its heap (the 1B q4
  bundle does not): text token = 24 x one layer's matrices (M=1) + 6.25 x one 2048x16384 matrix (lm_head's 102400
  columns: ORT's WASM MatMulNBits dequantizes the whole matrix per call), image step = 24 x layer (M=2) + the image
  head; attention, norms and rotary left out, so a lower bound on its step.
Not like for like, both ways: ours is the kernel jobs' time (no sampling, no JS between tokens) after 600 cached
positions; wllama is llama.cpp's whole decode step attending over `prompt` to `prompt` + `tokens` positions. The
WASM fallback's targets (bench/peer_report.py) are verdicts on the medians over rounds at 2 threads. ~4 GB: run it
under the heavy-job lock.
"""

import contextlib
import tempfile
from pathlib import Path

from janusweb.bench.scenario import Metric, Param, Result, Scenario, Verdict


class Peers(Scenario):
    """The CPU engine's kernels against llama.cpp's WASM build (wllama) and onnxruntime-web, 1B shapes."""
    name = "peers"
    params = (
        Param("round", int, (1, 2, 3), "rounds: every peer and thread count once per round, interleaved"),
        Param("peer", str, ("ours", "wllama", "ort"), "who runs", choices=("ours", "wllama", "ort")),
        Param("threads", int, (1, 2), "WASM threads"),
        Param("repeats", int, 5, "timed calls per kernel job (ours) or graph (ort)", multi=False),
        Param("tokens", int, 16, "tokens per wllama completion", multi=False),
        Param("prompt", int, 576, "prompt positions: ours in one prefill call, wllama's prompt (an image question's "
                                  "576 image positions)", multi=False),
        Param("gguf", Path, None, "the wllama peer's GGUF (default: janus-pro-1b's shapes, written once to the "
                                  "temp folder)", multi=False),
        Param("layers", int, 24, "ours: decoder layers (24: Janus-Pro-1B)", multi=False),
    )
    metrics = (
        Metric("text_ms", "ms", "one text token (wllama: llama.cpp's decode step)"),
        Metric("text_tokens_per_s", "tok/s", "1000 / text_ms"),
        Metric("image_step_ms", "ms", "one CFG image step (2 rows)"),
        Metric("image_vs_text", "", "image step / text token"),
        Metric("image_step_read_bw_pct", "%", "ours: the image step's bytes read (weights, KV cache) / time, of the "
                                             "read bandwidth measured before the run"),
        Metric("prefill_tokens_per_s", "tok/s", "prompt positions / prefill time (wllama: llama.cpp's prompt "
                                                "evaluation)"),
    )

    @contextlib.contextmanager
    def context(self, run):
        """One browser on the bench page, the GGUF linked into it, ORT's q4 graphs and their CPU-EP outputs."""
        from janusweb.bench import ort_peer
        from janusweb.bench.backends import wllama
        from janusweb.bench.gguf_peer import cached_gguf, preset_shapes
        from janusweb.bench.host import read_bandwidth_gbps
        from janusweb.bench.pagerun import page_runner
        from janusweb.env import chromium_path
        from janusweb.site import build_page
        v = run.values
        ctx = {"bandwidth": [read_bandwidth_gbps()], "values": v}
        with tempfile.TemporaryDirectory(prefix="janusweb-peers-") as tmp:
            site = Path(tmp) / "site"
            build_page(site, bench=True)
            if "wllama" in v["peer"]:
                wllama.link_gguf(site, v["gguf"] or cached_gguf(preset_shapes("janus-pro-1b")))
            if "ort" in v["peer"]:
                ctx["ort_paths"] = ort_peer.write_models(site / "kernels")
                ctx["ort_refs"] = {m: ort_peer.reference(ctx["ort_paths"], m) for m in (1, 2)}
            with page_runner(site, "wasm", chromium_path()) as runner:
                ctx["runner"] = runner
                yield ctx
        run.notes.append("numpy read bandwidth (1 GiB sum) before / after: "
                         + " / ".join(f"{g:.1f}" for g in ctx["bandwidth"]) + " GB/s")

    def run(self, ctx, case: dict, session) -> Result:
        return getattr(self, f"_{case['peer']}")(ctx, case)

    def _ours(self, ctx, case: dict) -> Result:
        from janusweb import metrics
        from janusweb.bench import cpu_engine
        raw = cpu_engine.measure(ctx["runner"], case["threads"], True, "int8", case["repeats"], case["layers"],
                                 prefill=case["prompt"])
        jobs = {job: metrics.median(v["ms"]) for job, v in raw["jobs"].items()}
        prefill = case["prompt"] / jobs[f"prefill_{case['prompt']}"] * 1000
        text, image = jobs["decoder_1row"] + jobs["lm_head_1row"], jobs["decoder_2row"] + jobs["image_head_2rows"]
        image_bytes = raw["jobs"]["decoder_2row"]["bytes"] + raw["jobs"]["image_head_2rows"]["bytes"]
        text_bytes = raw["jobs"]["decoder_1row"]["bytes"] + raw["jobs"]["lm_head_1row"]["bytes"]
        return Result({"text_ms": text, "text_tokens_per_s": 1000 / text, "image_step_ms": image,
                       "image_vs_text": image / text,
                       "image_step_read_bw_pct": 100 * image_bytes / image / 1e6 / ctx["bandwidth"][0],
                       "prefill_tokens_per_s": prefill},
                      {"device": "cpu", "runner": f"CPU engine {raw['file']}", "browser": ctx["runner"].version},
                      {"text_bytes": text_bytes, "image_bytes": image_bytes, "build": raw["file"], "jobs": raw["jobs"]})

    def _wllama(self, ctx, case: dict) -> Result:
        from janusweb.bench.backends import wllama
        raw = wllama.measure(ctx["runner"], case["threads"], tokens=case["tokens"], repeats=3,
                             prompt=wllama.byte_prompt(case["prompt"]))
        if raw["threads"] != case["threads"]:
            raise RuntimeError(f"wllama asked for {case['threads']} threads ran {raw['threads']}")
        m = wllama.aggregate(raw)
        ms = m["figures"]["decode_ms_per_token"]
        return Result({"text_ms": ms, "text_tokens_per_s": 1000 / ms,
                       "prefill_tokens_per_s": m["figures"]["prompt_tokens_per_s"]},
                      wllama.label(raw, ctx["runner"]), m["extra"])

    def _ort(self, ctx, case: dict) -> Result:
        from janusweb.bench import ort_peer
        ms = {}
        for rows in (1, 2):
            raw = ort_peer.measure(ctx["runner"], ctx["ort_paths"], "kernels", rows, case["threads"], case["repeats"])
            ms[rows] = ort_peer.checked_medians(raw, ctx["ort_refs"][rows])
        text, image = ort_peer.step_ms(ms[1], 1), ort_peer.step_ms(ms[2], 2)
        return Result({"text_ms": text, "text_tokens_per_s": 1000 / text, "image_step_ms": image},
                      {"device": "cpu", "runner": "onnxruntime-web WASM, q4 MatMulNBits (lower bound)",
                       "browser": ctx["runner"].version}, {"graph_ms": ms})

    def verdicts(self, ctx, rows: list) -> list:
        """The WASM fallback's targets (bench/peer_report.py) on the medians over rounds, read bandwidth measured
        again now that the browser rows are done (the better of before and after is the reference)."""
        from janusweb.bench import peer_report
        from janusweb.bench.host import read_bandwidth_gbps
        ctx["bandwidth"].append(read_bandwidth_gbps())
        numbers = {"read_gbps": ctx["bandwidth"], "ours": {}, "wllama": {}, "ort": {}}
        for r in rows:
            if not r.ran:
                continue
            t, peer = r.case["threads"], r.case["peer"]
            if peer == "ours":
                o = numbers["ours"].setdefault(t, {"text_ms": [], "image_ms": [], "build": r.detail["build"],
                                                   "text_bytes": r.detail["text_bytes"],
                                                   "image_bytes": r.detail["image_bytes"],
                                                   "prefill_tokens_per_s": []})
                o["text_ms"].append(r.metrics["text_ms"])
                o["image_ms"].append(r.metrics["image_step_ms"])
                o["prefill_tokens_per_s"].append(r.metrics["prefill_tokens_per_s"])
            elif peer == "wllama":
                o = numbers["wllama"].setdefault(t, {"ms_per_token": [], "prompt_tokens_per_s": []})
                o["ms_per_token"].append(r.metrics["text_ms"])
                o["prompt_tokens_per_s"].append(r.metrics["prefill_tokens_per_s"])
            else:
                o = numbers["ort"].setdefault(t, {"text_ms": [], "image_ms": []})
                o["text_ms"].append(r.metrics["text_ms"])
                o["image_ms"].append(r.metrics["image_step_ms"])
        if not numbers["ours"]:
            return []
        m = peer_report.measures(numbers)
        return [Verdict(v["key"], v["what"], v["value"], v["target"], v["met"], f"threads={peer_report.TARGET_THREADS}")
                for v in peer_report.verdicts(m)]
