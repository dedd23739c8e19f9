"""The page on a large bundle (Janus-Pro-7B at q4), on WebGPU: `python -m janusweb.bench.page_7b --bundle DIR --out
bench/results/DATE-swiftshader-7b-page`.

One run of the benchmark page (web/bench.js: the demo page's worker and protocol) in Chromium on WebGPU with the
page's WGSL decoder (?engine=wgsl) at the bundle's q4: load, a text-only chat of a few greedy tokens, one image of
a few steps (the image request's `steps`: the tokens not drawn are 0, as janusweb.generate's shortened run), no
warm-up (first-call times include shader compilation). Then the Python reference on onnxruntime over the same
bundle's graphs at the dtypes the page reports (the fused graph for the WGSL decoder): tokens must be equal,
decoded pixels within 1e-3. Times come from the page; memory is bench.chromium_memory's (peaks of the Chromium
processes' proportional set size, summed and of the largest process, and of their summed RSS).

Writes OUT/result.json and OUT/README.md (atomically); exit 0 when the page equals the reference, 1 when not.
Run it under `flock /work/heavy.lock` on this machine: SwiftShader holds the weights in CPU memory.
"""

import argparse
import base64
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from janusweb.atomic import atomic_dir
from janusweb.bench.chromium_memory import ChromiumMemory
from janusweb.bench.pagerun import page_runner
from janusweb.env import chromium_path, versions
from janusweb.errors import UserError
from janusweb.fused import STEM, FusedGraphs
from janusweb.generate import ModelDims, generate_images, generate_text
from janusweb.manifest import read as read_manifest
from janusweb.prompts import SpecialIds, generation_prompt, understanding_inputs
from janusweb.sampling import uniforms
from janusweb.site import build_site

QUESTION = "Describe a mountain lake at dawn."
PROMPT = "A watercolor painting of mountains at sunset."
SEED, GUIDANCE, TEMPERATURE = 7, 5.0, 1.0
PIXEL_TOLERANCE = 1e-3


def page_run(bundle: Path, work: Path, executable: str, dtype: str, tokens: int, steps: int) -> tuple:
    site = build_site(bundle, work / "site", bench=True)
    config = {"backend": "webgpu", "dtype": dtype, "kvCache": "wgsl", "question": QUESTION, "imagePng": "",
              "textTokens": tokens, "prompt": PROMPT, "counts": [1], "guidance": GUIDANCE, "temperature": TEMPERATURE,
              "seed": SEED, "repeats": 1, "steps": steps, "warmup": False}
    t0 = time.perf_counter()
    with ChromiumMemory() as memory, page_runner(site, "webgpu", executable, driver="auto") as runner:
        raw = runner.call("bench.html", "runBench", config)
        version = runner.version
    wall = time.perf_counter() - t0
    return raw, {**memory.report(), "wall_s": round(wall, 1), "chromium": version}


def reference(bundle: Path, info: dict, tokens: int, steps: int) -> dict:
    """The Python loops on onnxruntime at the page's dtypes (the WGSL decoder runs the fused graph's weights)."""
    dtypes = dict(info["dtypes"])
    dtypes[STEM] = dtypes.pop("language_model")
    dtypes = {"gen_head": dtypes["gen_step"], "gen_img_embeds": dtypes["gen_step"], **dtypes}
    dtypes.pop("prepare_inputs_embeds@image", None)
    graphs = FusedGraphs(bundle, dtypes.pop(STEM), dtypes)
    dims = ModelDims.from_bundle_config(graphs.config)
    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    ids = SpecialIds.from_tokenizer(tok)
    t0 = time.perf_counter()
    text = generate_text(graphs, dims, understanding_inputs(tok, ids, QUESTION, dims.num_image_tokens,
                                                            with_image=False), tokens)
    t1 = time.perf_counter()
    draws = uniforms(SEED, dims.num_image_tokens).reshape(1, dims.num_image_tokens)[:, :steps]
    image = generate_images(graphs, dims, ids, generation_prompt(tok, ids, PROMPT), draws, GUIDANCE, TEMPERATURE)
    t2 = time.perf_counter()
    return {"text_tokens": text, "image_tokens": image.tokens.tolist(), "images": image.images,
            "text_s": round(t1 - t0, 2), "image_s": round(t2 - t1, 2)}


def compare(raw: dict, ref: dict) -> dict:
    u, g = raw["understanding"][0], raw["generation"]["1"][0]
    decoded = np.frombuffer(base64.b64decode(g["decoded"][0]), np.float32).reshape(ref["images"].shape)
    diff = float(np.abs(decoded - ref["images"]).max())
    image_tokens = [t[:len(ref["image_tokens"][0])] for t in g["tokens"]]
    return {"text_tokens_page": u["tokens"], "text_tokens_reference": ref["text_tokens"],
            "text_equal": u["tokens"] == ref["text_tokens"],
            "image_tokens_page": image_tokens, "image_tokens_reference": ref["image_tokens"],
            "image_tokens_equal": image_tokens == ref["image_tokens"],
            "pixels_max_abs_diff": diff, "pixels_equal": diff <= PIXEL_TOLERANCE}


