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


# The table the export writes into manifest.json (dtype -> file suffix, page label, bits, adapter requirement).
DTYPES = {"fp32": {"suffix": "", "label": "fp32", "bits": 32, "requires": None},
          "int8": {"suffix": "_int8", "label": "int8", "bits": 8, "requires": None},
          "q4": {"suffix": "_q4", "label": "4-bit", "bits": 4, "requires": None},
          "fp16": {"suffix": "_fp16", "label": "fp16", "bits": 16, "requires": "shader-f16"}}


@needs_node
def test_backend_choice_checks_the_adapter_against_the_bundle(tmp_path):
    """WebGPU only when an adapter exists, its buffer limits hold the largest buffer, and it has shader-f16 when
    a graph is fp16; otherwise WASM, with the reason."""
    config = {"janusweb": {"vocab_size": 102400, "hidden_size": 2048, "num_key_value_heads": 16, "head_dim": 128,
                           "num_image_tokens": 576}}
    got = run_node("""
import fs from 'fs';
const { config, table } = JSON.parse(fs.readFileSync(process.argv[2]));
const adapter = (maxBufferSize, f16) => ({ info: { vendor: 'v', architecture: 'a' },
  features: new Set(f16 ? ['shader-f16'] : []), limits: { maxBufferSize, maxStorageBufferBindingSize: maxBufferSize } });
globalThis.self = { crossOriginIsolated: true };
const set = (a) => Object.defineProperty(globalThis, 'navigator', { configurable: true,
  value: { hardwareConcurrency: 4, ...(a === undefined ? {} : { gpu: { requestAdapter: async () => a } }) } });
const { bundleNeeds, chooseBackend } = await import('@WEB@/backend.js');
const none = { graphs: {} };  // a manifest without `buffers`: the token matrix is estimated from config.json
const fp32 = bundleNeeds(none, config, table, { lm_head: 'fp32', language_model: 'fp32' });
const fp16 = bundleNeeds(none, config, table, { lm_head: 'fp16', language_model: 'fp16' });
const q4 = bundleNeeds(none, config, table, { lm_head: 'q4', language_model: 'q4' });
const recorded = { graphs: {}, buffers: { variants: { lm_head: { q4: { tensor: 'lm_head.weight_Q4', bytes: 211e6 } },
  language_model_gqa: { q4: { tensor: 'w', bytes: 50e6 } } }, packs: { wgsl: { q4: { tensor: 'layers.0.gate', bytes: 120e6 } } } } };
const big = bundleNeeds(recorded, config, table, { lm_head: 'q4', language_model_gqa: 'q4' }, [{ engine: 'wgsl', dtype: 'q4' }]);
const pack = bundleNeeds(recorded, config, table, { language_model_gqa: 'q4' }, [{ engine: 'wgsl', dtype: 'q4' }]);
const out = {};
for (const [name, a, needs] of [['fits', adapter(2 ** 31, false), fp32], ['small', adapter(2 ** 28, false), fp32],
  ['nof16', adapter(2 ** 31, false), fp16], ['f16', adapter(2 ** 31, true), fp16], ['none', null, fp32],
  ['nogpu', undefined, fp32], ['binding', { ...adapter(2 ** 31, false), limits: { maxBufferSize: 2 ** 28,
    maxStorageBufferBindingSize: 2 ** 27 } }, big], ['packfits', adapter(2 ** 27, false), pack]]) {
  set(a);
  out[name] = await chooseBackend('auto', needs);
}
set(adapter(2 ** 31, false));
out.forced = await chooseBackend('wasm', fp32);
out.largest = fp32.largest.bytes;
out.largestQ4 = q4.largest.bytes;
out.pack = pack.largest;
console.log(JSON.stringify(out));""", tmp_path, {"config": config, "table": DTYPES})
    assert got["largest"] == 102400 * 2048 * 4  # the embedding table at fp32
    assert got["largestQ4"] == 102400 * 2048 // 2  # at the manifest's 4 bits
    assert got["fits"]["ep"] == "webgpu" and got["fits"]["adapter"] == "v a"
    assert got["small"]["ep"] == "wasm" and got["small"]["notes"][0].endswith(
        "(lm_head fp32 token matrix, estimated), exceeds this adapter's maxStorageBufferBindingSize 268 MB (v a)")
    assert got["nof16"]["ep"] == "wasm" and "shader-f16" in got["nof16"]["notes"][0]
    assert got["f16"]["ep"] == "webgpu"
    assert got["none"]["ep"] == "wasm" and "no adapter" in got["none"]["notes"][0]
    assert got["nogpu"]["ep"] == "wasm" and "no WebGPU" in got["nogpu"]["notes"][0]
    assert got["forced"]["ep"] == "wasm" and got["forced"]["threads"] == 4
    # the manifest's record of the largest buffer (janusweb/buffers.py), named, against the limit it exceeds
    assert got["binding"]["ep"] == "wasm" and got["binding"]["notes"][0] == (
        "WebGPU not used: this bundle's largest buffer, 211 MB (lm_head q4 lm_head.weight_Q4), exceeds this "
        "adapter's maxStorageBufferBindingSize 134 MB (v a)")
    assert got["pack"] == {"bytes": 120e6, "what": "wgsl q4 pack layers.0.gate"}
    assert got["packfits"]["ep"] == "webgpu"


