"""A bundle (fp32 and int8) loads in transformers.js 4.3.1 (MultiModalityCausalLM, Node CPU backend =
onnxruntime-node) and its greedy text tokens equal janusweb.generate.generate_text's on the same files.

Both run transformers.js unmodified: the bundle names the batch axis `batch_size` (transformers.js builds its
empty cache from that symbol) and prepare_inputs_embeds takes transformers.js's text-step shapes
(pixel_values [0, 0, 3, 384, 384], images_emb_mask [1, 1, 0]).
"""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from janusweb.cli import main
from janusweb.generate import ModelDims, generate_text
from janusweb.graphs import GRAPH_NAMES, OrtGraphs
from janusweb.prompts import SpecialIds, understanding_inputs
from janusweb.quantize.workload import sample_image

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
