"""The CPU engine's kernels (web/lib/engines/cpu) in Chromium on random weights of a model's shapes, per build.

Per model (Janus-Pro-1B's shapes; Janus-Pro-7B's: q4 on the Memory64 build only, its weights do not fit 32 bits),
dtype, address width (the kernels built for a 32-bit memory, the page's wherever the model fits; or for a 64-bit
one, Memory64), thread count and SIMD build (plain SIMD128; relaxed where Chromium validates it): a text token
(decoder pass for 1 row after `past` cached positions + lm_head) and a CFG image step (decoder for 2 rows + the
image head), one gate matrix (5632 x 2048 at 1B), and a prompt's prefill of `prefill` positions in one call: its
matrices' multiply-accumulates per second against the SIMD peak of the dot instruction the kernels use (i16 dot
for int8 and plain q4, the relaxed i8 dot for q4 with relaxed SIMD; web/lib/engines/cpu/peak.c on as many
threads, same page). Each decoding job's effective bandwidth (its bytes read, weights and KV cache, / median time)
is set against this machine's read bandwidth (a numpy sum over 1 GiB) measured before the run (and, for the notes,
after). A kernel change's before/after: the scenario at both commits.
`--round 1,2,3` repeats every case once per round, interleaved, as the load drifts. With both widths, the notes
give Memory64's price against the 32-bit build (medians over rounds); with a 7B row and the 1B int8 32-bit one at
2 threads, a verdict: the 7B CFG step within 1.3x of its weight bytes / (the read bandwidth x the fraction of it
the 1B int8 step achieves): the 7B step as bandwidth-efficient as the 1B one (the `cpu-memory64` suite).
"""

import contextlib
import tempfile
from pathlib import Path

from janusweb.bench.scenario import Metric, Param, Result, Scenario, Skipped, Verdict

JOB_METRICS = {"decoder_1row": "decoder pass, 1 row", "decoder_2row": "decoder pass, 2 rows",
               "lm_head_1row": "lm_head, 1 row", "image_head_2rows": "image head, 2 rows",
               "matmul_5632x2048_1row": "one 5632 x 2048 matrix, 1 row",
               "matmul_5632x2048_2row": "one 5632 x 2048 matrix, 2 rows"}
GOAL, GOAL_THREADS = 1.3, 2  # the 7B step at most 1.3x its bound from the 1B int8 step's efficiency, 2 threads


def prefill_figures(raw: dict, case: dict) -> dict:
    """The prefill job's time, tokens/s, GMAC/s and its share of the peak of the dot instruction it runs on."""
    from janusweb import metrics
    job = raw["jobs"].get(f"prefill_{case['prefill']}")
    if not job:
        return {}
    ms = metrics.median(job["ms"])
    # relaxed SIMD's byte dot: q4 always, int8 where the kernels chose the unsigned byte dot (runtime.js)
    on_i8 = case["simd"] == "relaxed" and (case["dtype"] == "q4" or raw["unsignedDot"])
    instruction = "peak_dot_i8" if on_i8 else "peak_dot_i16"
    gmacs, peak = job["macs"] / ms / 1e6, raw["peakGmacs"][instruction]
    return {"prefill_ms": ms, "prefill_tokens_per_s": case["prefill"] / ms * 1000, "prefill_gmac_per_s": gmacs,
            "peak_gmac_per_s": peak, "prefill_peak_pct": 100 * gmacs / peak}


