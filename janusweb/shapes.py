"""The shapes task: seeded images of one coloured shape on a dark background, with a caption, questions and their
exact answers. It is what the embedded default model is trained on and scored against.

The words are a contract (the model card, the page's default prompts and the scorer speak them):
  colour  red green blue yellow purple white;  shape  circle square triangle cross;
  position  top left, top right, bottom left, bottom right, centre;
  generation prompt  `a {colour} {shape} in the {position}`;
  questions  `What colour is the shape?` -> colour, `What shape is it?` -> shape, `Where is the shape?` -> position,
             `Describe the image.` -> the generation prompt's text.
Some (colour, shape) pairs, chosen by seed, are held out of training altogether (`held_out_pairs`).
"""

import re
from dataclasses import dataclass
from itertools import product

import numpy as np

COLOURS = {"red": (220, 45, 45), "green": (50, 190, 70), "blue": (50, 95, 235), "yellow": (235, 210, 40),
           "purple": (155, 65, 215), "white": (235, 235, 235)}
SHAPES = ("circle", "square", "triangle", "cross")
POSITIONS = ("top left", "top right", "bottom left", "bottom right", "centre")
BACKGROUND = (22, 24, 34)
# Where each position puts the shape's centre, as fractions (x, y) of the image side.
ANCHORS = {"top left": (0.25, 0.25), "top right": (0.75, 0.25), "bottom left": (0.25, 0.75),
           "bottom right": (0.75, 0.75), "centre": (0.5, 0.5)}
QUESTIONS = {"colour": "What colour is the shape?", "shape": "What shape is it?", "position": "Where is the shape?",
             "describe": "Describe the image."}
ATTRIBUTES = ("colour", "shape", "position")

# Shape half-size as a fraction of the image side, and the jitter of size and centre (also fractions).
HALF_SIZE = 0.22
SIZE_JITTER = 0.01
CENTRE_JITTER = 0.01
CROSS_ARM = 0.4  # the cross's arm half-width, as a fraction of its half-size
TRIANGLE_BASE = 0.75  # the triangle's base line below the centre, as a fraction of its half-size (apex at -1)

_PROMPT = re.compile(r"a (\w+) (\w+) in the (.+)")


@dataclass(frozen=True)
class Scene:
    colour: str
    shape: str
    position: str

    @property
    def prompt(self) -> str:
        return f"a {self.colour} {self.shape} in the {self.position}"

    @property
    def pair(self) -> tuple:
        return self.colour, self.shape

    def answer(self, kind: str) -> str:
        """The exact answer to QUESTIONS[kind]."""
        return self.prompt if kind == "describe" else getattr(self, kind)


def all_scenes() -> list:
    """Every scene of the grammar (6 colours x 4 shapes x 5 positions = 120), in a fixed order."""
    return [Scene(c, s, p) for c, s, p in product(COLOURS, SHAPES, POSITIONS)]


def parse_prompt(text: str) -> Scene | None:
    """The scene a generation prompt (or a `Describe the image.` answer) names, or None outside the grammar."""
    m = _PROMPT.fullmatch(text.strip())
    if not m or m[1] not in COLOURS or m[2] not in SHAPES or m[3] not in POSITIONS:
        return None
    return Scene(m[1], m[2], m[3])


def held_out_pairs(seed: int, count: int = 4) -> list:
    """`count` (colour, shape) pairs drawn by seed, no colour and no shape twice, so that every colour and every
    shape is still seen in training with others (count <= 4, the number of shapes)."""
    if not 0 <= count <= len(SHAPES):
        raise ValueError(f"count must be 0..{len(SHAPES)}")
    rng = np.random.default_rng(seed)
    pairs = [(c, s) for c, s in product(COLOURS, SHAPES)]
    chosen = []
    for i in rng.permutation(len(pairs)):
        colour, shape = pairs[i]
        if len(chosen) < count and all(colour != c and shape != s for c, s in chosen):
            chosen.append((colour, shape))
    return sorted(chosen, key=lambda p: (list(COLOURS).index(p[0]), SHAPES.index(p[1])))


def shape_mask(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Inside-ness of points (x, y) in units of the half-size, centred on the shape (y downwards)."""
    if shape == "circle":
        return x * x + y * y <= 1.0
    if shape == "square":
        return (np.abs(x) <= 0.9) & (np.abs(y) <= 0.9)
    if shape == "triangle":  # apex at (0, -1), base from (-1, b) to (1, b)
        height = 1.0 + TRIANGLE_BASE
        return (y <= TRIANGLE_BASE) & (np.abs(x) <= (y + 1.0) / height)
    if shape == "cross":
        inside = (np.abs(x) <= 1.0) & (np.abs(y) <= 1.0)
        return inside & ((np.abs(x) <= CROSS_ARM) | (np.abs(y) <= CROSS_ARM))
    raise ValueError(f"unknown shape {shape!r}")


def draw(scene: Scene, size: int, rng: np.random.Generator, supersample: int = 4) -> np.ndarray:
    """One image [size, size, 3] uint8: the scene's shape, jittered by rng, anti-aliased by supersampling."""
    fx, fy = ANCHORS[scene.position]
    cx = (fx + rng.uniform(-CENTRE_JITTER, CENTRE_JITTER)) * size
    cy = (fy + rng.uniform(-CENTRE_JITTER, CENTRE_JITTER)) * size
    half = (HALF_SIZE + rng.uniform(-SIZE_JITTER, SIZE_JITTER)) * size
    grid = (np.arange(size * supersample) + 0.5) / supersample
    x = (grid[None, :] - cx) / half
    y = (grid[:, None] - cy) / half
    inside = shape_mask(scene.shape, x, y).astype(np.float32)
    cover = inside.reshape(size, supersample, size, supersample).mean((1, 3))[..., None]
    image = (1 - cover) * np.array(BACKGROUND, np.float32) + cover * np.array(COLOURS[scene.colour], np.float32)
    return np.round(image).astype(np.uint8)


def sample_scenes(rng: np.random.Generator, count: int, exclude: list) -> list:
    """`count` scenes drawn uniformly from the grammar, without the (colour, shape) pairs in `exclude`."""
    allowed = [s for s in all_scenes() if s.pair not in set(exclude)]
    return [allowed[i] for i in rng.integers(0, len(allowed), count)]
