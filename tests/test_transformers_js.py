"""A bundle (fp32 and int8) loads in transformers.js 4.3.1 (MultiModalityCausalLM, Node CPU backend =
onnxruntime-node) and its greedy text tokens equal janusweb.generate.generate_text's on the same files; with the
calls of transformers.js's Janus example (conversation -> AutoProcessor with the bundle's named chat templates ->
generate with do_sample false, plus guidance_scale null; generate_images with do_sample true after random.seed),
it gives the Python reference's prompt ids, greedy answer, and sampled image tokens and pixels.

Both run transformers.js unmodified: the bundle names the batch axis `batch_size` (transformers.js builds its
empty cache from that symbol) and prepare_inputs_embeds takes transformers.js's text-step shapes
(pixel_values [0, 0, 3, 384, 384], images_emb_mask [1, 1, 0]).
"""

import json
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tokenizers import Tokenizer

from janusweb.cli import main
from janusweb.generate import KVCache, ModelDims, generate_text
from janusweb.graphs import GRAPH_NAMES, OrtGraphs
from janusweb.image import preprocess, to_uint8
from janusweb.prompts import SpecialIds, generation_prompt, understanding_inputs
from janusweb.quantize.workload import sample_image
from janusweb.sampling import cfg_logits

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "js" / "transformers_js_check.mjs"
STEPS = 16

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (ROOT / "node_modules" / "@huggingface" / "transformers").is_dir(),
    reason="node or node_modules/@huggingface/transformers missing (npm ci)")


@pytest.fixture(scope="module")
def bundle(tiny_bundle, tmp_path_factory) -> Path:
    """The tiny bundle with its int8 variants (fp32 graphs included)."""
    out = tmp_path_factory.mktemp("tjs") / "tiny"
    shutil.copytree(tiny_bundle, out)
    assert main(["--quiet", "quantize", str(out), "--dtype", "int8"]) == 0
    return out


def _prompt(bundle: Path, with_image: bool):
    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    ids = SpecialIds.from_tokenizer(tok)
    dims = ModelDims.from_bundle_config(json.loads((bundle / "config.json").read_text())["janusweb"])
    inputs = understanding_inputs(tok, ids, "Describe this image in detail.", dims.num_image_tokens, with_image)
    return ids, dims, inputs, (sample_image(dims.image_size) if with_image else None)


def _node(bundle: Path, dtype, inputs: dict, pixels) -> list:
    mask = inputs["images_emb_mask"]
    request = {"bundle": str(bundle), "dtype": dtype, "max_new_tokens": STEPS,
               "input_ids": inputs["input_ids"].tolist(), "images_seq_mask": inputs["images_seq_mask"].tolist(),
               "images_emb_mask": {"dims": list(mask.shape), "data": mask.ravel().tolist()},
               "pixel_values": None if pixels is None else {"dims": list(pixels.shape),
                                                            "data": pixels.ravel().tolist()}}
    run = subprocess.run(["node", str(SCRIPT)], input=json.dumps(request), capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout)["tokens"]


def _python(bundle: Path, dtype: str, ids, dims, inputs, pixels) -> list:
    graphs = OrtGraphs(bundle, dtypes={name: dtype for name in GRAPH_NAMES})
    return generate_text(graphs, dims, inputs, STEPS, pixel_values=pixels, eos_id=ids.eos)


@pytest.mark.parametrize("with_image", [True, False], ids=["image-prompt", "text-only"])
@pytest.mark.parametrize("dtype", ["fp32", "int8"])
def test_parity_with_onnxruntime(bundle, dtype, with_image):
    ids, dims, inputs, pixels = _prompt(bundle, with_image)
    expected = _python(bundle, dtype, ids, dims, inputs, pixels)
    per_graph = {name: dtype for name in GRAPH_NAMES if name != "gen_step"}  # transformers.js has no gen_step
    assert _node(bundle, per_graph, inputs, pixels) == expected
    assert len(expected) == STEPS or expected[-1] == ids.eos