class CpuKernels(Scenario):
    """The CPU engine's WebAssembly kernels on 1B (or 7B) shapes, per dtype, width, threads and SIMD build."""
    name = "cpu-kernels"
    params = (
        Param("round", int, (1,), "rounds: every case once per round, interleaved"),
        Param("model", str, ("1b",), "shapes: janus-pro-1b's, or janus-pro-7b's (q4, Memory64 only)",
              choices=("1b", "7b")),
        Param("dtype", str, ("int8", "q4"), "weights", choices=("int8", "q4")),
        Param("width", int, (32,), "address width: the 32-bit build, or the Memory64 one",
              choices=(32, 64)),
        Param("threads", int, (1, 2), "threads (Web Workers sharing the engine's memory)"),
        Param("simd", str, ("plain", "relaxed"), "the SIMD build", choices=("plain", "relaxed")),
        Param("repeats", int, 5, "timed calls per job (matrices: 4 times as many)", multi=False),
        Param("layers", int, None, "decoder layers (default: the model's, 24 at 1B, 30 at 7B)", multi=False),
        Param("past", int, 600, "cached positions the decoder attends over", multi=False),
        Param("prefill", int, 256, "a prompt's positions in one call (0: no prefill job)", multi=False),
    )
    metrics = (
        Metric("text_token_ms", "ms", "decoder 1 row + lm_head 1 row (medians)"),
        Metric("image_step_ms", "ms", "decoder 2 rows + image head 2 rows (medians)"),
        Metric("image_step_gb_per_s", "GB/s", "the image step's bytes read (weights, KV cache) / its time"),
        Metric("image_step_read_bw_pct", "%", "the above, of the read bandwidth measured before the run"),
        *(Metric(f"{job}_ms", "ms", f"{what}, median") for job, what in JOB_METRICS.items()),
        Metric("image_step_bytes", "bytes", "what one image step reads: the weights (decoder, image head) and the "
               "KV cache at `past`", int),
        Metric("prefill_ms", "ms", "the prompt's positions through every layer, one call, median"),
        Metric("prefill_tokens_per_s", "tok/s", "prompt positions / prefill time"),
        Metric("prefill_gmac_per_s", "GMAC/s", "the prefill's matrix multiply-accumulates / its time"),
        Metric("peak_gmac_per_s", "GMAC/s", "the dot instruction the kernels use, at its peak rate, as many threads"),
        Metric("prefill_peak_pct", "%", "prefill GMAC/s of that peak"),
        Metric("memory_mib", "MiB", "the engine's WebAssembly memory"),
    )

    def cases(self, values: dict) -> list:
        """Every combination but 7B other than q4 on Memory64."""
        return [c for c in super().cases(values) if c["model"] == "1b" or (c["dtype"], c["width"]) == ("q4", 64)]

    @contextlib.contextmanager
    def context(self, run):
        """One browser on the bench page for every case; the read bandwidth before and after."""
        from janusweb.bench.host import read_bandwidth_gbps
        from janusweb.bench.pagerun import page_runner
        from janusweb.env import chromium_path
        from janusweb.site import build_page
        bandwidth = [read_bandwidth_gbps()]
        with tempfile.TemporaryDirectory(prefix="janusweb-cpu-kernels-") as tmp:
            build_page(Path(tmp), bench=True)
            with page_runner(Path(tmp), "wasm", chromium_path()) as runner:
                yield {"runner": runner, "bandwidth": bandwidth, "notes": run.notes}
        run.notes.insert(0, f"numpy read bandwidth (1 GiB sum) before / after: "
                            f"{' / '.join(f'{g:.1f}' for g in bandwidth)} GB/s")

    def run(self, ctx, case: dict, session) -> Result:
        from janusweb import metrics
        from janusweb.bench import cpu_engine
        raw = cpu_engine.measure(ctx["runner"], case["threads"], case["simd"] == "relaxed", case["dtype"],
                                 case["repeats"], case["layers"], case["past"], case["prefill"],
                                 m64=case["width"] == 64, shapes=case["model"])
        if case["simd"] == "relaxed" and "relaxed" not in raw["file"]:
            raise Skipped(f"this browser does not validate relaxed SIMD (ran {raw['file']})")
        if raw["bits"] != case["width"]:
            raise RuntimeError(f"asked for the {case['width']}-bit build, ran {raw['file']} ({raw['bits']}-bit)")
        jobs = {job: metrics.median(v["ms"]) for job, v in raw["jobs"].items()}
        text = jobs["decoder_1row"] + jobs["lm_head_1row"]
        image = jobs["decoder_2row"] + jobs["image_head_2rows"]
        nbytes = raw["jobs"]["decoder_2row"]["bytes"] + raw["jobs"]["image_head_2rows"]["bytes"]
        gbps = nbytes / image / 1e6
        figures = {"text_token_ms": text, "image_step_ms": image, "image_step_gb_per_s": gbps,
                   "image_step_read_bw_pct": 100 * gbps / ctx["bandwidth"][0],
                   **{f"{job}_ms": ms for job, ms in jobs.items() if job in JOB_METRICS},
                   "image_step_bytes": nbytes, **prefill_figures(raw, case), "memory_mib": raw["memoryMiB"]}
        label = {"device": "cpu", "build": raw["file"], "unsigned_dot": raw["unsignedDot"], "threads": raw["threads"],
                 "bits": raw["bits"], "cross_origin_isolated": raw["crossOriginIsolated"],
                 "browser": ctx["runner"].version}
        return Result(figures, label, {"jobs": raw["jobs"]})

    def verdicts(self, ctx, rows: list) -> list:
        """Memory64's price into the notes; the 7B goal where its rows ran (medians over rounds, the read
        bandwidth the better of before and after the browser rows)."""
        from janusweb.bench.host import read_bandwidth_gbps
        med = _medians(rows)
        ctx["notes"].extend(price_notes(med))
        seven = med.get(("7b", "q4", 64, GOAL_THREADS))
        if seven is None:
            return []
        ctx["bandwidth"].append(read_bandwidth_gbps())
        bw, one = max(ctx["bandwidth"]), med.get(("1b", "int8", 32, GOAL_THREADS))
        where, what = f"model=7b threads={GOAL_THREADS}", f"7B q4 CFG step (Memory64, {GOAL_THREADS} threads)"
        if one is None:
            return [Verdict("cpu_7b_step", f"{what}: no 1B int8 32-bit row at {GOAL_THREADS} threads to set it "
                            "against", seven["image_step_ms"], f"<= {GOAL}x the bound", None, where)]
        fraction = one["bytes"] / one["image_step_ms"] / 1e6 / bw
        bound = seven["bytes"] / 1e6 / (bw * fraction)  # ms
        return [Verdict("cpu_7b_step", f"{what} within {GOAL}x of its weights ({seven['bytes'] / 1e9:.2f} GB) / "
                        f"({bw:.1f} GB/s read x {100 * fraction:.0f} %, the 1B int8 step's fraction of it): "
                        f"{bound:.0f} ms", round(seven["image_step_ms"], 1), f"<= {GOAL * bound:.0f} ms",
                        seven["image_step_ms"] <= GOAL * bound, where)]