def timings(raw: dict) -> dict:
    u, g = raw["understanding"][0], raw["generation"]["1"][0]
    steps = g["step_times_ms"]
    return {"load_s": round(raw["load_ms"] / 1000, 1), "sessions_ms": raw["sessions"],
            "text_first_token_ms": round(u["token_times_ms"][0]),
            "text_ms_per_token_after_first": round((u["token_times_ms"][-1] - u["token_times_ms"][0])
                                                   / max(1, len(u["token_times_ms"]) - 1)),
            "image_first_step_ms": round(steps[0]), "image_ms_per_step_after_first":
                round((steps[-1] - steps[0]) / max(1, len(steps) - 1)),
            "image_decode_ms": round(g["first_image_ms"] - steps[-1]), "image_total_ms": round(g["total_ms"])}


def readme(result: dict) -> str:
    c, t, m = result["parity"], result["page_times"], result["memory"]
    gb = lambda n: f"{n / 1e9:.2f} GB"  # noqa: E731
    return "\n".join([
        f"# The page on {result['model']} ({result['dtype']}, WGSL decoder) on WebGPU", "",
        f"Adapter: {result['backend']['adapter']}; Chromium {m['chromium']}; load at start: {result['load_at_start']}.",
        f"Command: `{result['command']}`", "",
        f"- text, {len(c['text_tokens_reference'])} greedy tokens: page {'==' if c['text_equal'] else '!='} "
        f"reference ({c['text_tokens_page']} vs {c['text_tokens_reference']})",
        f"- image, {result['steps']} steps: tokens {'equal' if c['image_tokens_equal'] else 'DIFFER'}; decoded pixels "
        f"max |diff| {c['pixels_max_abs_diff']:.2e} ({'OK' if c['pixels_equal'] else 'NOT OK'}, tolerance "
        f"{PIXEL_TOLERANCE})",
        f"- page load {t['load_s']} s; first text token {t['text_first_token_ms']} ms (the prompt's prefill), then "
        f"{t['text_ms_per_token_after_first']} ms/token (each token read back); the image, prefill of both CFG rows + "
        f"{result['steps']} steps + decode, {t['image_total_ms']} ms in all (the steps' GPU work is queued and waited "
        f"for when the drawn tokens are read back before the decode: the page's step times, first {t['image_first_step_ms']} ms then "
        f"{t['image_ms_per_step_after_first']} ms, are submission times); no warm-up: first calls include shader "
        "compilation",
        f"- Chromium memory (proportional set size), peak: {gb(m['chromium_pss_peak_sum_bytes'])} summed over its "
        f"processes, {gb(m['chromium_pss_peak_largest_process_bytes'])} the largest one",
        f"- Python reference (onnxruntime CPU): text {result['reference_times']['text_s']} s, image "
        f"{result['reference_times']['image_s']} s", ""])


def run(bundle: Path, out: Path, dtype: str, tokens: int, steps: int, browser: str | None) -> int:
    manifest = read_manifest(bundle)
    if dtype not in manifest.get("wgsl", {}):
        raise UserError(f"{bundle} has no {dtype} WGSL pack: run janusweb wgsl-pack {bundle} --dtype {dtype}")
    executable = browser or chromium_path()
    if executable is None:
        raise UserError("no Chromium found (--browser PATH)")
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="page7b-", dir=bundle.parent) as work:  # same disk: hard links
        raw, memory = page_run(bundle, Path(work), executable, dtype, tokens, steps)
    info = raw["backend"]
    ref = reference(bundle, info, tokens, steps)
    result = {"model": manifest.get("source", {}).get("name", bundle.name), "bundle": str(bundle), "dtype": dtype,
              "steps": steps, "backend": info, "page_times": timings(raw), "memory": memory,
              "reference_times": {"text_s": ref["text_s"], "image_s": ref["image_s"]},
              "parity": compare(raw, ref), "load_at_start": " ".join(f"{x:.2f}" for x in load),
              "host": {"machine": platform.machine(), "cpus": os.cpu_count(), **versions()},
              "command": " ".join(["python -m janusweb.bench.page_7b", *sys.argv[1:]])}
    with atomic_dir(out) as tmp:
        (tmp / "result.json").write_text(json.dumps(result, indent=1) + "\n")
        (tmp / "README.md").write_text(readme(result))
    sys.stdout.write(readme(result))
    p = result["parity"]
    return 0 if p["text_equal"] and p["image_tokens_equal"] and p["pixels_equal"] else 1


def main(argv=None) -> int:
    a = argparse.ArgumentParser(prog="python -m janusweb.bench.page_7b", description=__doc__.splitlines()[0])
    a.add_argument("--bundle", required=True, type=Path, help="a bundle with a WGSL pack at --dtype")
    a.add_argument("--out", required=True, type=Path, help="results folder (replaced atomically)")
    a.add_argument("--dtype", default="q4", help="the decoder's dtype (default q4, the 7B default)")
    a.add_argument("--tokens", type=int, default=4, help="greedy text tokens (default 4)")
    a.add_argument("--steps", type=int, default=4, help="image steps (default 4)")
    a.add_argument("--browser", default=None, help="Chromium executable (default: Debian's chromium)")
    args = a.parse_args(argv)
    try:
        return run(args.bundle.resolve(), args.out, args.dtype, args.tokens, args.steps, args.browser)
    except UserError as e:
        sys.stderr.write(f"page_7b: error: {e}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
