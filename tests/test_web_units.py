"""The page's pure modules against their Python references, run under node (the scripts in tests/js/): tokenizer
ids and prompt formats, image preprocessing, seeded draws; the page's own unit tests (`node --test tests/js/`, the
*.test.mjs files); and the gen_step graph's rule against janusweb.sampling."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer

from janusweb.export import presets, tokenizer as tiny_tokenizer
from janusweb.export.wrappers import GenStep
from janusweb.image import preprocess
from janusweb.prompts import SpecialIds, generation_prompt, understanding_inputs, unconditional
from janusweb.sampling import cfg_logits, sample, uniforms

WEB = Path(__file__).resolve().parent.parent / "web" / "lib"
JS = Path(__file__).resolve().parent / "js"
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None or not (WEB.parent.parent / "node_modules" / "@huggingface").is_dir(),
                                reason="node and the npm packages (npm ci) are needed to run the page's modules")

CORPUS = [
    "Hello world", "  leading and trailing  ", "multiple   spaces\tand\ttabs\nnewlines\n\n", "héllo wörld — ünïcödé",
    "日本語のテキスト", "emoji 😀👍🏽 family 👨‍👩‍👧", "<image_placeholder>\nWhat is this?", "<|User|>: hi\n\n<|Assistant|>:",
    "<｜begin▁of▁sentence｜>x<｜end▁of▁sentence｜>", "<begin_of_image><end_of_image><｜▁pad▁｜>", "", " ",
    "a<image_placeholder>b", "numbers 1234567890 3.14", "Ωμέγα Привет مرحبا שלום", "\u00a0nbsp\u2003em\u3000",
    "don't won't I'm", "x" * 300, "\x1c\x1dspaces python strips\x85", "\ufeffbom",
]


def run_node(script: str, tmp_path: Path, payload, flags: tuple = ()) -> object:
    """Run tests/js/`script` on a JSON file of `payload`; its stdout is JSON. `flags`: Node's own (e.g.
    --experimental-wasm-memory64)."""
    (tmp_path / "in.json").write_text(json.dumps(payload))
    out = subprocess.run([NODE, *flags, str(JS / script), str(tmp_path / "in.json")], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@needs_node
def test_the_pages_unit_tests():
    """tests/js/*.test.mjs under `node --test`: the engine and dtype resolvers, the backend choice, the load plan's
    checks, the error classes, against values written in the tests."""
    files = sorted(JS.glob("*.test.mjs"))
    assert files
    done = subprocess.run([NODE, "--test", *map(str, files)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "# fail 0" in done.stdout and "# pass 0" not in done.stdout


@pytest.fixture(scope="module")
def tiny_tok(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tok")
    tiny_tokenizer.write_tiny_tokenizer(folder, presets.TINY_VOCAB)
    return folder


@needs_node
def test_tokenizer_ids_match_python(tiny_tok, tmp_path):
    tok = Tokenizer.from_file(str(tiny_tok / "tokenizer.json"))
    ids = SpecialIds.from_tokenizer(tok)
    got = run_node("tokenizer_ids.mjs", tmp_path, {"dir": str(tiny_tok), "corpus": CORPUS})
    assert got["ids"] == [tok.encode(s).ids for s in CORPUS]
    assert got["special"] == ids.__dict__
    for q, js in zip(CORPUS, got["understanding"]):
        ref = understanding_inputs(tok, ids, q, 16)
        assert js["inputIds"] == ref["input_ids"][0].tolist()
        assert js["imageMask"] == ref["images_seq_mask"][0].tolist()
    ref = understanding_inputs(tok, ids, " Why? ", 16, with_image=False)
    assert got["textOnly"]["inputIds"] == ref["input_ids"][0].tolist()
    prompt = generation_prompt(tok, ids, "  A red cube  ")
    assert got["prompt"] == prompt.tolist()
    assert got["uncond"] == unconditional(prompt, ids).tolist()


@needs_node
@pytest.mark.parametrize("w,h,size", [(97, 41, 64), (40, 130, 64), (300, 200, 64), (13, 9, 64), (50, 20, 384),
                                      (1000, 3, 64), (64, 64, 64), (83, 150, 384)])
def test_preprocess_matches_python(w, h, size, tmp_path):
    rng = np.random.default_rng(w * 1000 + h)
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    rgb[..., 0] = (127 + 120 * np.sin(xx / 5.0) * np.cos(yy / 7.0)).astype(np.uint8)  # smooth and noisy content
    rgba = np.concatenate([rgb, np.full((h, w, 1), 255, np.uint8)], -1)
    (tmp_path / "rgba.bin").write_bytes(rgba.tobytes())
    cfg = {"image_size": size, "min_size": 14, "background_color": [127, 127, 127], "image_mean": [0.5] * 3,
           "image_std": [0.5] * 3}
    got = run_node("preprocess_rgba.mjs", tmp_path, {"file": str(tmp_path / "rgba.bin"), "w": w, "h": h, "cfg": cfg,
                                                    "out": str(tmp_path / "out.bin")})
    assert got == {}
    js = np.fromfile(tmp_path / "out.bin", np.float32).reshape(3, size, size)
    ref = preprocess(Image.fromarray(rgb), size)
    np.testing.assert_array_equal(js, ref)


@needs_node
def test_uniforms_match_python(tmp_path):
    cases = [(0, 50, 0), (1, 7, 3), (12345, 20, 1000), (-3, 5, 0), (2**40 + 5, 5, 2**31)]
    got = run_node("uniforms_cases.mjs", tmp_path, cases)
    for (seed, count, offset), js in zip(cases, got):
        assert js == uniforms(seed, count, offset).tolist(), seed  # exact: 24-bit draws


@needs_node
def test_chat_sampling_matches_python(tmp_path):
    """sampling.js's sampleToken (chat tokens on the CPU) picks what janusweb.sampling.sample picks from the same
    float32 logits and draws: many draws over peaked, flat and tied rows, greedy at temperature 0."""
    rng = np.random.default_rng(5)
    rows = [rng.normal(0, s, 300).astype(np.float32) for s in (0.1, 2.0, 8.0)] + [np.zeros(50, np.float32)]
    cases = [(row.tolist(), t, uniforms(i, 200).tolist()) for i, row in enumerate(rows) for t in (1.0, 0.6, 0.0)]
    got = run_node("sample_token_cases.mjs", tmp_path, cases)
    for (logits, t, us), js in zip(cases, got):
        x = np.array(logits, np.float32)[None]
        assert js == [int(sample(x, np.array([u]), t)[0]) for u in us], t
    assert len(set(got[0])) > 20  # a flat row: the draws spread over many tokens


@pytest.fixture(scope="module")
def tiny_model(tiny_tok):
    tok = Tokenizer.from_file(str(tiny_tok / "tokenizer.json"))
    return presets.build_preset("tiny", 0, tiny_tokenizer.special_token_ids(tok))


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
@pytest.mark.parametrize("n", [1, 3])
def test_gen_step_follows_the_sampling_rule(tiny_model, temperature, n):
    """gen_step's torch wrapper picks what janusweb.sampling.sample picks from the same CFG logits and draws,
    fills its token buffer at `step` only, and embeds the chosen ids for both CFG halves."""
    step_module = GenStep(tiny_model).eval()
    gen = torch.Generator().manual_seed(n)
    T = tiny_model.config.vision_config.num_image_tokens
    draws = torch.rand(n, T, generator=gen)
    tokens = torch.randint(0, 256, (n, T), generator=gen).float()
    for step in (0, 5, T - 1):
        hidden = torch.randn(2, n, 3, tiny_model.config.text_config.hidden_size, generator=gen) * 4
        with torch.no_grad():
            ids, embeds, out, out64 = step_module(hidden, draws, torch.tensor([5.0]), torch.tensor([temperature]),
                                                   tokens, torch.tensor([float(step)]))
            logits = tiny_model.model.generation_head(hidden[:, :, -1]).numpy()
            ref_embeds = tiny_model.prepare_embeddings_for_image_generation(torch.cat([ids, ids]))
        ref = sample(cfg_logits(logits[0], logits[1], 5.0), draws[:, step].numpy(), temperature)
        assert ids[:, 0].tolist() == ref.tolist()
        assert torch.equal(embeds, ref_embeds)
        expected = tokens.clone()
        expected[:, step] = ids[:, 0].float()
        assert torch.equal(out, expected) and torch.equal(out64, expected.long())


@needs_node
def test_cpu_engine_takes_a_pack_over_32_bit_memory_only_with_memory64(tmp_path):
    """A 7B-sized q4 CPU pack (its parts' sizes in the manifest: no 7B needed) is more than one 32-bit WebAssembly
    memory holds (65535 pages of 64 KiB). Where the engine does not validate Memory64 (Node without its flag),
    ?engine=cpu is refused in one line naming the memory needed against that maximum, before any download, and auto
    falls back to ort-grow with the same line; where it does (Node's --experimental-wasm-memory64), the pack is
    planned for the CPU engine (its Memory64 build), and only a pack over the 16 GiB a Memory64 memory may have is
    refused. A pack within 32 bits is taken either way."""
    wasm32 = 65535 * 65536
    def files(suffix):  # as the export names a graph's files (tests/js/fixtures.mjs's graph())
        return {f"onnx/language_model{suffix}.onnx": {"bytes": 10, "sha256": "0" * 64}}
    manifest = {"graphs": {"language_model": {"dtype": "fp32", "files": files(""), "variants": {
                    d: {"dtype": d, "files": files(f"_{d}"), "quantization": {"bits": b}}
                    for d, b in (("q4", 4), ("int8", 8))}}},
                "cpu": {"q4": {"json": "cpu/decoder_q4.json", "parts": [f"cpu/decoder_q4.{i}.bin" for i in range(5)]},
                        "int8": {"json": "cpu/decoder_int8.json", "parts": ["cpu/decoder_int8.0.bin"]},
                        "fp32": {"json": "cpu/decoder.json", "parts": [f"cpu/decoder.{i}.bin" for i in range(20)]}},
                "files": {**{f"cpu/decoder_q4.{i}.bin": {"bytes": 882_000_000} for i in range(5)},
                          **{f"cpu/decoder.{i}.bin": {"bytes": 882_000_000} for i in range(20)},
                          "cpu/decoder_int8.0.bin": {"bytes": wasm32}}}
    cases = [["cpu", "wasm", "q4"], ["auto", "wasm", "q4"], ["auto", "wasm", "int8"], ["cpu", "wasm", "fp32"]]
    without = dict(zip(map(tuple, cases), run_node("resolve_cases.mjs", tmp_path, {"manifest": manifest, "cases": cases})))
    line = ("the CPU engine needs more than 4.41 GB of WebAssembly memory for this bundle's q4 weights "
            "(cpu/decoder_q4.json's 5 parts), over the 4.29 GB a 32-bit memory holds, and this browser does not run "
            "64-bit WebAssembly memory (Memory64)")
    assert without["cpu", "wasm", "q4"] == {"kind": "input", "input": True, "error": line}
    assert without["auto", "wasm", "q4"]["engine"] == "ort-grow" and without["auto", "wasm", "q4"]["note"].endswith(line)
    assert without["auto", "wasm", "int8"]["engine"] == "cpu"
    got = dict(zip(map(tuple, cases), run_node("resolve_cases.mjs", tmp_path, {"manifest": manifest, "cases": cases},
                                               ("--experimental-wasm-memory64",))))
    assert got["cpu", "wasm", "q4"] == got["auto", "wasm", "q4"] == {"engine": "cpu", "graphs": {}, "note": None}
    assert got["auto", "wasm", "int8"]["engine"] == "cpu"
    assert got["cpu", "wasm", "fp32"] == {"kind": "input", "input": True, "error": (
        "the CPU engine needs more than 17.64 GB of WebAssembly memory for this bundle's fp32 weights "
        "(cpu/decoder.json's 20 parts), over the 17.18 GB its Memory64 build may have")}


@needs_node
def test_cpu_engine_address_width_at_load(tmp_path):
    """At load the engine takes the 32-bit build wherever its memory (weights + a CFG request's KV cache) fits 32
    bits, else the Memory64 build where it validates (shared, for threads), and ?memory64=1 forces it; otherwise
    one line says why."""
    cases = [[2.7e9, True, False], [6.43e9, True, False], [6.43e9, False, False], [2.7e9, False, True], [2e10, True, False]]
    without = run_node("address_width_cases.mjs", tmp_path, cases)
    assert without[0] == {"bits": 32}
    assert without[1] == {"refusal": "the CPU engine needs 6.43 GB of WebAssembly memory, over the 4.29 GB a 32-bit "
                                     "memory holds, and this browser does not run 64-bit WebAssembly memory "
                                     "(Memory64, shared between threads)"}
    assert without[3] == {"refusal": "a Memory64 build was asked for (?memory64=1), and this browser does not run "
                                     "64-bit WebAssembly memory (Memory64)"}
    got = run_node("address_width_cases.mjs", tmp_path, cases, ("--experimental-wasm-memory64",))
    assert got[:4] == [{"bits": 32}, {"bits": 64}, {"bits": 64}, {"bits": 64}]
    assert got[4] == {"refusal": "the CPU engine needs 20.00 GB of WebAssembly memory, over the 17.18 GB its "
                                 "Memory64 build may have"}


@pytest.mark.skipif(NODE is None or not (WEB.parent.parent / "node_modules" / "typescript").is_dir(),
                    reason="node and the npm packages (npm ci: typescript) are needed")
def test_tsc_checks_the_library():
    """The library's JSDoc types are checked (tsc --checkJs --noEmit, strict, over web/lib: web/lib/tsconfig.json),
    so the declarations the package ships describe code that type-checks."""
    tsc = WEB.parent.parent / "node_modules" / "typescript" / "bin" / "tsc"
    done = subprocess.run([NODE, str(tsc), "-p", str(WEB)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:]
