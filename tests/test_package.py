"""The npm package as an app uses it: `npm pack`, then in an empty folder only the tarball and the README's
example (web/example/: app.js + a two-line worker.js), `npm install` of the tarball, esbuild, the package's
assets beside the bundle, served beside the `tiny` bundle. In one Chromium (WebGPU on SwiftShader enabled):

- importing the library adds no global and patches no prototype (also after loading a model and running it);
- the example's chat turn with an image and its image generation, through the public API, on WASM and on WebGPU,
  in a worker and on the main thread, give the Python reference's answer (the tokenizer's decoding of
  janusweb.generate.generate_text's tokens), image tokens and pixels (within 1 of janusweb.image.to_uint8);
- two instances of different bundles (the tiny bundle at seeds 0 and 1) side by side in one page, their calls
  interleaved, each answer its own bundle's reference;
- chat with a temperature and a seed (streamed through chat.completions.create, and janus.chat) gives the
  reference's sampled tokens (generate_text with uniforms(seed));
- a load aborted while downloading, creating sessions or after them rejects with AbortError (none resolves).
`tsc --checkJs` over web/lib is test_tsc_checks_the_library."""

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
from pages import BROWSER_ARGS, WEBGPU_ARGS, reference, reference_dtypes
from PIL import Image

from janusweb.cli import main
from janusweb.env import chromium_path
from janusweb.generate import generate_images, generate_text
from janusweb.image import preprocess, to_uint8
from janusweb.prompts import generation_prompt, understanding_inputs
from janusweb.sampling import uniforms
from janusweb.site import serve_in_thread

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "web" / "example"
NPM, NODE = shutil.which("npm"), shutil.which("node")
CHROMIUM = chromium_path()
pytestmark = [pytest.mark.skipif(NPM is None or not (REPO / "node_modules" / "typescript").is_dir(),
                                 reason="npm and the npm packages (npm ci) are needed"),
              pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (apt-get install chromium)")]
QUESTION, PROMPT, TOKENS, SEED = "Describe this image.", "A watercolor painting of mountains at sunset.", 8, 7

HARNESS = """<!doctype html><meta charset="utf-8"><title>janusweb package</title>
<script type="module">
const protos = () => ['GPUBuffer', 'GPUDevice', 'GPUQueue', 'GPUCommandEncoder', 'GPUComputePassEncoder',
  'WebAssembly', 'Worker', 'Object', 'Array', 'Promise', 'EventTarget']
  .filter((n) => globalThis[n]).flatMap((n) => Object.getOwnPropertyNames(globalThis[n].prototype ?? globalThis[n])
    .map((k) => [n + '.' + k, Object.getOwnPropertyDescriptor(globalThis[n].prototype ?? globalThis[n], k)?.value]));
const names = Object.getOwnPropertyNames(globalThis), before = protos();
const changed = () => ({ added: Object.getOwnPropertyNames(globalThis).filter((k) => !names.includes(k) && k !== 'harness'),
  patched: protos().filter(([k, v], i) => !before.some(([k2, v2]) => k2 === k && v2 === v)).map(([k]) => k) });
const lib = await import('./app.js');
const atImport = changed();
globalThis.harness = { lib, atImport, changed };
</script>"""

RUN = """async ([backend, inWorker]) => {
  const png = await (await fetch('input.png')).blob();
  const r = await harness.lib.demo('model/', png, { inWorker, backend });
  return { answer: r.answer, tokens: r.tokens, rgba: Array.from(r.image.data), width: r.image.width,
    backend: r.info.backend, dtypes: r.info.dtypes, kvCache: r.info.kvCache, engine: r.info.engine };
}"""


@pytest.fixture(scope="module")
def app_site(tmp_path_factory, tiny_bundle, test_png) -> Path:
    """An app built from the packed tarball and the example alone, served beside the tiny bundle."""
    tmp = tmp_path_factory.mktemp("pkg")
    packed = subprocess.run([NPM, "pack", "--json", "--pack-destination", str(tmp)], cwd=REPO, capture_output=True,
                            text=True, timeout=600)
    assert packed.returncode == 0, packed.stderr[-3000:]
    tarball = tmp / json.loads(packed.stdout[packed.stdout.index("["):])[0]["filename"]
    with tarfile.open(tarball) as t:
        names = t.getnames()
    assert "package/web/types/index.d.ts" in names and "package/web/assets/ort/files.json" in names
    assert "package/web/assets/cpu/kernels-mt.wasm" in names and not any("/app/" in n or "/tests/" in n for n in names)
    app = tmp / "app"
    app.mkdir()
    shutil.copy(tarball, app)
    for f in ("app.js", "worker.js"):
        shutil.copy(EXAMPLE / f, app)
    done = subprocess.run([NPM, "install", "--no-audit", "--no-fund", "--prefer-offline", f"./{tarball.name}"],
                          cwd=app, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    site = app / "site"
    (app / "two.js").write_text("export { loadJanus } from 'janusweb';\n")  # the two-instance test's entry
    done = subprocess.run([str(REPO / "node_modules" / ".bin" / "esbuild"), "app.js", "worker.js", "two.js", "--bundle",
                           "--format=esm", f"--outdir={site}"], cwd=app, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    shutil.copytree(app / "node_modules" / "janusweb" / "web" / "assets", site, dirs_exist_ok=True)
    (site / "index.html").write_text(HARNESS)
    shutil.copy(test_png, site / "input.png")
    shutil.copytree(tiny_bundle, site / "model")
    out = tmp / "seed1"
    assert main(["--quiet", "export", "tiny", "--seed", "1", "--out", str(out), "--no-validate"]) == 0
    shutil.copytree(out, site / "model1")
    return site


@pytest.fixture(scope="module")
def page(playwright, app_site):
    server, url = serve_in_thread(app_site)
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS + WEBGPU_ARGS)
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "index.html")
    page.wait_for_function("globalThis.harness", timeout=60_000)
    assert not errors, errors
    yield page
    browser.close()
    server.shutdown()


def expected(bundle: Path, info: dict, image: Path):
    graphs, dims, tok, ids = reference(bundle, reference_dtypes(info))
    pixels = preprocess(Image.open(image), dims.image_size)[None, None]
    tokens = generate_text(graphs, dims, understanding_inputs(tok, ids, QUESTION, dims.num_image_tokens), TOKENS,
                           pixel_values=pixels, eos_id=ids.eos)
    draws = uniforms(SEED, dims.num_image_tokens).reshape(1, -1)
    ref = generate_images(graphs, dims, ids, generation_prompt(tok, ids, PROMPT), draws, 5.0, 1.0)
    return tok.decode(tokens, skip_special_tokens=True), ref.tokens[0].tolist(), to_uint8(ref.images[0])


def test_import_adds_no_global_and_patches_no_prototype(page):
    assert page.evaluate("harness.atImport") == {"added": [], "patched": []}


@pytest.mark.parametrize("in_worker", [False, True], ids=["main-thread", "worker"])
@pytest.mark.parametrize("backend", ["wasm", "webgpu"])
def test_example_matches_the_python_reference(page, app_site, backend, in_worker):
    if backend == "webgpu" and not page.evaluate("async () => !!(navigator.gpu && await navigator.gpu.requestAdapter())"):
        pytest.skip("this Chromium offers no WebGPU adapter (not even SwiftShader)")
    got = page.evaluate(RUN, [backend, in_worker])
    assert got["backend"] == backend
    answer, image_tokens, picture = expected(app_site / "model", got, app_site / "input.png")
    assert got["answer"] == answer
    assert got["tokens"] == image_tokens
    rgba = np.array(got["rgba"], np.int16).reshape(got["width"], got["width"], 4)
    assert np.abs(rgba[..., :3] - picture.astype(np.int16)).max() <= 1
    assert page.evaluate("harness.changed()") == {"added": [], "patched": []}  # after loading and running too


def test_two_instances_of_different_bundles_side_by_side(page, app_site):
    """Two bundles (the tiny preset at seeds 0 and 1: other weights) loaded at once, their turns interleaved; the
    second asks for one thread where ONNX Runtime already runs the first's."""
    got = page.evaluate("""async () => {
      const { loadJanus } = await import('./two.js');
      const png = await (await fetch('input.png')).blob();
      const [a, b] = [await loadJanus('model/', { backend: 'wasm' }),
        await loadJanus('model1/', { backend: 'wasm', threads: 1 })];
      const ask = (j, image) => j.chat({ question: 'Describe this image.', image, maxNewTokens: 8 }).then((r) => r.tokens);
      const out = { a: await ask(a, png), b: await ask(b, png), a2: await ask(a, null), b2: await ask(b, null),
        infos: [a.info, b.info] };
      await Promise.all([a.release(), b.release()]);
      return out;
    }""")
    for key, bundle, info in (("a", "model", got["infos"][0]), ("b", "model1", got["infos"][1])):
        graphs, dims, tok, ids = reference(app_site / bundle, reference_dtypes(info))
        pixels = preprocess(Image.open(app_site / "input.png"), dims.image_size)[None, None]
        with_image = understanding_inputs(tok, ids, QUESTION, dims.num_image_tokens)
        text_only = understanding_inputs(tok, ids, QUESTION, dims.num_image_tokens, with_image=False)
        assert got[key] == generate_text(graphs, dims, with_image, TOKENS, pixel_values=pixels, eos_id=ids.eos)
        assert got[key + "2"] == generate_text(graphs, dims, text_only, TOKENS, eos_id=ids.eos)
    assert got["a"] != got["b"]  # the two bundles answer differently: each instance ran its own
    a_info, b_info = got["infos"]  # ONNX Runtime's threads are the first instance's; the second one says so
    assert a_info["threads"] == 1 or any("as the first instance in this page set it" in n for n in b_info["notes"])


def test_sampled_chat_matches_the_python_reference(page, app_site):
    """chat.completions.create with a temperature and a seed streams generate_text's answer drawn from
    uniforms(seed): janus.chat gives the same tokens for that seed and the reference's other ones for another."""
    got = page.evaluate("""async () => {
      const { loadJanus } = await import('./two.js');
      const png = await (await fetch('input.png')).blob();
      const j = await loadJanus('model/', { backend: 'wasm' });
      const messages = [{ role: 'user', content: [{ type: 'image', image: png }, { type: 'text', text: 'Describe this image.' }] }];
      let streamed = '', last = null;
      for await (const c of await j.chat.completions.create({ messages, stream: true, max_tokens: 8, temperature: 0.8,
        seed: 3 })) {
        streamed += c.choices[0].delta.content ?? '';
        last = c;
      }
      const ask = (seed) => j.chat({ question: 'Describe this image.', image: png, maxNewTokens: 8, temperature: 0.8, seed });
      const [same, other] = [await ask(3), await ask(4)];
      const info = j.info;
      await j.release();
      return { streamed, seed: last.seed, tokens: same.tokens, resultSeed: same.seed, other: other.tokens, info };
    }""")
    graphs, dims, tok, ids = reference(app_site / "model", reference_dtypes(got["info"]))
    pixels = preprocess(Image.open(app_site / "input.png"), dims.image_size)[None, None]
    inputs = understanding_inputs(tok, ids, QUESTION, dims.num_image_tokens)
    sampled = {seed: generate_text(graphs, dims, inputs, TOKENS, pixel_values=pixels, eos_id=ids.eos, temperature=0.8,
                                   draws=uniforms(seed, TOKENS)) for seed in (3, 4)}
    assert got["tokens"] == sampled[3] and got["other"] == sampled[4]
    assert got["streamed"] == tok.decode(sampled[3], skip_special_tokens=True)
    assert got["seed"] == got["resultSeed"] == 3
    greedy = generate_text(graphs, dims, inputs, TOKENS, pixel_values=pixels, eos_id=ids.eos)
    assert sampled[3] != greedy and sampled[3] != sampled[4]  # the draws chose the tokens


def test_an_aborted_load_rejects_and_the_next_one_works(page, app_site):
    """A load aborted while downloading, while creating its sessions, or after the last one rejects with the
    signal's reason; a load after them answers as the reference."""
    got = page.evaluate("""async () => {
      const { loadJanus } = await import('./two.js');
      const out = {};
      for (const at of ['download', 'session', 'all']) {
        const c = new AbortController();
        const onProgress = (p) => { if (at === 'all' ? p.what === 'session' && p.name === 'all' : p.what === at) c.abort(); };
        try {
          await loadJanus('model/', { backend: 'wasm', cache: false, signal: c.signal, onProgress });
          out[at] = 'loaded';
        } catch (e) {
          out[at] = e.name;
        }
      }
      const j = await loadJanus('model/', { backend: 'wasm' });
      out.tokens = (await j.chat({ question: 'Describe this image.', maxNewTokens: 8 })).tokens;
      out.info = j.info;
      await j.release();
      return out;
    }""")
    assert {k: got[k] for k in ("download", "session", "all")} == dict.fromkeys(("download", "session", "all"),
                                                                                 "AbortError")
    graphs, dims, tok, ids = reference(app_site / "model", reference_dtypes(got["info"]))
    text_only = understanding_inputs(tok, ids, QUESTION, dims.num_image_tokens, with_image=False)
    assert got["tokens"] == generate_text(graphs, dims, text_only, TOKENS, eos_id=ids.eos)