def _medians(rows: list) -> dict:
    """(model, dtype, width, threads) (the SIMD build asked) -> medians over rounds of the text
    token and the image step, and the step's bytes read."""
    from janusweb import metrics
    by = {}
    for r in rows:
        c = r.case
        if r.ran:
            by.setdefault((c["model"], c["dtype"], c["width"], c["threads"]), []).append(r.metrics)
    return {k: {"text_token_ms": metrics.median([m["text_token_ms"] for m in ms]),
                "image_step_ms": metrics.median([m["image_step_ms"] for m in ms]),
                "bytes": ms[0]["image_step_bytes"]} for k, ms in by.items()}


def price_notes(med: dict) -> list:
    """Memory64 against the 32-bit build (same kernels, shapes, threads): one line per model, dtype and threads."""
    pct = lambda new, old: f"{100 * (new / old - 1):+.0f} %"  # noqa: E731
    out = []
    for (model, dtype, width, threads), m64 in sorted(med.items()):
        m32 = med.get((model, dtype, 32, threads))
        if width == 64 and m32:
            out.append(f"price of 64-bit addresses, {model} {dtype}, {threads} thread{'s' if threads > 1 else ''}: "
                       f"text token {m32['text_token_ms']:.0f} -> {m64['text_token_ms']:.0f} ms "
                       f"({pct(m64['text_token_ms'], m32['text_token_ms'])}), CFG image step "
                       f"{m32['image_step_ms']:.0f} -> {m64['image_step_ms']:.0f} ms "
                       f"({pct(m64['image_step_ms'], m32['image_step_ms'])})")
    return out
