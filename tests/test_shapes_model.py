"""The committed trained model (models/shapes) through its exported bundle: `janusweb generate` draws what it is
asked (the model-free scorer reads it; guidance 1, where the model card measures 95 % of seen prompts all right),
and `janusweb chat` answers rightly at fp32 and int8; the quantize report scores int8 on the task."""

import json
from pathlib import Path

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


def test_quantize_report_scores_the_task(shapes_bundle):
    """The int8 report carries the task's figures: its fp32 side is the PyTorch evaluation the training recorded
    (models/shapes/train_log.json: onnxruntime's fp32 tokens equal PyTorch's, so every figure is equal), and int8
    stays within 3 points of it on the seen figures."""
    report = json.loads((shapes_bundle / "quantize_report.json").read_text())["int8"]
    quality = report["task_quality"]
    recorded = json.loads((Path(__file__).resolve().parents[1] / "models" / "shapes" / "train_log.json")
                          .read_text())["scores"]
    assert quality["fp32"]["generation"] == recorded["generation"]
    assert quality["fp32"]["answers"] == recorded["answers"]
    assert set(quality["points"]) == {"guidance 5, seen, all three right", "guidance 1, seen, all three right",
                                      "answers, seen, exact", "answers, held-out, exact"}
    for label, points in quality["points"].items():  # held-out: 40 answers, 2.5 points each; reported only
        assert "held-out" in label or abs(points) <= 3, (label, points)
    int8_g5 = quality["int8"]["generation"]["guidance_5"]["seen"]["all"]
    assert quality["points"]["guidance 5, seen, all three right"] == round(
        100 * (int8_g5 - recorded["generation"]["guidance_5"]["seen"]["all"]), 2)