@needs_node
def test_wasm_prefers_q4_over_a_default_int8(tmp_path):
    """On WASM a default int8 becomes q4 where the bundle has it (same speed there, half the memory: see
    bench/results/2026-11-23-cpu-2core-matmul-formats); an asked-for dtype is kept."""
    manifest = {"graphs": {"language_model": {"variants": {"int8": {"files": {}}, "q4": {"files": {}}}},
                           "lm_head": {"variants": {"int8": {"files": {}}}}, "image_decode": {}}}
    got = run_node("""
import fs from 'fs';
const { manifest } = JSON.parse(fs.readFileSync(process.argv[2]));
const { wasmDtypes } = await import('@WEB@/dtypes.js');
const dtypes = { language_model: 'int8', lm_head: 'int8', image_decode: 'fp32' };
console.log(JSON.stringify({ auto: wasmDtypes(dtypes, manifest, null), asked: wasmDtypes(dtypes, manifest, 'int8') }));
""", tmp_path, {"manifest": manifest})
    assert got["auto"]["dtypes"] == {"language_model": "q4", "lm_head": "int8", "image_decode": "fp32"}
    assert "language_model" in got["auto"]["note"] and "lm_head" not in got["auto"]["note"]
    assert got["asked"] == {"dtypes": {"language_model": "int8", "lm_head": "int8", "image_decode": "fp32"},
                            "note": None}


def _graph(name: str, *dtypes: str, external: bool = False) -> dict:
    """A manifest entry: the base (fp32) file and one variant per dtype, named as the export names them."""
    def files(suffix):
        main = {f"onnx/{name}{suffix}.onnx": {"bytes": 10, "sha256": "0" * 64}}
        return {**main, f"onnx/{name}{suffix}.onnx_data": {"bytes": 90, "sha256": "1" * 64}} if external else main
    return {"dtype": "fp32", "files": files(""),
            "variants": {d: {"dtype": d, "files": files(DTYPES[d]["suffix"]), "quantization": {"bits": DTYPES[d]["bits"]}}
                         for d in dtypes}}


RESOLVE = """
import fs from 'fs';
const { manifest, cases } = JSON.parse(fs.readFileSync(process.argv[2]));
const { resolveEngine } = await import('@WEB@/engines/engine.js');
const errors = await import('@WEB@/errors.js');
const out = cases.map(([requested, ep, dtype]) => {
  try {
    const r = resolveEngine(requested, manifest, { ep }, dtype);
    return { engine: r.spec.name, graphs: r.plan.graphs, note: r.note };
  } catch (e) {
    return { error: e.message, kind: e.kind, input: e instanceof errors.InputError };
  }
});
console.log(JSON.stringify(out));
"""