def test_config_default_dtype_is_int8(bundle):
    """With no dtype passed, transformers.js loads what config.json's transformers.js_config.dtype names."""
    tjs = json.loads((bundle / "config.json").read_text())["transformers.js_config"]
    assert all(tjs["dtype"][name] == "int8" for name in GRAPH_NAMES)
    assert all(tjs["use_external_data_format"][f"{name}_int8.onnx"] is False for name in GRAPH_NAMES)


def test_unmodified_bundle(bundle):
    """transformers.js as a user runs it: one dtype name for every session, its own text-step shapes."""
    ids, dims, inputs, pixels = _prompt(bundle, True)
    for dtype in ("fp32", "int8"):
        assert _node(bundle, dtype, inputs, pixels) == _python(bundle, dtype, ids, dims, inputs, pixels)


# --- transformers.js's Janus example's own calls: conversation -> processor -> generate / generate_images ---
FLOW = ROOT / "tests" / "js" / "transformers_js_flow.mjs"
QUESTION, PROMPT, SEED = "Describe this image in detail.", "A watercolor painting of mountains at sunset.", 11
TOP_K = 50  # transformers.js's GenerationConfig default; the bundle's generation_config.json sets none


def tjs_multinomial(scores: np.ndarray, rng: random.Random) -> int:
    """One token as transformers.js 4.3.1's MultinomialSampler draws it from float32 scores: the top TOP_K by ONNX
    TopK (largest first, ties to the lower index), maths.softmax over them (exps and probabilities float32 arrays,
    sums in float64), then the weighted index of random.random() (a linear scan subtracting each weight)."""
    order = np.argsort(-scores.astype(np.float64), kind="stable")[:TOP_K]
    top = scores[order]
    exps = np.exp(top.astype(np.float64) - float(top.max())).astype(np.float32)
    probs = (exps.astype(np.float64) / sum(float(e) for e in exps)).astype(np.float32)
    x = rng.random() * sum(float(p) for p in probs)
    for i, p in enumerate(probs):
        x -= float(p)
        if x < 0:
            return int(order[i])
    return int(order[-1])


def tjs_cfg_tokens(graphs, dims, ids, prompt: np.ndarray, guidance: float, rng: random.Random) -> np.ndarray:
    """Sampled CFG image tokens as transformers.js 4.3.1 makes them (MultiModalityCausalLM.
    prepare_inputs_for_generation and its logits processors): its unconditional row is the prompt with every token
    the pad token and attention mask 0 (position ids cumsum - 1, masked ones 1), unlike Janus's (BOS and
    <begin_of_image> kept, unmasked: janusweb.prompts.unconditional); min_new_tokens sets the conditional row's
    EOS id to -inf; the guided scores uncond + (cond - uncond) * scale are float32; temperature 1 changes nothing."""
    S = prompt.shape[0]
    rows = np.stack([prompt, np.full(S, ids.pad)])
    mask = np.array([[1] * S, [0] * S], np.int64)
    positions = np.where(mask == 0, 1, np.cumsum(mask, 1) - 1)
    embeds = graphs.run("prepare_inputs_embeds", {
        "input_ids": rows, "pixel_values": np.zeros((2, 0, 3, dims.image_size, dims.image_size), np.float32),
        "images_seq_mask": np.zeros((2, S), bool), "images_emb_mask": np.zeros((2, 0, dims.num_image_tokens), bool)})[0]
    cache = KVCache(dims, 2)
    tokens = []
    for _ in range(dims.num_image_tokens):
        out = graphs.run("language_model", {"inputs_embeds": embeds, "attention_mask": mask, "position_ids": positions,
                                            **cache.feeds()})
        cache.tensors = out[1:]
        logits = graphs.run("gen_head", {"hidden_states": out[0][:, -1:]})[0][:, -1].astype(np.float64)
        logits[0, ids.eos] = -np.inf
        scores = cfg_logits(logits[0], logits[1], guidance).astype(np.float32)
        tokens.append(tjs_multinomial(scores, rng))
        embeds = graphs.run("gen_img_embeds", {"image_ids": np.array([[tokens[-1]], [tokens[-1]]], np.int64)})[0]
        mask = np.concatenate([mask, np.ones((2, 1), np.int64)], 1)
        positions = (np.cumsum(mask, 1) - 1)[:, -1:]
    return np.array(tokens, np.int64)


