"""How right a shapes model is, through any backend: a fixed set of generation requests and questions, scored by
the numpy scorer (janusweb/scorer.py) and by exact answers, seen and held-out (colour, shape) pairs apart.

- generation: every prompt of the grammar (120), one request of IMAGES_PER_PROMPT images each, request i seeded
  GENERATION_SEED + i; at each guidance of GUIDANCES. Per image: colour, shape, position right, and all three.
- answers: every scene of the grammar drawn once (seeded QUESTION_SEED) and asked two of the four questions (each
  question 60 times); the answer counts when it is exactly the task's answer.

A backend is two callables: generate(prompt, seed, n, guidance) -> images [n, H, W, 3] uint8 and
answer(question, image [H, W, 3] uint8) -> text. `janusweb.runner.Runner` gives both for a bundle or a PyTorch
model; the page's rows give them through the page.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from janusweb.errors import UserError
from janusweb.scorer import score
from janusweb.shapes import ATTRIBUTES, QUESTIONS, all_scenes, draw

GUIDANCES = (5.0, 1.0)
IMAGES_PER_PROMPT = 2
GENERATION_SEED = 1000
QUESTION_SEED = 2000
TASK_FILE = "task.json"  # in a trained checkpoint and in the bundle exported from it


@dataclass(frozen=True)
class Backend:
    name: str
    generate: Callable  # (prompt, seed, n, guidance) -> [n, H, W, 3] uint8
    answer: Callable  # (question, image [H, W, 3] uint8) -> str


def read_task(folder: Path) -> dict:
    """The task description a trained checkpoint (and its bundle) carries: image size, held-out pairs, seed."""
    path = Path(folder) / TASK_FILE
    if not path.is_file():
        raise UserError(f"{folder} has no {TASK_FILE}: not a model trained on the shapes task (janusweb train)")
    task = json.loads(path.read_text())
    task["held_out"] = [tuple(p) for p in task["held_out"]]
    return task


def generation_requests() -> list:
    """[(scene, seed)]: every prompt of the grammar once."""
    return [(scene, GENERATION_SEED + i) for i, scene in enumerate(all_scenes())]


def question_cases(size: int) -> list:
    """[(scene, kind, image)]: every scene drawn once, asked two questions (kinds i and i + 2 of the four)."""
    rng = np.random.default_rng(QUESTION_SEED)
    kinds = list(QUESTIONS)
    cases = []
    for i, scene in enumerate(all_scenes()):
        image = draw(scene, size, rng)
        cases += [(scene, kinds[(i + k) % len(kinds)], image) for k in (0, 2)]
    return cases


def _split(rows: list, held_out: list) -> dict:
    return {"seen": [r for r in rows if r["pair"] not in held_out],
            "held_out": [r for r in rows if r["pair"] in held_out]}


def _rate(rows: list, key: str) -> float | None:
    return round(sum(r[key] for r in rows) / len(rows), 4) if rows else None


def generation_rows(backend: Backend, guidance: float, on_progress=None) -> list:
    rows = []
    requests = generation_requests()
    for k, (scene, seed) in enumerate(requests, 1):
        images = backend.generate(scene.prompt, seed, IMAGES_PER_PROMPT, guidance)
        for i, image in enumerate(images):
            verdict = score(image)
            rows.append({"prompt": scene.prompt, "seed": seed, "image": i, "pair": scene.pair,
                         "read": verdict.text(), **verdict.right(scene)})
        if on_progress:
            on_progress(k, len(requests))
    return rows


def answer_rows(backend: Backend, size: int, on_progress=None) -> list:
    rows = []
    cases = question_cases(size)
    for k, (scene, kind, image) in enumerate(cases, 1):
        text = backend.answer(QUESTIONS[kind], image)
        rows.append({"scene": scene.prompt, "kind": kind, "pair": scene.pair, "answer": text,
                     "right": text == scene.answer(kind)})
        if on_progress:
            on_progress(k, len(cases))
    return rows


def summarise_generation(rows: list, held_out: list) -> dict:
    return {part: {"images": len(r), **{a: _rate(r, a) for a in (*ATTRIBUTES, "all")}}
            for part, r in _split(rows, held_out).items()}


def summarise_answers(rows: list, held_out: list) -> dict:
    out = {}
    for part, r in _split(rows, held_out).items():
        out[part] = {"questions": len(r), "exact": _rate(r, "right"),
                     **{kind: _rate([x for x in r if x["kind"] == kind], "right") for kind in QUESTIONS}}
    return out


def evaluate(backend: Backend, task: dict, guidances=GUIDANCES, on_progress=None) -> dict:
    """Every figure of the evaluation for one backend, and its rows (each image's and each answer's verdict)."""
    held_out = task["held_out"]
    generation, rows = {}, {}
    for g in guidances:
        progress = (lambda k, n, g=g: on_progress(f"guidance {g:g}", k, n)) if on_progress else None
        rows[f"generation_guidance_{g:g}"] = r = generation_rows(backend, g, progress)
        generation[f"guidance_{g:g}"] = summarise_generation(r, held_out)
    progress = (lambda k, n: on_progress("questions", k, n)) if on_progress else None
    rows["answers"] = r = answer_rows(backend, task["image_size"], progress)
    return {"backend": backend.name, "generation": generation, "answers": summarise_answers(r, held_out),
            "rows": rows}


def runner_backend(name: str, runner) -> Backend:
    """A janusweb.runner.Runner as a Backend (greedy answers up to EOS)."""
    return Backend(name, lambda prompt, seed, n, guidance: runner.images(prompt, seed, n, guidance)[1],
                   lambda question, image: runner.answer(question, image, max_new_tokens=16)[0])