@needs_node
def test_engine_resolver_picks_by_backend_bundle_and_request(tmp_path):
    """?engine=auto: the fused graph on WebGPU where the bundle has it at the decoder's dtype, else the growing
    cache (with the reason); an engine asked for that cannot run on this backend gives way, with a note; one whose
    files the bundle lacks is an InputError; ?kv=grow is ort-grow."""
    manifest = {"graphs": {"language_model": _graph("language_model", "int8", "q4"),
                           "language_model_gqa": _graph("language_model_gqa", "int8")},
                "wgsl": {"fp32": {"json": "wgsl/decoder.json", "parts": ["wgsl/decoder.0.bin"]},
                         "q4": {"bin": "wgsl/decoder_q4.bin", "json": "wgsl/decoder_q4.json"}}}  # q4: before parts
    cases = [["auto", "webgpu", "fp32"], ["auto", "webgpu", "q4"], ["auto", "wasm", "int8"], ["grow", "webgpu", "fp32"],
             ["ort-grow", "wasm", "fp32"], ["wgsl", "webgpu", "fp32"], ["wgsl", "webgpu", "int8"],
             ["wgsl", "wasm", "fp32"], ["wgsl", "webgpu", "q4"], ["ort-gqa", "wasm", "fp32"], ["ort-gqa", "webgpu", "q4"], ["turbo", "webgpu", "fp32"]]
    got = run_node(RESOLVE, tmp_path, {"manifest": manifest, "cases": cases})
    by = dict(zip(map(tuple, cases), got))
    assert by["auto", "webgpu", "fp32"] == {"engine": "ort-gqa", "graphs": {"language_model_gqa": "fp32"}, "note": None}
    assert by["auto", "webgpu", "q4"]["engine"] == "ort-grow" and by["auto", "webgpu", "q4"]["graphs"] == \
        {"language_model": "q4"} and "no q4 variant of language_model_gqa" in by["auto", "webgpu", "q4"]["note"]
    assert by["auto", "wasm", "int8"] == {"engine": "ort-grow", "graphs": {"language_model": "int8"},
                                          "note": "KV cache grown per step (language_model): the bundle has no int8 "
                                                  "CPU pack: run janusweb cpu-pack BUNDLE --dtype int8"}
    assert by["grow", "webgpu", "fp32"]["engine"] == "ort-grow" and "requested" in by["grow", "webgpu", "fp32"]["note"]
    assert by["ort-grow", "wasm", "fp32"] == {"engine": "ort-grow", "graphs": {"language_model": "fp32"}, "note": None}
    assert by["wgsl", "webgpu", "fp32"]["engine"] == "wgsl" and by["wgsl", "webgpu", "fp32"]["graphs"] == {}
    assert by["wgsl", "webgpu", "int8"] == {"kind": "input", "input": True, "error": "the bundle has no int8 WGSL "
                                            "pack: run janusweb wgsl-pack BUNDLE --dtype int8"}
    assert by["wgsl", "webgpu", "q4"] == {"kind": "input", "input": True, "error": "the bundle's q4 WGSL pack is one "
                                          ".bin, not parts: run janusweb wgsl-pack BUNDLE --dtype q4 again"}
    assert by["wgsl", "wasm", "fp32"]["engine"] == "ort-grow" and "needs WebGPU" in by["wgsl", "wasm", "fp32"]["note"]
    assert by["ort-gqa", "wasm", "fp32"]["engine"] == "ort-grow"
    assert by["ort-gqa", "webgpu", "q4"]["input"] and "no q4 variant" in by["ort-gqa", "webgpu", "q4"]["error"]
    assert by["turbo", "webgpu", "fp32"]["input"] and "ort-gqa" in by["turbo", "webgpu", "fp32"]["error"]


@needs_node
def test_engine_resolver_prefers_the_cpu_engine_on_wasm(tmp_path):
    """With a CPU pack at the decoder's dtype, WASM's auto is the CPU engine (lm_head replaced); ort-grow when asked
    for (said so); ?engine=cpu without the pack at that dtype is an InputError; WebGPU never picks it."""
    manifest = {"graphs": {"language_model": _graph("language_model", "int8")},
                "cpu": {"int8": {"json": "cpu/decoder_int8.json", "parts": ["cpu/decoder_int8.0.bin"]}}}
    cases = [["auto", "wasm", "int8"], ["ort-grow", "wasm", "int8"], ["cpu", "wasm", "fp32"], ["cpu", "webgpu", "int8"]]
    got = dict(zip(map(tuple, cases), run_node(RESOLVE, tmp_path, {"manifest": manifest, "cases": cases})))
    assert got["auto", "wasm", "int8"] == {"engine": "cpu", "graphs": {}, "note": None}
    assert got["ort-grow", "wasm", "int8"]["engine"] == "ort-grow" and "requested" in got["ort-grow", "wasm", "int8"]["note"]
    assert got["cpu", "wasm", "fp32"] == {"kind": "input", "input": True,
                                         "error": "the bundle has no fp32 CPU pack: run janusweb cpu-pack BUNDLE --dtype fp32"}
    assert got["cpu", "webgpu", "int8"]["engine"] == "ort-grow" and "runs on WASM" in got["cpu", "webgpu", "int8"]["note"]


