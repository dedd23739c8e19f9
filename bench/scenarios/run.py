"""The workload on today's backends: the page (webgpu, wasm: any engine, threads), native PyTorch, onnxruntime,
transformers.js, llama.cpp (wllama).

The same workload on every backend (bench/workload.py): greedy text after a question about a seeded image (or none,
`--chat-image none`), and text-to-image with CFG from fixed uniform draws (`--images`, `--image-steps`), each
part left out at 0. Every combination of bundle x backend x dtype x engine x threads x text_tokens x images x
image_steps x warmup is one row; `--dtype auto` is every dtype a backend runs on the bundle. Each row is compared
with a reference (bench/reference.py): `native` (transformers' model, fp32: token agreement and PSNR are
measurements) or `ort` (onnxruntime over the row's own graphs and dtypes, optionally at another MatMulNBits
accuracy_level: the row must give the same tokens, a verdict). `--memory yes` samples the browser's processes
(peak RSS and PSS) while each page row runs. `--fresh-pack cpu|wgsl` runs on a scratch copy of the bundle with
that engine's packs written by this checkout. `--targets "ttft_ms<=15000,vq_decode_ms<=5000"` judges every ran
row's figures against speed targets, one verdict each (a suite's targets are data, in bench/suites.json).
`--draws centred` moves every image draw to the middle of its token's probability interval in the ort reference
(bench/reference.py: centred_draws), the same draws for the row and its references.
"""

import contextlib
import dataclasses
import itertools
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from janusweb.bench.backends import NAMES, bundle_dtypes, load
from janusweb.bench.backends.page import ENGINES
from janusweb.bench.pagerun import browser_params
from janusweb.bench.scenario import Metric, Param, Result, Scenario, Verdict, boolean, unique
from janusweb.bench.workload import PROMPT, QUESTION, Workload
from janusweb.errors import UserError


def parse_targets(text: str) -> tuple:
    """`METRIC<=VALUE,METRIC>=VALUE,...` as ((metric, op, value), ...); the metrics are run's own columns."""
    out, known = [], {m.key for m in METRICS}
    for part in filter(None, (p.strip() for p in text.split(","))):
        op = "<=" if "<=" in part else ">=" if ">=" in part else None
        key, _, value = part.partition(op) if op else (part, "", "")
        if op is None or key.strip() not in known:
            raise ValueError(f"{part!r} is not METRIC<=VALUE or METRIC>=VALUE with one of run's metrics")
        out.append((key.strip(), op, float(value)))
    return tuple(out)


def targets(text: str) -> str:
    """The --targets text, checked (kept as text: one parameter, not a list of cases)."""
    parse_targets(text)
    return text


def target_verdicts(rows: list, wanted: tuple, names: list) -> list:
    """Each wanted target on each ran row: met, not met, or None where the row has no such figure."""
    from janusweb.bench.driver import title
    out = []
    for r in (r for r in rows if r.ran):
        for key, op, goal in wanted:
            v = r.metrics.get(key)
            met = None if v is None else (v <= goal if op == "<=" else v >= goal)
            out.append(Verdict(key, f"{key} target", v, f"{op} {goal:g}", met, title(r.case, names)))
    return out


PIXEL_TOLERANCE = 1e-3  # decoded pixels against the ort reference (both in [-1, 1])
COUNTER_WHAT = {"dispatches": "compute dispatches", "submits": "queue submits", "reads": "GPU->CPU reads (mapAsync)",
                "read_bytes": "bytes read back"}

