"""The quality evaluation (janusweb/quality.py) scores what a backend returns with the model-free scorer and exact
answers, seen and held-out pairs apart."""

import numpy as np

from janusweb import quality, shapes

TASK = {"held_out": [("red", "triangle"), ("blue", "circle")], "image_size": 32}


def _perfect():
    """Draws what it is asked and answers from the scene it was shown (by parsing the drawn image's scorer read)."""
    from janusweb.scorer import score

    def generate(prompt, seed, n, guidance):
        rng = np.random.default_rng(seed)
        return np.stack([shapes.draw(shapes.parse_prompt(prompt), 32, rng) for _ in range(n)])

    def answer(question, image):
        v = score(image)
        kind = next(k for k, q in shapes.QUESTIONS.items() if q == question)
        return shapes.Scene(v.colour, v.shape, v.position).answer(kind)
    return quality.Backend("perfect", generate, answer)


def test_a_backend_that_draws_and_reads_rightly_scores_everything():
    result = quality.evaluate(_perfect(), TASK, guidances=(5.0,))
    gen = result["generation"]["guidance_5"]
    assert gen["seen"]["images"] == 2 * (120 - 10) and gen["held_out"]["images"] == 2 * 10
    assert gen["seen"]["all"] >= 0.99 and gen["held_out"]["all"] >= 0.99  # the scorer reads >= 99 % of drawings
    answers = result["answers"]
    assert answers["seen"]["questions"] + answers["held_out"]["questions"] == 240
    assert answers["seen"]["exact"] >= 0.99 and answers["held_out"]["exact"] >= 0.99
    assert {r["kind"] for r in result["rows"]["answers"]} == set(shapes.QUESTIONS)


def test_wrong_pictures_and_answers_are_counted_wrong():
    blank = np.tile(np.array(shapes.BACKGROUND, np.uint8), (32, 32, 1))
    swap = {"red": "green", "green": "red"}

    def generate(prompt, seed, n, guidance):  # draws another colour for red and green, nothing for purple
        scene = shapes.parse_prompt(prompt)
        if scene.colour == "purple":
            return np.stack([blank] * n)
        drawn = shapes.Scene(swap.get(scene.colour, scene.colour), scene.shape, scene.position)
        return np.stack([shapes.draw(drawn, 32, np.random.default_rng(seed)) for _ in range(n)])

    result = quality.evaluate(quality.Backend("wrong", generate, lambda q, image: "red"), TASK, guidances=(1.0,))
    seen = result["generation"]["guidance_1"]["seen"]
    # seen prompts: 20 per colour but 15 for red and blue (a held-out pair each); right: blue, yellow, white
    assert abs(seen["colour"] - (15 + 20 + 20) / 110) < 0.02
    assert abs(seen["shape"] - (110 - 20) / 110) < 0.02 and seen["all"] <= seen["colour"]
    answers = result["answers"]["seen"]
    assert 0 < answers["colour"] < 0.3 and answers["shape"] == answers["position"] == answers["describe"] == 0.0
