"""The fixed benchmark workload: the same prompts, image, seeds and uniform draws for every backend."""

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tokenizers import Tokenizer

from janusweb.generate import ModelDims
from janusweb.image import preprocess
from janusweb.prompts import SpecialIds, generation_prompt, understanding_inputs
from janusweb.sampling import uniforms


@dataclass(frozen=True)
class Workload:
    question: str = "Describe this image in detail."
    image_seed: int = 1
    text_tokens: int = 128
    prompt: str = "A watercolor painting of mountains at sunset."
    draw_seed: int = 7
    guidance: float = 5.0
    temperature: float = 1.0
    image_counts: tuple = (1, 4)
    image_steps: int | None = None  # None: every token of an image
    repeats: int = 3


@dataclass
class Inputs:
    """Everything a backend needs to run the workload, built once from the bundle."""
    dims: ModelDims
    ids: SpecialIds
    understanding: dict  # input_ids, images_seq_mask, images_emb_mask
    pixel_values: np.ndarray  # [1, 1, 3, S, S], janusweb.image.preprocess of image_png
    image_png: bytes  # the same image as the page receives it
    prompt_ids: np.ndarray  # [S]
    draws: dict  # image count -> [n, steps] uniform draws

    @property
    def steps(self) -> int:
        return next(iter(self.draws.values())).shape[1]


def build_inputs(bundle: Path, w: Workload) -> Inputs:
    config = json.loads((Path(bundle) / "config.json").read_text())["janusweb"]
    dims = ModelDims.from_bundle_config(config)
    tok = Tokenizer.from_file(str(Path(bundle) / "tokenizer.json"))
    ids = SpecialIds.from_tokenizer(tok)
    size = dims.image_size
    rgb = np.random.default_rng(w.image_seed).integers(0, 256, (size * 3 // 4, size, 3), dtype=np.uint8)
    image = Image.fromarray(rgb)
    png = io.BytesIO()
    image.save(png, format="PNG")
    pixels = preprocess(image, size)[None, None]
    steps = min(w.image_steps or dims.num_image_tokens, dims.num_image_tokens)
    draws = {n: uniforms(w.draw_seed, n * steps).reshape(n, steps) for n in w.image_counts}
    return Inputs(dims, ids, understanding_inputs(tok, ids, w.question, dims.num_image_tokens), pixels,
                  png.getvalue(), generation_prompt(tok, ids, w.prompt), draws)
