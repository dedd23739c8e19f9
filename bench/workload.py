"""The `run` scenario's workload: the same prompts, image, seeds and uniform draws for every backend. A text
part (greedy tokens after a question, about a seeded random image or none) and an image part (text-to-image with
CFG from fixed uniform draws); either is left out at 0 tokens / 0 images."""

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

QUESTION = "Describe this image in detail."
PROMPT = "A watercolor painting of mountains at sunset."


@dataclass(frozen=True)
class Workload:
    question: str = QUESTION
    chat_image: bool = True  # the question is about a seeded random image; False: a text-only chat
    image_seed: int = 1
    text_tokens: int = 128  # 0: no text part
    prompt: str = PROMPT
    draw_seed: int = 7
    guidance: float = 5.0
    temperature: float = 1.0
    images: int = 1  # images per request (CFG: twice as many rows); 0: no image part
    image_steps: int | None = None  # None or 0: every token of an image
    repeats: int = 3
    warmup: bool = True


@dataclass
class Inputs:
    """Everything a backend needs to run the workload, built once from the bundle."""
    dims: object  # janusweb.generate.ModelDims
    ids: object  # janusweb.prompts.SpecialIds
    understanding: dict  # input_ids, images_seq_mask, images_emb_mask
    pixel_values: np.ndarray | None  # [1, 1, 3, S, S], janusweb.image.preprocess of image_png; None: text only
    image_png: bytes  # the same image as the page receives it (b"" for a text-only chat)
    prompt_ids: np.ndarray  # [S]
    draws: np.ndarray | None  # [images, steps] uniform draws (image i: draws i*T.. of uniforms(seed, images*T),
    # as the page draws them); None: no image part

    @property
    def steps(self) -> int:
        return 0 if self.draws is None else self.draws.shape[1]


def seeded_draws(w: Workload, T: int) -> np.ndarray:
    """Every draw of the workload's images, [images, T]: image i takes draws i*T.. of uniforms(seed, images*T), as
    the page draws them from the seed."""
    from janusweb.sampling import uniforms
    return uniforms(w.draw_seed, w.images * T).reshape(w.images, T)


def build_inputs(bundle: Path, w: Workload) -> Inputs:
    from PIL import Image
    from tokenizers import Tokenizer

    from janusweb.generate import ModelDims
    from janusweb.image import preprocess
    from janusweb.prompts import SpecialIds, generation_prompt, understanding_inputs

    config = json.loads((Path(bundle) / "config.json").read_text())["janusweb"]
    dims = ModelDims.from_bundle_config(config)
    tok = Tokenizer.from_file(str(Path(bundle) / "tokenizer.json"))
    ids = SpecialIds.from_tokenizer(tok)
    png, pixels = b"", None
    if w.chat_image:
        size = dims.image_size
        rgb = np.random.default_rng(w.image_seed).integers(0, 256, (size * 3 // 4, size, 3), dtype=np.uint8)
        image = Image.fromarray(rgb)
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        png, pixels = buf.getvalue(), preprocess(image, size)[None, None]
    T = dims.num_image_tokens
    steps = min(w.image_steps or T, T)  # a shortened image draws the first `steps` of each image's T draws
    draws = seeded_draws(w, T)[:, :steps] if w.images else None
    return Inputs(dims, ids, understanding_inputs(tok, ids, w.question, dims.num_image_tokens, w.chat_image), pixels,
                  png, generation_prompt(tok, ids, w.prompt), draws)
