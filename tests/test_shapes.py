"""The shapes task (janusweb/shapes.py) and its model-free judge (janusweb/scorer.py)."""

import numpy as np
import pytest

from janusweb import scorer, shapes


@pytest.mark.parametrize("size", [32, 64])
def test_scorer_reads_the_generators_own_images(size):
    rng = np.random.default_rng(size)
    scenes = shapes.sample_scenes(rng, 600, [])
    marks = [scorer.score(shapes.draw(s, size, rng)).right(s) for s in scenes]
    right = sum(m[a] for m in marks for a in shapes.ATTRIBUTES)
    assert right / (3 * len(marks)) >= 0.99, right
    for shape in shapes.SHAPES:  # every class is read, not just the common answer
        assert any(m["shape"] for m, s in zip(marks, scenes) if s.shape == shape)


def test_scorer_says_nothing_for_an_empty_picture_and_sees_a_wrong_one():
    empty = np.tile(np.array(shapes.BACKGROUND, np.uint8), (32, 32, 1))
    assert scorer.score(empty) == scorer.Verdict(None, None, None)
    rng = np.random.default_rng(0)
    asked = shapes.Scene("red", "circle", "top left")
    drawn = shapes.draw(shapes.Scene("blue", "cross", "bottom right"), 32, rng)
    assert scorer.score(drawn).right(asked) == {"colour": False, "shape": False, "position": False, "all": False}


def test_scorer_keeps_the_largest_region_only():
    rng = np.random.default_rng(1)
    scene = shapes.Scene("green", "triangle", "centre")
    image = shapes.draw(scene, 64, rng)
    image[0:2, 60:62] = shapes.COLOURS["white"]  # a speck in a corner
    assert scorer.score(image).right(scene)["all"]


def test_grammar_and_prompts():
    scenes = shapes.all_scenes()
    assert len(scenes) == 6 * 4 * 5 == len(set(scenes))
    assert shapes.Scene("red", "circle", "top left").prompt == "a red circle in the top left"
    assert all(shapes.parse_prompt(s.prompt) == s for s in scenes)
    assert shapes.parse_prompt("a pink circle in the top left") is None
    scene = shapes.Scene("purple", "cross", "centre")
    assert [scene.answer(k) for k in shapes.QUESTIONS] == ["purple", "cross", "centre", "a purple cross in the centre"]
    assert shapes.QUESTIONS == {"colour": "What colour is the shape?", "shape": "What shape is it?",
                                "position": "Where is the shape?", "describe": "Describe the image."}


def test_held_out_pairs_are_seeded_and_leave_every_word_seen():
    pairs = shapes.held_out_pairs(0)
    assert pairs == shapes.held_out_pairs(0) and len(pairs) == 4
    assert len({c for c, _ in pairs}) == 4 and len({s for _, s in pairs}) == 4
    assert any(shapes.held_out_pairs(seed) != pairs for seed in range(1, 5))
    drawn = shapes.sample_scenes(np.random.default_rng(0), 2000, pairs)
    assert not {s.pair for s in drawn} & set(pairs)
    assert {s.colour for s in drawn} == set(shapes.COLOURS) and {s.shape for s in drawn} == set(shapes.SHAPES)
