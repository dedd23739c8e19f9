"""wllama: the llama.cpp peer row. llama.cpp's WebAssembly build (npm @wllama/wllama 3.x, its one .wasm for 1 and
n threads) decodes a GGUF with the bundle's decoder shapes and seeded random weights (bench/gguf_peer.py, Q8_0)
in the same Chromium as the other rows, cross-origin isolated, at the thread count asked for (0: the page's).

What is measured: text decode per token after the prompt, batch 1 (llama.cpp's own `predicted_per_token_ms`
of each greedy completion, EOS ignored), and its prompt evaluation (`prompt_n` / `prompt_ms` of the completions
that evaluated the whole prompt: llama.cpp reuses the cached prompt in the next ones), over `repeats` completions:
median and spread. The prompt is plain ASCII (one byte token per byte with the byte vocabulary, a
space being "▁", 3 bytes): `createCompletion` takes strings only.
Speed only: the random weights' tokens are not compared with anything.
"""

import contextlib
import os
import tempfile
from pathlib import Path

from janusweb import metrics
from janusweb.bench.backends import BrowserBackend

PAGE = "wllama-bench.html"
GGUF_URL = "peer/model.gguf"
PROMPT = "The quick brown fox jumps over the lazy dog. " * 2  # 130 byte tokens with BOS and the leading "▁"


def byte_prompt(positions: int) -> str:
    """A prompt of `positions` tokens with the byte vocabulary: BOS, the leading "▁" (3 bytes), then one letter a
    token (llama.cpp's own prompt_n says how many it evaluated)."""
    if positions < 8:
        raise ValueError(f"a wllama prompt needs at least 8 positions, not {positions}")
    return "".join(chr(ord("a") + i % 26) for i in range(positions - 4))


def page_threads() -> int:
    """The thread count the page's other WASM rows use (web/lib/backend.js: hardwareConcurrency capped at 8)."""
    return max(1, min(os.cpu_count() or 1, 8))


def link_gguf(site: Path, gguf: Path) -> None:
    """Put the GGUF where the page fetches it (a hard link where the file systems allow)."""
    dst = Path(site) / GGUF_URL
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(gguf, dst)
    except OSError:
        dst.symlink_to(Path(gguf).resolve())


def measure(runner, threads: int, tokens: int = 16, repeats: int = 3, prompt: str = PROMPT) -> dict:
    """One page call: load the site's GGUF with `threads` threads, `repeats` completions of `tokens` tokens."""
    return runner.call(PAGE, "runWllama", {"url": GGUF_URL, "threads": threads, "prompt": prompt,
                                           "tokens": tokens, "repeats": repeats})


def aggregate(raw: dict) -> dict:
    """Per-token decode ms (llama.cpp's timings) per run, their median and spread, as a measurement's figures."""
    runs = [r["timings"] for r in raw["runs"]]
    if any(t is None or not t.get("predicted_n") for t in runs):
        raise RuntimeError(f"llama.cpp returned no decode timings: {raw['runs']}")
    per_token = [t["predicted_per_token_ms"] for t in runs]
    whole = max(t["prompt_n"] for t in runs)  # llama.cpp keeps the prompt's cache: a repeat evaluates ~1 token
    prompt_rate = [t["prompt_n"] / t["prompt_ms"] * 1000 for t in runs if t["prompt_n"] == whole]
    return {"figures": {"decode_ms_per_token": metrics.median(per_token),
                        "ttft_ms": metrics.median([t["prompt_ms"] for t in runs]),
                        "prompt_tokens_per_s": metrics.median(prompt_rate)},
            "extra": {"decode_ms_per_token": metrics.spread(per_token), "generated_tokens": [t["predicted_n"] for t in runs],
                      "prompt_tokens": [t["prompt_n"] for t in runs], "prompt_ms": [t["prompt_ms"] for t in runs],
                      "note": "llama.cpp's own timings (ttft_ms: its prompt evaluation); random weights: speed "
                              "only, no token parity"}}


def label(raw: dict, runner) -> dict:
    return {"device": "cpu", "runner": f"llama.cpp {raw['libllama']} (wllama {raw['wllama']})",
            "threads": raw["threads"], "multithread": raw["multithread"],
            "cross_origin_isolated": raw["crossOriginIsolated"], "browser": runner.version,
            "gguf_bytes": raw["gguf_bytes"]}


class Wllama(BrowserBackend):
    name, ep, own_dtypes = "wllama", "wasm", ("q8_0",)
    takes_threads = True

    @contextlib.contextmanager
    def session(self, ctx, bundle: Path):
        from janusweb.bench.gguf_peer import bundle_shapes, cached_gguf
        from janusweb.bench.pagerun import page_runner
        from janusweb.env import chromium_path
        from janusweb.site import build_page
        gguf = cached_gguf(bundle_shapes(bundle))
        with tempfile.TemporaryDirectory(prefix="janusweb-wllama-") as tmp:
            build_page(Path(tmp), bench=True)
            if not (Path(tmp) / PAGE).is_file():
                raise RuntimeError("the bench page has no wllama-bench.html: @wllama/wllama is not installed (npm ci)")
            link_gguf(Path(tmp), gguf)
            with page_runner(Path(tmp), self.ep, ctx.browser or chromium_path(), ctx.headed, ctx.driver) as runner:
                yield runner

    def run(self, ctx, case: dict, work, runner) -> dict:
        threads = case["threads"] or page_threads()
        raw = measure(runner, threads, tokens=work.workload.text_tokens, repeats=max(3, work.workload.repeats))
        if raw["threads"] != threads:
            raise RuntimeError(f"asked for {threads} threads, llama.cpp runs {raw['threads']} "
                               f"(cross-origin isolated: {raw['crossOriginIsolated']})")
        return {**aggregate(raw), "label": label(raw, runner), "load_s": raw["load_ms"] / 1000}