PARAMS = (
    Param("bundle", Path, None, "bundle folder(s) written by janusweb export"),
    Param("backend", str, ("webgpu", "wasm", "native-cuda", "native-cpu", "ort-cpu"), "backends", choices=NAMES),
    Param("dtype", str, ("auto",), "the bundle's variants (fp32, int8, q4, ...; auto: all it has); native "
                                   "PyTorch runs the source at its own (fp32; bf16 on CUDA), wllama Q8_0"),
    Param("engine", str, ("auto",), "the page's decoder engine", choices=ENGINES),
    Param("threads", int, (0,), "WASM threads of the page and wllama (0: the page's choice)"),
    Param("text_tokens", int, (128,), "greedy tokens after the question (0: no text part)"),
    Param("images", int, (1,), "images per request, CFG rows twice as many (0: no image part)"),
    Param("image_steps", int, (0,), "image tokens drawn per image (0: all of them)"),
    Param("warmup", boolean, (True,), "a short text and image request before the timed ones (yes/no)"),
    Param("repeats", int, 3, "timed runs of each part; figures are medians over them", multi=False),
    Param("chat_image", str, "random", "the question's image: a seeded random one, or none (text-only chat)",
          multi=False, choices=("random", "none")),
    Param("question", str, QUESTION, "the question", multi=False),
    Param("prompt", str, PROMPT, "the text-to-image prompt", multi=False),
    Param("temperature", float, 1.0, "the image tokens' sampling temperature (0: greedy, the most likely token "
                                     "at each step)", multi=False),
    Param("reference", str, "native", "what rows are compared with (see above)", multi=False,
          choices=("native", "ort", "none")),
    Param("draws", str, "seeded", "the image draws: the seed's, or centred (each moved to the middle of its "
                                  "token's interval in the ort reference over the row's dtype and engine: image "
                                  "tokens then differ only where the distributions do, not by a draw on an edge)",
          multi=False, choices=("seeded", "centred")),
    Param("accuracy_level", int, None, "the ort reference's MatMulNBits accuracy_level for the decoder and "
                                       "lm_head (default: the engine's: 4 for the CPU engine's int8 activations, "
                                       "else as exported)", multi=False),
    Param("memory", boolean, False, "sample the browser's memory while each page row runs", multi=False),
    Param("targets", targets, "", "speed targets judged on every row: METRIC<=VALUE or METRIC>=VALUE, comma-"
                                  "separated", multi=False),
    Param("fresh_pack", str, "none", "re-pack a scratch copy for this engine first", multi=False,
          choices=("none", "cpu", "wgsl")),
    *browser_params(),
    Param("headed", boolean, False, "show the browser window", multi=False),
)

METRICS = (
    Metric("load_s", "s", "model load (the page: fetch, sessions, engine)"),
    Metric("ttft_ms", "ms", "time to first token"),
    Metric("prompt_tokens_per_s", "tok/s", "prompt evaluation speed (wllama: llama.cpp's own timing)"),
    Metric("image_encode_ms", "ms", "ttft's first part: the question's image through the vision tower and aligner"),
    Metric("prompt_prefill_ms", "ms", "ttft's second part: the prompt's prefill, to the first token"),
    Metric("decode_tokens_per_s", "tok/s", "decode speed after the first token"),
    Metric("decode_ms_per_token", "ms", "mean decode step after the first token"),
    Metric("image_prefill_ms", "ms", "to the first image step (both CFG rows' prefill)"),
    Metric("image_step_ms", "ms", "mean CFG image step after the first"),
    Metric("vq_decode_ms", "ms", "last step to the first decoded image"),
    Metric("s_per_image", "s", "whole image request / images"),
    *(Metric(f"{k}_per_token", "", f"{w} per decode step (WebGPU)") for k, w in COUNTER_WHAT.items()),
    *(Metric(f"{k}_per_image_step", "", f"{w} per image step (WebGPU)") for k, w in COUNTER_WHAT.items()),
    Metric("text_token_agreement_pct", "%", "text tokens equal to the reference's"),
    Metric("text_first_divergence", "", "first text token that differs (none: all equal)", int),
    Metric("first_logits_max_abs_diff", "", "first step's logits against the reference's"),
    Metric("image_token_agreement_pct", "%", "image tokens equal to the reference's"),
    Metric("pixels_max_abs_diff", "", "decoded pixels ([-1, 1]) against the reference's"),
    Metric("image_psnr_db", "dB", "PSNR of the decoded images against the reference's (none: identical)"),
    Metric("peak_pss_sum_bytes", "bytes", "browser processes' summed PSS, peak"),
    Metric("peak_pss_largest_bytes", "bytes", "largest browser process's PSS, peak"),
    Metric("peak_rss_sum_bytes", "bytes", "browser processes' summed RSS, peak"),
    Metric("engine_memory_bytes", "bytes", "the engine's own memory (the CPU engine's WebAssembly memory)"),
    Metric("gpu_peak_bytes", "bytes", "CUDA memory allocated, peak"),
)


@dataclass
class Work:
    """One case's bundle (as run: a scratch copy with fresh packs), its workload and inputs."""
    bundle: Path
    workload: Workload
    inputs: object
    config: dict  # the bundle's config.json `janusweb` block
    centred_on: tuple = ()  # (dtype, engine) whose reference the image draws were centred in (--draws centred)