@needs_node
def test_cpu_engine_refuses_a_pack_over_32_bit_webassembly_memory(tmp_path):
    """A 7B-sized q4 CPU pack (its parts' sizes in the manifest: no 7B needed) is more than one 32-bit WebAssembly
    memory holds (65535 pages of 64 KiB): ?engine=cpu is refused in one line naming the memory needed against that
    maximum, before any download; auto falls back to ort-grow with the same line; a pack within it is taken."""
    wasm32 = 65535 * 65536
    manifest = {"graphs": {"language_model": _graph("language_model", "q4", "int8")},
                "cpu": {"q4": {"json": "cpu/decoder_q4.json", "parts": [f"cpu/decoder_q4.{i}.bin" for i in range(5)]},
                        "int8": {"json": "cpu/decoder_int8.json", "parts": ["cpu/decoder_int8.0.bin"]}},
                "files": {**{f"cpu/decoder_q4.{i}.bin": {"bytes": 882_000_000} for i in range(5)},
                          "cpu/decoder_int8.0.bin": {"bytes": wasm32}}}
    cases = [["cpu", "wasm", "q4"], ["auto", "wasm", "q4"], ["auto", "wasm", "int8"]]
    got = dict(zip(map(tuple, cases), run_node(RESOLVE, tmp_path, {"manifest": manifest, "cases": cases})))
    line = ("the CPU engine needs more than 4.41 GB of WebAssembly memory for this bundle's q4 weights "
            "(cpu/decoder_q4.json's 5 parts), over the 4.29 GB a 32-bit WebAssembly memory holds (its kernels have no Memory64 "
            "build)")
    assert got["cpu", "wasm", "q4"] == {"kind": "input", "input": True, "error": line}
    assert got["auto", "wasm", "q4"]["engine"] == "ort-grow" and got["auto", "wasm", "q4"]["note"].endswith(line)
    assert got["auto", "wasm", "int8"]["engine"] == "cpu"


@needs_node
def test_total_download_against_the_memory_the_page_can_know_and_files_too_large_to_verify(tmp_path):
    """WebGPU exposes no memory size; navigator.deviceMemory (GB) is the one the page has: a plan whose files exceed
    it gets a note on the first screen; within it, or where the browser does not say, none. A file larger than
    crypto.subtle.digest takes (a one-file 7B q4 WGSL pack, as packs were before parts) is refused, in one line,
    before any download."""
    got = run_node("""
const { memoryNote, unverifiable } = await import('@WEB@/plan.js');
const manifest = { files: { 'wgsl/decoder_q4.bin': { bytes: 3.8e9 }, 'onnx/lm_head_q4.onnx': { bytes: 2.6e8 } } };
console.log(JSON.stringify([memoryNote(9.5e9, 8), memoryNote(5e9, 8), memoryNote(9.5e9, undefined),
  unverifiable(manifest, ['onnx/lm_head_q4.onnx', 'wgsl/decoder_q4.bin']), unverifiable(manifest, ['onnx/lm_head_q4.onnx'])]));
""", tmp_path, {})
    assert got[3:] == ["wgsl/decoder_q4.bin is 3.80 GB: the page verifies each file whole with crypto.subtle.digest, "
                       "which takes at most 2.1 GB in this browser", None]  # a 7B q4 WGSL pack: refused before download
    assert got[:3] == ["this bundle loads 9.5 GB of files; this device reports 8 GB of memory (navigator.deviceMemory, "
                   "which browsers cap at 8): it may not fit", None, None]


