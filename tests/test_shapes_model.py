"""The committed trained model (models/shapes) through its exported bundle: `janusweb generate` draws what it is
asked (the model-free scorer reads it; guidance 1, where the model card measures 95 % of seen prompts all right),
and `janusweb chat` answers rightly at fp32 and int8."""

import json

import numpy as np
from PIL import Image

from janusweb.cli import main
from janusweb.quality import read_task
from janusweb.scorer import score
from janusweb.shapes import Scene, draw


def _seen(task: dict, pairs: list, position: str) -> Scene:
    """The first (colour, shape) of `pairs` that training saw (the held-out pairs depend on the seed)."""
    colour, shape = next(p for p in pairs if list(p) not in [list(h) for h in task["held_out"]])
    return Scene(colour, shape, position)


def test_generate_draws_what_is_asked(shapes_bundle, tmp_path):
    task = read_task(shapes_bundle)
    for scene in (_seen(task, [("red", "circle"), ("red", "square")], "top left"),
                  _seen(task, [("blue", "triangle"), ("yellow", "cross")], "centre")):
        out = tmp_path / scene.shape
        assert main(["--quiet", "generate", str(shapes_bundle), "--prompt", scene.prompt, "--n", "4", "--seed", "1",
                     "--guidance", "1", "--out", str(out)]) == 0
        record = json.loads((out / "generation.json").read_text())
        right = [score(np.asarray(Image.open(out / i["file"]).convert("RGB"))).right(scene)["all"]
                 for i in record["images"]]
        assert sum(right) >= 3, (scene.prompt, right)


def test_chat_answers_rightly(shapes_bundle, tmp_path, capsys):
    task = read_task(shapes_bundle)
    scene = _seen(task, [("blue", "square"), ("blue", "circle")], "bottom right")
    picture = tmp_path / "shape.png"
    Image.fromarray(draw(scene, task["image_size"], np.random.default_rng(3))).save(picture)
    for dtype in ("fp32", "int8"):
        for question, answer in [("What colour is the shape?", scene.colour), ("What shape is it?", scene.shape),
                                 ("Where is the shape?", scene.position), ("Describe the image.", scene.prompt)]:
            assert main(["--quiet", "chat", str(shapes_bundle), "--dtype", dtype, "--image", str(picture),
                         question]) == 0
            assert capsys.readouterr().out == answer + "\n", (dtype, question)

