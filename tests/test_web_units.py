"""The page's pure modules against their Python references, run under node: tokenizer ids and prompt formats,
image preprocessing, seeded draws. And the gen_step graph's rule against janusweb.sampling."""

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

WEB = Path(__file__).resolve().parent.parent / "web"
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None or not (WEB.parent / "node_modules" / "@huggingface").is_dir(),
                                reason="node and the npm packages (npm ci) are needed to run the page's modules")

CORPUS = [
    "Hello world", "  leading and trailing  ", "multiple   spaces\tand\ttabs\nnewlines\n\n", "héllo wörld — ünïcödé",
    "日本語のテキスト", "emoji 😀👍🏽 family 👨‍👩‍👧", "<image_placeholder>\nWhat is this?", "<|User|>: hi\n\n<|Assistant|>:",
    "<｜begin▁of▁sentence｜>x<｜end▁of▁sentence｜>", "<begin_of_image><end_of_image><｜▁pad▁｜>", "", " ",
    "a<image_placeholder>b", "numbers 1234567890 3.14", "Ωμέγα Привет مرحبا שלום", "\u00a0nbsp\u2003em\u3000",
    "don't won't I'm", "x" * 300, "\x1c\x1dspaces python strips\x85", "\ufeffbom",
]


def run_node(script: str, tmp_path: Path, payload) -> object:
    """Run an ES module (imports from web/ by absolute path) that reads JSON from argv[2], prints JSON."""
    (tmp_path / "in.json").write_text(json.dumps(payload))
    (tmp_path / "t.mjs").write_text(script.replace("@WEB@", WEB.as_posix()))
    out = subprocess.run([NODE, str(tmp_path / "t.mjs"), str(tmp_path / "in.json")], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def tiny_tok(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tok")
    tiny_tokenizer.write_tiny_tokenizer(folder, presets.TINY_VOCAB)
    return folder


@needs_node
def test_tokenizer_ids_match_python(tiny_tok, tmp_path):
    tok = Tokenizer.from_file(str(tiny_tok / "tokenizer.json"))
    ids = SpecialIds.from_tokenizer(tok)
    got = run_node("""
import { JanusTokenizer } from '@WEB@/tokenizer.js';
import fs from 'fs';
const { dir, corpus } = JSON.parse(fs.readFileSync(process.argv[2]));
const read = (f) => JSON.parse(fs.readFileSync(dir + '/' + f));
const t = new JanusTokenizer(read('tokenizer.json'), read('tokenizer_config.json'));
const prompt = t.generationPrompt('  A red cube  ');
console.log(JSON.stringify({
  ids: corpus.map((s) => t.encode(s)), special: t.ids,
  understanding: corpus.map((q) => t.understandingInputs(q, 16, true)),
  textOnly: t.understandingInputs(' Why? ', 16, false), prompt, uncond: t.unconditional(prompt),
}));""", tmp_path, {"dir": str(tiny_tok), "corpus": CORPUS})
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
    got = run_node("""
import { preprocess } from '@WEB@/preprocess.js';
import fs from 'fs';
const { file, w, h, cfg, out } = JSON.parse(fs.readFileSync(process.argv[2]));
fs.writeFileSync(out, preprocess(new Uint8Array(fs.readFileSync(file)), w, h, cfg));
console.log('{}');""", tmp_path, {"file": str(tmp_path / "rgba.bin"), "w": w, "h": h, "cfg": cfg,
                                  "out": str(tmp_path / "out.bin")})
    assert got == {}
    js = np.fromfile(tmp_path / "out.bin", np.float32).reshape(3, size, size)
    ref = preprocess(Image.fromarray(rgb), size)
    np.testing.assert_array_equal(js, ref)


@needs_node
def test_uniforms_match_python(tmp_path):
    cases = [(0, 50, 0), (1, 7, 3), (12345, 20, 1000), (-3, 5, 0), (2**40 + 5, 5, 2**31)]
    got = run_node("""
import { uniforms } from '@WEB@/sampling.js';
import fs from 'fs';
const cases = JSON.parse(fs.readFileSync(process.argv[2]));
console.log(JSON.stringify(cases.map(([s, n, o]) => Array.from(uniforms(s, n, o)))));""", tmp_path, cases)
    for (seed, count, offset), js in zip(cases, got):
        assert js == uniforms(seed, count, offset).tolist(), seed  # exact: 24-bit draws


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
def test_backend_choice_checks_the_adapter_against_the_bundle(tmp_path):
    """WebGPU only when an adapter exists, its buffer limits hold the largest buffer, and it has shader-f16 when
    a graph is fp16; otherwise WASM, with the reason."""
    config = {"janusweb": {"vocab_size": 102400, "hidden_size": 2048, "num_key_value_heads": 16, "head_dim": 128,
                           "num_image_tokens": 576}}
    got = run_node("""
import fs from 'fs';
const { config } = JSON.parse(fs.readFileSync(process.argv[2]));
const adapter = (maxBufferSize, f16) => ({ info: { vendor: 'v', architecture: 'a' },
  features: new Set(f16 ? ['shader-f16'] : []), limits: { maxBufferSize, maxStorageBufferBindingSize: maxBufferSize } });
globalThis.self = { crossOriginIsolated: true };
const set = (a) => Object.defineProperty(globalThis, 'navigator', { configurable: true,
  value: { hardwareConcurrency: 4, ...(a === undefined ? {} : { gpu: { requestAdapter: async () => a } }) } });
const { bundleNeeds, chooseBackend } = await import('@WEB@/backend.js');
const fp32 = bundleNeeds(config, { lm_head: 'fp32', language_model: 'fp32' });
const fp16 = bundleNeeds(config, { lm_head: 'fp16', language_model: 'fp16' });
const out = {};
for (const [name, a, needs] of [['fits', adapter(2 ** 31, false), fp32], ['small', adapter(2 ** 28, false), fp32],
  ['nof16', adapter(2 ** 31, false), fp16], ['f16', adapter(2 ** 31, true), fp16], ['none', null, fp32],
  ['nogpu', undefined, fp32]]) {
  set(a);
  out[name] = await chooseBackend('auto', needs);
}
set(adapter(2 ** 31, false));
out.forced = await chooseBackend('wasm', fp32);
out.largest = fp32.largestBuffer;
console.log(JSON.stringify(out));""", tmp_path, {"config": config})
    assert got["largest"] == 102400 * 2048 * 4  # the embedding table at fp32
    assert got["fits"]["ep"] == "webgpu" and got["fits"]["adapter"] == "v a"
    assert got["small"]["ep"] == "wasm" and "maxBufferSize" in got["small"]["notes"][0]
    assert got["nof16"]["ep"] == "wasm" and "shader-f16" in got["nof16"]["notes"][0]
    assert got["f16"]["ep"] == "webgpu"
    assert got["none"]["ep"] == "wasm" and "no adapter" in got["none"]["notes"][0]
    assert got["nogpu"]["ep"] == "wasm" and "no WebGPU" in got["nogpu"]["notes"][0]
    assert got["forced"]["ep"] == "wasm" and got["forced"]["threads"] == 4


@needs_node
def test_wasm_prefers_q4_over_a_default_int8(tmp_path):
    """On WASM a default int8 becomes q4 where the bundle has it (same speed there, half the memory: see
    bench/results/2026-11-23-cpu-2core-matmul-formats); an asked-for dtype is kept."""
    manifest = {"graphs": {"language_model": {"variants": {"int8": {}, "q4": {}}}, "lm_head": {"variants": {"int8": {}}},
                           "image_decode": {}}}
    got = run_node("""
import fs from 'fs';
const { manifest } = JSON.parse(fs.readFileSync(process.argv[2]));
const { wasmDtypes } = await import('@WEB@/backend.js');
const dtypes = { language_model: 'int8', lm_head: 'int8', image_decode: 'fp32' };
console.log(JSON.stringify({ auto: wasmDtypes(dtypes, manifest, null), asked: wasmDtypes(dtypes, manifest, 'int8') }));
""", tmp_path, {"manifest": manifest})
    assert got["auto"]["dtypes"] == {"language_model": "q4", "lm_head": "int8", "image_decode": "fp32"}
    assert "language_model" in got["auto"]["note"] and "lm_head" not in got["auto"]["note"]
    assert got["asked"] == {"dtypes": {"language_model": "int8", "lm_head": "int8", "image_decode": "fp32"},
                            "note": None}
