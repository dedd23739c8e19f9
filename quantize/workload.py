"""The accuracy report's fixed workload: settings, prompts, the sample picture, the teacher-forced text, and
one pass of the reference loops over it (greedy text, teacher-forced logits, CFG image)."""

from dataclasses import dataclass, field

import numpy as np
from tokenizers import Tokenizer

from janusweb.generate import ModelDims, generate_images, generate_text, text_logits
from janusweb.log import step
from janusweb.prompts import SpecialIds, generation_prompt, understanding_inputs

QUESTION = "Describe this image in detail."
IMAGE_PROMPT = "A watercolor painting of mountains at sunset."
TEACHER_TEXT = ("Janus is a unified model that understands images and generates them from text. A photo of a cat "
                "sitting on a windowsill in the morning sun, next to a blue cup on a wooden table. ")

@dataclass
class Settings:
    seed: int = 0
    text_steps: int = 64
    teacher_positions: int = 256
    image_steps: int = 576
    calls_per_graph: int = 2  # recorded inputs per graph for the per-graph comparison


@dataclass
class Pass:
    text: list = field(default_factory=list)
    logits: np.ndarray | None = None
    image_tokens: np.ndarray | None = None
    image: np.ndarray | None = None


def sample_image(size: int) -> np.ndarray:
    """A fixed smooth colour picture (gradients and rings), pixel_values [1, 1, 3, size, size] in [-1, 1]."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    r = np.sqrt((x - 0.5) ** 2 + (y - 0.4) ** 2)
    rgb = np.stack([x, 0.5 + 0.5 * np.sin(12 * r), 1 - y * (r < 0.3)])
    return (rgb * 2 - 1)[None, None].astype(np.float32)


def teacher_ids(tok: Tokenizer, positions: int) -> np.ndarray:
    ids = tok.encode(TEACHER_TEXT, add_special_tokens=True).ids
    body = tok.encode(TEACHER_TEXT, add_special_tokens=False).ids
    while len(ids) < positions:
        ids += body
    return np.array([ids[:positions]], np.int64)


def run_pass(graphs, dims: ModelDims, tok: Tokenizer, ids: SpecialIds, s: Settings, draws: np.ndarray,
              label: str) -> Pass:
    p = Pass()
    inputs = understanding_inputs(tok, ids, QUESTION, dims.num_image_tokens)
    with step(f"{label}: greedy text, {s.text_steps} tokens after an image prompt"):
        p.text = generate_text(graphs, dims, inputs, s.text_steps, pixel_values=sample_image(dims.image_size))
    with step(f"{label}: teacher-forced logits, {s.teacher_positions} positions"):
        p.logits = text_logits(graphs, dims, teacher_ids(tok, s.teacher_positions)).astype(np.float64)
    with step(f"{label}: CFG image, {draws.shape[1]} tokens"):
        result = generate_images(graphs, dims, ids, generation_prompt(tok, ids, IMAGE_PROMPT), draws)
    p.image_tokens, p.image = result.tokens, result.images
    return p


def gen_step_feeds(gen_head_calls: list, draws: np.ndarray, tokens: np.ndarray, guidance: float = 5.0) -> list:
    """Inputs of the page's fused gen_step graph for the image steps whose gen_head inputs were recorded: the
    same hidden states ([2n,1,H] -> [2,n,1,H]), all draws [n,T], and the fp32 run's tokens before that step."""
    feeds = []
    n, T = draws.shape
    for k, (head_feeds, _) in enumerate(gen_head_calls):
        hidden = head_feeds["hidden_states"]
        before = np.zeros((n, T), np.float32)
        before[:, :k] = tokens[:, :k]
        feeds.append({"hidden_states": hidden.reshape(2, n, *hidden.shape[1:]), "draws": draws.astype(np.float32),
                      "guidance": np.array([guidance], np.float32), "temperature": np.array([1.0], np.float32),
                      "tokens": before, "step": np.array([float(k)], np.float32)})
    return feeds
