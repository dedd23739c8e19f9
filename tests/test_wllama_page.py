"""The llama.cpp peer row in Chromium on a tiny GGUF (bench/gguf_peer.py): the wllama page decodes exactly the
tokens asked for after the prompt, at the thread count asked for, cross-origin isolated, with llama.cpp's own
timings; through the `run` scenario's backend, llama.cpp's per-token time is the row's decode figure."""

import json
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from janusweb.bench.backends import REGISTRY, load, wllama
from janusweb.bench.gguf_peer import LlamaShapes, write_gguf
from janusweb.bench.measures import speed
from janusweb.bench.pagerun import page_runner
from janusweb.bench.scenarios.run import Work
from janusweb.bench.workload import Workload
from janusweb.env import chromium_path
from janusweb.site import build_page

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="no Chromium (apt-get install chromium)")
S = LlamaShapes(vocab=512, hidden=64, intermediate=128, layers=2, heads=4, kv_heads=4, head_dim=16,
                rope_theta=10000.0, rms_eps=1e-6)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("wllama") / "site"
    build_page(out, bench=True)
    if not (out / wllama.PAGE).is_file():
        pytest.skip("@wllama/wllama is not installed (npm ci): no wllama-bench.html")
    wllama.link_gguf(out, write_gguf(out.parent / "tiny.gguf", S, "q8_0"))
    return out


def test_the_page_decodes_the_tokens_asked_for(site):
    with page_runner(site, "wasm", chromium_path()) as runner:
        for threads in (1, 2):
            raw = wllama.measure(runner, threads, tokens=5, repeats=2)
            assert (raw["threads"], raw["multithread"], raw["crossOriginIsolated"]) == (threads, threads > 1, True)
            assert (raw["n_vocab"], raw["n_layer"], raw["n_embd"]) == (512, 2, 64)
            assert raw["wllama"] == "3.13.0" and raw["libllama"]
            first, *later = raw["runs"]
            assert first["timings"]["prompt_n"] == 130  # BOS, "▁" and 2 x 45 characters as byte tokens
            for run in raw["runs"]:
                t = run["timings"]
                assert t["predicted_n"] == 5 and run["finish_reason"] == "length"  # EOS ignored: all 5 tokens
                assert t["predicted_ms"] > 0 and t["predicted_per_token_ms"] > 0 and t["prompt_ms"] > 0
                assert run["usage"]["completion_tokens"] == 5
            agg = wllama.aggregate(raw)
            assert agg["extra"]["generated_tokens"] == [5, 5] and agg["figures"]["decode_ms_per_token"] > 0
            assert agg["extra"]["decode_ms_per_token"]["min"] <= agg["figures"]["decode_ms_per_token"]
            # llama.cpp keeps the prompt's cache: a repeat evaluates only what is new, so the prompt rate is the
            # first completion's (the one that evaluated all 130 positions)
            assert all(r["timings"]["prompt_n"] < 130 for r in later)
            assert agg["figures"]["prompt_tokens_per_s"] == pytest.approx(130 / first["timings"]["prompt_ms"] * 1000)
        raw = wllama.measure(runner, 1, tokens=2, repeats=1, prompt=wllama.byte_prompt(40))
        assert raw["runs"][0]["timings"]["prompt_n"] == 40  # byte_prompt(n): n positions, BOS and "▁" included


def test_the_run_backend_measures_llama_cpp_decode(tmp_path, monkeypatch):
    """`janusweb bench run --backend wllama`'s backend: its own Q8_0 GGUF of the bundle's decoder shapes, at the
    threads asked for (0: the page's), llama.cpp's own per-token time as the row's decode figure."""
    assert REGISTRY["wllama"] == "janusweb.bench.backends.wllama:Wllama"
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({"language_config": {
        "vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 4, "head_dim": 16, "rms_norm_eps": 1e-6}}))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the GGUF cache goes under tmp_path
    backend = load("wllama")
    assert backend.dtypes(bundle) == ["q8_0"] and backend.takes_threads and not backend.takes_engine
    ctx = SimpleNamespace(browser=None, headed=False, driver="auto")
    work = Work(bundle, Workload(text_tokens=4, repeats=1), None, {})
    with backend.session(ctx, bundle) as runner:
        for threads in (1, 0):
            m = backend.run(ctx, {"threads": threads}, work, runner)
            assert m["extra"]["generated_tokens"] == [4, 4, 4]  # at least 3 completions
            assert m["label"]["threads"] == (threads or wllama.page_threads())
            assert m["label"]["cross_origin_isolated"] is True
            assert speed(m, 0)["decode_tokens_per_s"] == pytest.approx(1000 / m["figures"]["decode_ms_per_token"])
    assert list(Path(tmp_path, "janusweb-gguf").glob("*.gguf"))
