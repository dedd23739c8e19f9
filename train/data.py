"""The training data: a fixed, seeded set of task images (held-out pairs never drawn), their pixels as the runtime
preprocesses them, their VQ codes once the VQ is trained, and the two kinds of examples built from them in the
prompt format of janusweb/prompts.py (the same token ids the exported bundle is prompted with):
- understanding: the image and one of the four questions -> the exact answer, closed by EOS (loss on the answer);
- generation: the prompt -> the image's codes (loss on the codes); the prompt dropped to the unconditional row
  (prompts.unconditional) for a share of them, so that classifier-free guidance has a row to push against.
"""

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from tokenizers import Tokenizer

from janusweb.image import preprocess
from janusweb.prompts import SpecialIds, generation_prompt, unconditional, understanding_inputs
from janusweb.shapes import QUESTIONS, draw, sample_scenes

IGNORE = -100


@dataclass
class Images:
    scenes: list
    pixels: torch.Tensor  # [N, 3, H, W] in [-1, 1], as janusweb.image.preprocess gives them
    codes: torch.Tensor | None = None  # [N, T] VQ codes, once the VQ is trained


def draw_images(count: int, size: int, held_out: list, seed: int) -> Images:
    rng = np.random.default_rng(seed)
    scenes = sample_scenes(rng, count, held_out)
    pixels = np.stack([preprocess(Image.fromarray(draw(s, size, rng)), size) for s in scenes])
    return Images(scenes, torch.from_numpy(pixels))


def foreground_weights(pixels: torch.Tensor, weight: float) -> torch.Tensor:
    """[N,1,H,W]: 1 on the background, 1 + weight on and around the shape (the VQ's squared-error weights)."""
    background = pixels[:, :, :1, :1]  # the top-left pixel: every task image's corner is background
    shape = ((pixels - background).abs().amax(1, keepdim=True) > 0.1).float()
    return 1 + weight * torch.nn.functional.max_pool2d(shape, 3, 1, 1)


class Examples:
    """Token sequences of both kinds; each is (input ids, labels) with labels IGNORE outside the answer."""

    def __init__(self, tok: Tokenizer, ids: SpecialIds, num_image_tokens: int):
        self.tok, self.ids, self.tokens = tok, ids, num_image_tokens
        self.kinds = list(QUESTIONS)

    def understanding(self, scene, kind: str) -> tuple:
        prompt = understanding_inputs(self.tok, self.ids, QUESTIONS[kind], self.tokens)["input_ids"][0].tolist()
        answer = self.tok.encode(" " + scene.answer(kind), add_special_tokens=False).ids + [self.ids.eos]
        return prompt + answer, [IGNORE] * len(prompt) + answer

    def generation(self, scene, drop: bool) -> list:
        prompt = generation_prompt(self.tok, self.ids, scene.prompt)
        return (unconditional(prompt, self.ids) if drop else prompt).tolist()


@dataclass
class Batch:
    """Both kinds in one language-model call, left-padded: rows [0, U) understanding, [U, U+G) generation."""
    input_ids: torch.Tensor  # [R, L] (pad where an embedding comes from elsewhere or nothing)
    labels: torch.Tensor  # [U, L] text targets, IGNORE elsewhere
    attention_mask: torch.Tensor  # [R, L]
    pixels: torch.Tensor  # [U, 1, 3, H, W] the understanding rows' images
    image_positions: torch.Tensor  # [R, L] bool: where the understanding images' features go
    codes: torch.Tensor  # [G, T] the generation rows' targets (their first T-1 are fed back as inputs)
    understanding_rows: int
    drops: torch.Tensor  # [G] bool: the generation rows whose prompt is the unconditional row


def make_batch(examples: Examples, images: Images, und: torch.Tensor, kinds: torch.Tensor, gen: torch.Tensor,
               drops: torch.Tensor) -> Batch:
    """und, kinds: image indices and question kinds of the understanding rows; gen, drops: image indices and
    prompt drops of the generation rows. A generation row is its prompt then T-1 image-code slots."""
    ids = examples.ids
    T = images.codes.shape[1]
    rows, labels = [], []
    for i, k in zip(und.tolist(), kinds.tolist()):
        seq, lab = examples.understanding(images.scenes[i], examples.kinds[k])
        rows.append(seq)
        labels.append(lab)
    for i, d in zip(gen.tolist(), drops.tolist()):
        rows.append(examples.generation(images.scenes[i], bool(d)) + [ids.pad] * (T - 1))
    length = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), length), ids.pad, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    target = torch.full((len(labels), length), IGNORE, dtype=torch.long)
    for r, seq in enumerate(rows):
        input_ids[r, length - len(seq):] = torch.tensor(seq)
        mask[r, length - len(seq):] = 1
        if r < len(labels):
            target[r, length - len(seq):] = torch.tensor(labels[r])
    return Batch(input_ids, target, mask, images.pixels[und][:, None], input_ids == ids.image,
                 images.codes[gen], len(labels), drops.bool())
