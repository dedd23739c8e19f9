"""A model to use from Python: graphs (a bundle's on onnxruntime at one dtype, or a PyTorch model's), its
tokenizer and the one reference loop (janusweb/generate.py). `janusweb generate`, `janusweb chat`, the quality
evaluation and the training's own evaluation all go through it.

Images of one request follow the page's rule: n images from `seed` use the draws uniforms(seed, n * T), image i
the i-th run of T of them, so the command line and the page draw the same pictures for the same seed.
"""

import json
from pathlib import Path

import numpy as np
from PIL import Image
from tokenizers import Tokenizer

from janusweb.errors import UserError
from janusweb.generate import ModelDims, generate_images, generate_text
from janusweb.graphs import GRAPH_NAMES, OrtGraphs
from janusweb.image import preprocess, to_uint8
from janusweb.integrity import verify_bundle
from janusweb.prompts import SpecialIds, generation_prompt, understanding_inputs
from janusweb.sampling import uniforms


def bundle_dtypes(manifest: dict) -> list:
    """The dtypes every graph of the reference loop has in this bundle (fp32 first)."""
    graphs = [manifest["graphs"][g] for g in GRAPH_NAMES if g in manifest["graphs"]]
    names = set.intersection(*(set(g.get("variants", {})) for g in graphs)) if graphs else set()
    return ["fp32", *sorted(names)]


class Runner:
    def __init__(self, graphs, tok: Tokenizer, dims: ModelDims, context: int):
        self.graphs, self.tok, self.dims, self.context = graphs, tok, dims, context
        self.ids = SpecialIds.from_tokenizer(tok)

    @classmethod
    def open(cls, bundle: Path, dtype: str = "fp32") -> "Runner":
        """A bundle's graphs at `dtype` on onnxruntime's CPU provider, its files checked against the manifest."""
        bundle = Path(bundle)
        manifest = verify_bundle(bundle, GRAPH_NAMES, dtype)
        have = bundle_dtypes(manifest)
        if dtype not in have:
            raise UserError(f"{bundle} has no {dtype} variant of its graphs (it has: {', '.join(have)}); "
                            f"write one with `janusweb quantize {bundle} --dtype {dtype}`")
        return cls.over(bundle, bundle, dtype)

    @classmethod
    def over(cls, folder: Path, bundle: Path, dtype: str) -> "Runner":
        """The graphs under `folder` at `dtype` (a bundle, or the staging folder of a variant being written, not
        checked) with `bundle`'s config and tokenizer."""
        config = json.loads((Path(bundle) / "config.json").read_text())
        graphs = OrtGraphs(folder, dtypes={name: dtype for name in GRAPH_NAMES})
        dims = ModelDims.from_bundle_config(config["janusweb"])
        return cls(graphs, Tokenizer.from_file(str(Path(bundle) / "tokenizer.json")), dims,
                   config["language_config"]["max_position_embeddings"])

    def _check_context(self, length: int, what: str) -> None:
        if length > self.context:
            raise UserError(f"{what} needs {length} positions, longer than the model's context of {self.context}")

    def images(self, prompt: str, seed: int, n: int = 1, guidance: float = 5.0, temperature: float = 1.0,
               on_step=None) -> tuple:
        """(image tokens [n, T], images [n, H, W, 3] uint8) for one prompt."""
        T = self.dims.num_image_tokens
        prompt_ids = generation_prompt(self.tok, self.ids, prompt)
        self._check_context(len(prompt_ids) + T, "the prompt with its image tokens")
        draws = uniforms(seed, n * T).reshape(n, T)
        result = generate_images(self.graphs, self.dims, self.ids, prompt_ids, draws, guidance, temperature,
                                 on_step=on_step)
        return result.tokens, np.stack([to_uint8(image) for image in result.images])

    def answer(self, question: str, image: np.ndarray | Image.Image | None = None, max_new_tokens: int = 32,
               on_text=None) -> tuple:
        """(answer text, token ids) to a question about an image (or none), greedy, up to EOS or the context.
        on_text(new_text) streams the answer as it grows."""
        inputs = understanding_inputs(self.tok, self.ids, question, self.dims.num_image_tokens,
                                      with_image=image is not None)
        length = inputs["input_ids"].shape[1]
        self._check_context(length + 1, "the question")
        pixels = None
        if image is not None:
            picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))
            pixels = preprocess(picture, self.dims.image_size)[None, None]
        tokens, shown = [], [""]

        def stream(token, _logits):
            tokens.append(token)
            if on_text:
                text = self.tok.decode([t for t in tokens if t != self.ids.eos]).lstrip()
                if len(text) > len(shown[0]):
                    on_text(text[len(shown[0]):])
                    shown[0] = text

        generate_text(self.graphs, self.dims, inputs, min(max_new_tokens, self.context - length), pixels,
                      eos_id=self.ids.eos, on_token=stream)
        return self.tok.decode([t for t in tokens if t != self.ids.eos]).strip(), tokens
