"""`janusweb generate` and `janusweb chat` on a `tiny` bundle: the tokens, pixels and answers of the PyTorch model
through the same loop and seed rule, and bad input as one line with exit code 2, nothing written."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from janusweb.cli import main
from janusweb.export.checkpoint import load_source
from janusweb.export.specs import graph_specs
from janusweb.generate import ModelDims
from janusweb.graphs import TorchGraphs
from janusweb.runner import Runner

PROMPT = "a red circle in the top left"


@pytest.fixture(scope="module")
def reference(tiny_bundle):
    """The `tiny` preset's PyTorch model (the weights the bundle was exported from) behind a Runner."""
    src = load_source("tiny")
    try:
        bundle = Runner.open(tiny_bundle)
        config = json.loads((tiny_bundle / "config.json").read_text())
        yield Runner(TorchGraphs(src.model, graph_specs(src.model)), bundle.tok,
                     ModelDims.from_bundle_config(config["janusweb"]), bundle.context)
    finally:
        shutil.rmtree(src.tokenizer_dir)


def test_generate_writes_the_references_tokens_and_pixels(tiny_bundle, reference, tmp_path):
    out = tmp_path / "out"
    assert main(["--quiet", "generate", str(tiny_bundle), "--prompt", PROMPT, "--n", "2", "--seed", "7",
                 "--guidance", "3", "--out", str(out)]) == 0
    record = json.loads((out / "generation.json").read_text())
    assert (record["prompt"], record["seed"], record["guidance"]) == (PROMPT, 7, 3.0)
    assert [i["file"] for i in record["images"]] == ["image-0.png", "image-1.png"]
    tokens, images = reference.images(PROMPT, 7, 2, 3.0)
    assert [i["tokens"] for i in record["images"]] == tokens.tolist()
    assert tokens[0].tolist() != tokens[1].tolist()  # image i draws the i-th run of the seed's uniforms
    for item, want in zip(record["images"], images):
        got = np.asarray(Image.open(out / item["file"]).convert("RGB")).astype(int)
        assert got.shape == want.shape and np.abs(got - want).max() <= 1, item["file"]


def test_chat_streams_the_references_answer(tiny_bundle, reference, tmp_path, capsys):
    picture = tmp_path / "picture.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (40, 30, 3), np.uint8)).save(picture)
    question = "What colour is the shape?"
    want, tokens = reference.answer(question, Image.open(picture).convert("RGB"), 8)
    assert len(tokens) == 8  # random weights: no EOS, every token streamed
    assert main(["--quiet", "chat", str(tiny_bundle), "--image", str(picture), "--max-new-tokens", "8",
                 question]) == 0
    assert capsys.readouterr().out.strip() == want


@pytest.mark.parametrize("args, says", [
    (["generate", "{b}", "--prompt", PROMPT, "--dtype", "q4", "--out", "{o}"], "no q4 variant"),
    (["generate", "{b}", "--prompt", "a red circle " * 6000, "--out", "{o}"], "longer than the model's context"),
    (["chat", "{b}", "--image", "{o}.png", "What colour is the shape?"], "cannot read"),
    (["chat", "{b}", "--image", "{o}-missing.png", "What colour is the shape?"], "no such image"),
    (["generate", "{b}", "--prompt", PROMPT, "--n", "0", "--out", "{o}"], "choose 1 to 16"),
    (["generate", "{b}", "--prompt", PROMPT, "--temperature", "-1", "--out", "{o}"], "negative"),
])
def test_bad_input_is_one_line_and_exit_2(tiny_bundle, tmp_path, capsys, args, says):
    out = tmp_path / "out"
    (tmp_path / "out.png").write_text("not an image")
    argv = ["--quiet", *(a.format(b=tiny_bundle, o=out) for a in args)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("janusweb: error:") and says in err, err
    assert not out.exists()