@dataclass
class Context:
    values: dict
    bundles: dict  # bundle asked -> bundle run
    browser: str | None = None
    headed: bool = False
    page: Path | None = None
    driver: str = "auto"
    _models: dict = field(default_factory=dict)
    _inputs: dict = field(default_factory=dict)
    _refs: dict = field(default_factory=dict)
    _centred: dict = field(default_factory=dict)
    _sources: list = field(default_factory=list)

    def model(self, bundle: Path):
        """The bundle's source as transformers' model, fp32 on the CPU, loaded once (backends never modify it)."""
        if bundle not in self._models:
            from janusweb.export.checkpoint import load_source
            from janusweb.log import step
            source = json.loads((bundle / "manifest.json").read_text())["source"]
            with step("load the PyTorch model (native backends and the native reference)"):
                src = load_source(source.get("name") or source["path"], source.get("seed", 0))
            self._sources.append(src)
            self._models[bundle] = src.model
        return self._models[bundle]

    def work(self, case: dict) -> Work:
        from janusweb.bench.workload import build_inputs
        w = Workload(question=case["question"], chat_image=case["chat_image"] == "random",
                     text_tokens=case["text_tokens"], prompt=case["prompt"], temperature=case["temperature"],
                     images=case["images"], image_steps=case["image_steps"] or None, repeats=case["repeats"],
                     warmup=case["warmup"])
        bundle = self.bundles[case["bundle"]]
        key = (bundle, dataclasses.replace(w, repeats=0, warmup=False))
        if key not in self._inputs:
            self._inputs[key] = build_inputs(bundle, w)
        config = json.loads((bundle / "config.json").read_text())["janusweb"]
        work = Work(bundle, w, self._inputs[key], config)
        if self.values["draws"] == "centred" and work.inputs.draws is not None:
            work = self.centred(work, case)
        return work

    def centred(self, work: Work, case: dict) -> Work:
        """The work with its image draws centred in the ort reference over the case's dtype and engine (an engine
        left to the page's choice: the decoder as exported), computed once per (bundle, workload, dtype, engine)."""
        from janusweb.bench import reference
        engine = case.get("engine") if case.get("engine") not in (None, "auto") else "ort-grow"
        on = (case["dtype"], engine)
        key = (work.bundle, dataclasses.replace(work.workload, repeats=0, warmup=False), *on)
        if key not in self._centred:
            dtypes = row_dtypes(work.bundle, case["dtype"])
            if dtypes is None:
                raise UserError(f"--draws centred: {work.bundle} has no {case['dtype']} graphs to centre the draws in")
            from janusweb.log import step
            with step(f"centre the image draws in onnxruntime's {case['dtype']} reference ({engine})"):
                self._centred[key] = reference.centred_draws(work, dtypes, engine, self.values["accuracy_level"])
        inputs = dataclasses.replace(work.inputs, draws=self._centred[key])
        return dataclasses.replace(work, inputs=inputs, centred_on=on)

    def reference(self, case: dict, work: Work, m: dict) -> dict | None:
        kind = self.values["reference"]
        if kind == "none" or not (m.get("text") or any(r.get("tokens") is not None for r in m.get("image", []))):
            return None
        from janusweb.bench import reference
        base = (work.bundle, dataclasses.replace(work.workload, repeats=0, warmup=False), work.centred_on)
        if kind == "native":
            key = (*base, "native")
            if key not in self._refs:
                self._refs[key] = reference.native(self.model(work.bundle), work)
            return self._refs[key]
        dtypes = m.get("dtypes") or row_dtypes(work.bundle, case["dtype"])
        if dtypes is None:
            return None
        engine = m.get("label", {}).get("engine") or "ort-grow"
        key = (*base, "ort", json.dumps(dtypes, sort_keys=True), engine, self.values["accuracy_level"])
        if key not in self._refs:
            self._refs[key] = reference.ort(work, dtypes, engine, self.values["accuracy_level"])
        return self._refs[key]

    def close(self) -> None:
        for src in self._sources:
            if src.description["kind"] == "preset":
                shutil.rmtree(src.tokenizer_dir, ignore_errors=True)


def row_dtypes(bundle: Path, dtype: str) -> dict | None:
    """{graph: dtype} of a Python row on the bundle's graphs (the page reports its own); None where the bundle has
    no such variant (bf16)."""
    from janusweb.bench.backends.ort import variant_map
    return variant_map(bundle, dtype) if dtype in bundle_dtypes(bundle) else None


def check_bundle(bundle: Path) -> None:
    if not (Path(bundle) / "manifest.json").is_file():
        raise UserError(f"{bundle} is not a janusweb bundle (no manifest.json)")