@pytest.mark.parametrize("dtype", ["fp32", "int8"])
def test_the_examples_calls(bundle, dtype):
    """The example's chat (plus guidance_scale null) gives generate_text's greedy tokens; its generate_images
    (do_sample true, no guidance_scale: the bundle's 5) gives the tokens of a Python reference of transformers.js's
    CFG and sampler drawing from Python's random.Random(SEED), and their decoding as the picture."""
    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    ids = SpecialIds.from_tokenizer(tok)
    dims = ModelDims.from_bundle_config(json.loads((bundle / "config.json").read_text())["janusweb"])
    picture = np.random.default_rng(0).integers(0, 256, (dims.image_size, dims.image_size, 3), dtype=np.uint8)
    request = {"bundle": str(bundle), "dtype": dtype, "question": QUESTION, "prompt": PROMPT, "max_new_tokens": STEPS,
               "seed": SEED, "image": {"width": dims.image_size, "height": dims.image_size,
                                       "data": picture.ravel().tolist()}}
    run = subprocess.run(["node", str(FLOW)], input=json.dumps(request), capture_output=True, text=True, cwd=ROOT,
                         timeout=180)
    assert run.returncode == 0, run.stderr[-4000:]
    got = json.loads(run.stdout)
    graphs = OrtGraphs(bundle, dtypes={name: dtype for name in GRAPH_NAMES})

    # chat: the processor's prompt ids are prompts.understanding_inputs', the tokens generate_text's
    inputs = understanding_inputs(tok, ids, QUESTION, dims.num_image_tokens, True)
    u = got["understanding"]
    assert u["input_ids"] == inputs["input_ids"][0].tolist()
    assert u["images_seq_mask"] == inputs["images_seq_mask"][0].astype(int).tolist()
    pixels = preprocess(Image.fromarray(picture), dims.image_size)[None, None]
    assert u["pixel_values"]["dims"] == list(pixels.shape)
    assert np.abs(np.array(u["pixel_values"]["data"], np.float32) - pixels.ravel()).max() < 1e-6
    assert u["tokens"] == generate_text(graphs, dims, inputs, STEPS, pixel_values=pixels, eos_id=ids.eos)

    # text to image: the text_to_image template gives prompts.generation_prompt's ids; the sampled tokens are the
    # reference's, step by step through the example's progress streamer, and the picture their decoding
    t = got["text_to_image"]
    prompt = generation_prompt(tok, ids, PROMPT)
    assert t["input_ids"] == prompt.tolist()
    assert t["progress"] == list(range(1, dims.num_image_tokens + 1))
    expected = tjs_cfg_tokens(graphs, dims, ids, prompt, 5.0, random.Random(SEED))
    assert t["tokens"] == expected.tolist()
    assert (tjs_cfg_tokens(graphs, dims, ids, prompt, 5.0, random.Random(SEED + 1)) != expected).any()  # draws matter
    decoded = graphs.to_numpy(graphs.run("image_decode", {"generated_tokens": expected[None]})[0])[0]
    picture_out = np.array(t["image"]["data"], np.int16).reshape(t["image"]["height"], t["image"]["width"], 3)
    assert np.abs(picture_out - to_uint8(decoded).astype(np.int16)).max() <= 1


def test_named_chat_templates(bundle):
    """tokenizer_config.json names its templates as transformers.js's processor asks for them."""
    templates = json.loads((bundle / "tokenizer_config.json").read_text())["chat_template"]
    assert [t["name"] for t in templates] == ["default", "text_to_image"]
