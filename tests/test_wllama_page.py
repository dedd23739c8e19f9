"""The llama.cpp peer row in Chromium on a tiny GGUF (bench/gguf_peer.py): the wllama page decodes exactly the
tokens asked for after the prompt, at the thread count asked for, cross-origin isolated, with llama.cpp's own
timings; through the bench registry the rows come out typed (ran, at 1 and at the page's thread count)."""

import json
import tempfile
from pathlib import Path

import pytest

from janusweb.bench.backends import REGISTRY, BenchContext, load, wllama
from janusweb.bench.driver import run_rows
from janusweb.bench.gguf_peer import LlamaShapes, write_gguf
from janusweb.bench.pagerun import page_runner
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
            assert agg["generated_tokens"] == [5, 5] and agg["decode_tokens_per_s"] > 0
            assert agg["decode_ms_per_token"]["min"] <= agg["decode_ms_per_token"]["median"]


def test_registry_rows_are_typed(tmp_path, monkeypatch):
    assert REGISTRY["wllama"] == "janusweb.bench.backends.wllama:Wllama"
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({"language_config": {
        "vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 4, "head_dim": 16, "rms_norm_eps": 1e-6}}))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the GGUF cache goes under tmp_path
    ctx = BenchContext(bundle=bundle, inp=None, w=Workload(text_tokens=4, repeats=1), dtypes=["fp32"])
    rows = run_rows([load("wllama")], ctx)
    assert [(r.name, r.dtype, r.variant, r.status) for r in rows] == [
        ("wllama", "q8_0", "1 thread", "ran"), ("wllama", "q8_0", f"{wllama.page_threads()} threads", "ran")]
    for r in rows:
        assert r.result["generated_tokens"] == [4, 4, 4]  # at least 3 completions
        assert r.label["threads"] == int(r.variant.split()[0]) and r.label["cross_origin_isolated"] is True
    assert list(Path(tmp_path, "janusweb-gguf").glob("*.gguf"))