@needs_node
def test_dtype_resolver_takes_files_and_labels_from_the_manifest(tmp_path):
    """manifest + request + backend -> {graph: {dtype, file, external, device}}: the files are the manifest's own
    (its variants' .onnx and external data), labels its table's; a dtype the bundle lacks falls back to fp32 with a
    note; on WASM a default int8 becomes q4 where there is one. A bundle without the table gets one derived from
    its variants."""
    graphs = {"lm_head": _graph("lm_head", "int8", "q4"), "language_model": _graph("language_model", "int8", external=True),
              "image_decode": _graph("image_decode")}
    got = run_node("""
import fs from 'fs';
const { manifest, table } = JSON.parse(fs.readFileSync(process.argv[2]));
const d = await import('@WEB@/dtypes.js');
const withTable = { ...manifest, dtypes: table };
const names = ['lm_head', 'language_model', 'image_decode'];
const req = d.requestedDtypes(withTable, {}, names, 'int8');
const cfg = { 'transformers.js_config': { dtype: { lm_head: 'q4', language_model: 'int8' } } };
let missing;
try { d.graphFiles(withTable, 'image_decode', 'q4'); } catch (e) { missing = { kind: e.kind, message: e.message }; }
console.log(JSON.stringify({
  requested: req,
  webgpu: d.resolveGraphs(withTable, req.dtypes, 'int8', { ep: 'webgpu' }),
  wasm: d.resolveGraphs(withTable, d.requestedDtypes(withTable, { 'transformers.js_config': { dtype: 'int8' } },
    names, null).dtypes, null, { ep: 'wasm' }),
  configured: d.requestedDtypes(withTable, cfg, names, null).dtypes,
  shown: d.describeDtypes(withTable, { lm_head: 'q4', language_model: 'int8' }, 'int8'),
  derived: d.dtypeTable(manifest), missing,
}));""", tmp_path, {"manifest": {"graphs": graphs}, "table": DTYPES})
    assert got["requested"]["dtypes"] == {"lm_head": "int8", "language_model": "int8", "image_decode": "fp32"}
    assert got["requested"]["notes"] == ["image_decode runs at fp32: the bundle has no int8 variant of it"]
    assert got["webgpu"]["graphs"] == {
        "lm_head": {"dtype": "int8", "file": "onnx/lm_head_int8.onnx", "external": [], "device": "webgpu"},
        "language_model": {"dtype": "int8", "file": "onnx/language_model_int8.onnx",
                           "external": ["onnx/language_model_int8.onnx_data"], "device": "webgpu"},
        "image_decode": {"dtype": "fp32", "file": "onnx/image_decode.onnx", "external": [], "device": "webgpu"}}
    assert {g: p["file"] for g, p in got["wasm"]["graphs"].items()} == {
        "lm_head": "onnx/lm_head_q4.onnx", "language_model": "onnx/language_model_int8.onnx",
        "image_decode": "onnx/image_decode.onnx"}
    assert "lm_head" in got["wasm"]["note"]
    assert got["configured"] == {"lm_head": "q4", "language_model": "int8", "image_decode": "fp32"}
    assert got["shown"] == "int8 (lm_head: 4-bit)"  # the manifest's label, not the dtype's name
    assert got["derived"] == {"fp32": {"label": "fp32", "bits": 32, "requires": None},
                              "int8": {"label": "int8", "bits": 8, "requires": None},
                              "q4": {"label": "q4", "bits": 4, "requires": None}}
    assert got["missing"]["kind"] == "input" and "no q4 variant of image_decode" in got["missing"]["message"]


@needs_node
def test_error_classes_carry_the_kinds_the_page_shows(tmp_path):
    """Each error class is its own kind, recognised by instanceof; ORT's messages become ours in one place."""
    got = run_node("""
const e = await import('@WEB@/errors.js');
const cases = { input: new e.InputError('x'), backend: new e.BackendError('x'), oom: new e.OutOfMemoryError(),
  checksum: new e.ChecksumError('f', 'a', 'b'), plain: new Error('x'), cancelled: new e.Cancelled(),
  ortOom: e.fromOrt(new Error('failed: std::bad_alloc')),
  ortKernel: e.fromOrt(new Error('Could not find an implementation for GatherBlockQuantized(1) node')),
  ortFallback: e.fromOrt(new Error('... fallback to CPU EP has been explicitly disabled ...')),
  ortOther: e.fromOrt(new Error('something else')) };
console.log(JSON.stringify(Object.fromEntries(Object.entries(cases).map(([k, v]) => [k, {
  kind: e.errorKind(v), name: v.name, message: v.message, backend: v instanceof e.BackendError,
  oom: v instanceof e.OutOfMemoryError, op: v.op ?? null }]))));""", tmp_path, {})
    assert {k: v["kind"] for k, v in got.items()} == {
        "input": "input", "backend": "backend", "oom": "backend", "checksum": "checksum", "plain": "other",
        "cancelled": "other", "ortOom": "backend", "ortKernel": "backend", "ortFallback": "backend", "ortOther": "other"}
    assert got["oom"]["oom"] and got["oom"]["backend"] and "WASM heap of at most 4 GB" in got["oom"]["message"]
    assert got["ortOom"]["name"] == "OutOfMemoryError" and got["ortOom"]["message"].startswith("out of memory while running")
    assert got["ortKernel"]["name"] == "MissingKernelError" and got["ortKernel"]["op"] == "GatherBlockQuantized"
    assert got["ortFallback"]["name"] == "CpuFallbackError" and not got["ortOther"]["backend"]
    assert got["checksum"]["name"] == "ChecksumError" and "checksum mismatch for f" in got["checksum"]["message"]