class Run(Scenario):
    """The workload on today's backends: the page (any engine), native PyTorch, onnxruntime, transformers.js, wllama."""
    name = "run"
    params = PARAMS
    metrics = METRICS

    def cases(self, values: dict) -> list:
        """Every combination, each backend with the parameters it takes: a backend's own dtypes (native, wllama)
        replace --dtype, and engine / threads are left out (None) where it has none; `auto` is every dtype the
        bundle has. Equal cases after that run once."""
        rest = [p.name for p in self.params if p.multi][3:]  # after bundle, backend, dtype
        out = []
        for bundle, backend in itertools.product(values["bundle"], values["backend"]):
            b = load(backend)
            dtypes = b.own_dtypes or [d for asked in values["dtype"]
                                      for d in (bundle_dtypes(bundle) if asked == "auto" else [asked])]
            for dtype, combo in itertools.product(dtypes, itertools.product(*(values[n] for n in rest))):
                case = {**values, "bundle": bundle, "backend": backend, "dtype": dtype, **dict(zip(rest, combo))}
                if case["text_tokens"] or case["images"]:  # else nothing to run
                    out.append({**case, "engine": case["engine"] if b.takes_engine else None,
                                "threads": case["threads"] if b.takes_threads else None})
        return unique(out)

    @contextlib.contextmanager
    def context(self, run):
        v = run.values
        for b in v["bundle"]:
            check_bundle(b)
        with contextlib.ExitStack() as stack:
            bundles = {b: Path(b).resolve() for b in v["bundle"]}
            if v["fresh_pack"] != "none":
                from janusweb.bench.scratch import fresh_packs
                from janusweb.pack import PACKERS
                asked = [d for d in v["dtype"] if d != "auto"]
                for b in v["bundle"]:
                    tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix=".janusweb-bench-",
                                                                          dir=bundles[b].parent))
                    dtypes = [d for d in (asked or bundle_dtypes(b)) if d in PACKERS[v["fresh_pack"]].dtypes]
                    bundles[b] = fresh_packs(bundles[b], Path(tmp), v["fresh_pack"], dtypes)
            ctx = Context(v, bundles, v["browser"], v["headed"], v["page"], v["driver"])
            stack.callback(ctx.close)
            if v["reference"] != "none":
                run.notes.append(f"reference: {v['reference']}" + (f", MatMulNBits accuracy_level "
                                                                    f"{v['accuracy_level']}"
                                                                    if v["accuracy_level"] is not None else ""))
            yield ctx

    def unavailable(self, ctx: Context, case: dict) -> str | None:
        backend = load(case["backend"])
        return backend.refuses(case) or backend.unavailable(ctx)

    def session_key(self, case: dict):
        return load(case["backend"]).session_key(case)

    @contextlib.contextmanager
    def session(self, ctx: Context, case: dict):
        with load(case["backend"]).session(ctx, ctx.bundles[case["bundle"]]) as s:
            yield s

    def run(self, ctx: Context, case: dict, session) -> Result:
        from janusweb.bench import measures
        work = ctx.work(case)
        m = load(case["backend"]).run(ctx, case, work, session)
        figures = {**measures.speed(m, work.workload.images), **measures.memory(m)}
        detail = measures.detail(m)
        if work.centred_on:
            detail["draws"] = work.inputs.draws.tolist()
        ref = ctx.reference(case, work, m)
        if ref is not None:
            figures |= measures.parity(m, ref)
            detail["reference"] = ref["name"]
        return Result({k: v for k, v in figures.items() if v is not None}, m.get("label", {}), detail)

    def verdicts(self, ctx: Context, rows: list) -> list:
        """The targets asked for; with the ort reference (the row's own graphs): the same text tokens, image tokens
        and pixels."""
        from janusweb.bench.driver import title, varying
        names = varying(self, [r.case for r in rows]) or ["backend", "dtype"]
        out = target_verdicts(rows, parse_targets(ctx.values["targets"]), names)
        if ctx.values["reference"] != "ort":
            return out
        for r in rows:
            where, fig = title(r.case, names), r.metrics
            checks = [("text_tokens_equal", "text tokens equal the reference's", "text_token_agreement_pct",
                       "= 100 %", lambda v: v == 100.0),
                      ("image_tokens_equal", "image tokens equal the reference's", "image_token_agreement_pct",
                       "= 100 %", lambda v: v == 100.0),
                      ("pixels_close", "decoded pixels within the tolerance", "pixels_max_abs_diff",
                       f"<= {PIXEL_TOLERANCE:g}", lambda v: v <= PIXEL_TOLERANCE)]
            out += [Verdict(key, what, fig[metric], target, ok(fig[metric]), where)
                    for key, what, metric, target, ok in checks if r.ran and metric in fig]
        return out
