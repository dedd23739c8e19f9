"""The reference generation loops over the Janus graphs (OrtGraphs or TorchGraphs): text after a prompt (greedy,
or sampled from explicit uniform draws), and image generation with classifier-free guidance from explicit uniform
draws.

These loops are the yardstick for export validation, the quantization report and the benchmarks.
"""

from dataclasses import dataclass

import numpy as np

from janusweb.prompts import SpecialIds, unconditional
from janusweb.sampling import cfg_logits, sample


@dataclass(frozen=True)
class ModelDims:
    layers: int
    kv_heads: int
    head_dim: int
    image_size: int
    num_image_tokens: int

    @classmethod
    def from_bundle_config(cls, c: dict) -> "ModelDims":
        return cls(c["num_layers"], c["num_key_value_heads"], c["head_dim"], c["image_size"], c["num_image_tokens"])


class KVCache:
    """past_key_values as numpy arrays, grown by each language_model call."""

    def __init__(self, dims: ModelDims, batch: int):
        empty = np.zeros((batch, dims.kv_heads, 0, dims.head_dim), np.float32)
        self.tensors = [empty] * (2 * dims.layers)

    @property
    def length(self) -> int:
        return int(self.tensors[0].shape[2])

    def feeds(self) -> dict:
        return {f"past_key_values.{i // 2}.{('key', 'value')[i % 2]}": t for i, t in enumerate(self.tensors)}


def _decode_step(graphs, cache: KVCache, embeds: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """One language_model call on `embeds` [B,S,H]; `mask` [B, past+S]; returns hidden states [B,S,H]."""
    seq = embeds.shape[1]
    positions = (np.cumsum(mask, 1) - 1).clip(min=0)[:, -seq:].astype(np.int64)
    out = graphs.run("language_model", {"inputs_embeds": embeds, "attention_mask": mask.astype(np.int64),
                                        "position_ids": positions, **cache.feeds()})
    cache.tensors = out[1:]
    return out[0]


def _no_pixels(dims: ModelDims) -> np.ndarray:
    return np.zeros((1, 0, 3, dims.image_size, dims.image_size), np.float32)


def generate_text(graphs, dims: ModelDims, inputs: dict, max_new_tokens: int, pixel_values=None,
                  eos_id: int | None = None, on_token=None, temperature: float = 0.0,
                  draws: np.ndarray | None = None) -> list:
    """Decoding after a prompt (input_ids, images_seq_mask, images_emb_mask, optional pixel_values [1,N,3,H,W]):
    greedy, or with temperature > 0 token i drawn by sampling.sample at draws[i] (one uniform draw per token, at
    least max_new_tokens of them). Stops after max_new_tokens, or at eos_id when given. Returns the new token ids."""
    if temperature > 0 and (draws is None or len(draws) < max_new_tokens):
        raise ValueError("sampled decoding needs one draw per token (draws of length max_new_tokens)")
    pixels = _no_pixels(dims) if pixel_values is None else pixel_values.astype(np.float32)
    embeds = graphs.run("prepare_inputs_embeds", {
        "input_ids": inputs["input_ids"], "pixel_values": pixels,
        "images_seq_mask": inputs["images_seq_mask"], "images_emb_mask": inputs["images_emb_mask"]})[0]
    cache = KVCache(dims, 1)
    mask = np.ones((1, embeds.shape[1]), np.int64)
    tokens = []
    for i in range(max_new_tokens):
        hidden = _decode_step(graphs, cache, embeds, mask)
        logits = graphs.to_numpy(graphs.run("lm_head", {"hidden_states": hidden[:, -1:]})[0][0, -1])
        token = int(np.argmax(logits) if temperature == 0 else sample(logits[None], draws[i:i + 1], temperature)[0])
        tokens.append(token)
        if on_token:
            on_token(token, logits)
        if token == eos_id:
            break
        ids = np.array([[token]], np.int64)
        embeds = graphs.run("prepare_inputs_embeds", {
            "input_ids": ids, "pixel_values": _no_pixels(dims),
            "images_seq_mask": np.zeros((1, 1), bool),
            "images_emb_mask": np.zeros((1, 0, dims.num_image_tokens), bool)})[0]
        mask = np.ones((1, cache.length + 1), np.int64)
    return tokens


def text_logits(graphs, dims: ModelDims, input_ids: np.ndarray) -> np.ndarray:
    """Teacher-forced next-token logits for every position of a text-only sequence [1,S] -> [S,V]."""
    S = input_ids.shape[1]
    embeds = graphs.run("prepare_inputs_embeds", {
        "input_ids": input_ids, "pixel_values": _no_pixels(dims), "images_seq_mask": np.zeros((1, S), bool),
        "images_emb_mask": np.zeros((1, 0, dims.num_image_tokens), bool)})[0]
    hidden = _decode_step(graphs, KVCache(dims, 1), embeds, np.ones((1, S), np.int64))
    return graphs.to_numpy(graphs.run("lm_head", {"hidden_states": hidden})[0][0])


@dataclass
class ImageResult:
    tokens: np.ndarray  # [n, T] image token ids
    images: np.ndarray  # [n, 3, H, W] in [-1, 1]


def generate_images(graphs, dims: ModelDims, ids: SpecialIds, prompt_ids: np.ndarray, draws: np.ndarray,
                    guidance: float = 5.0, temperature: float = 1.0, on_step=None, forced: np.ndarray | None = None,
                    on_logits=None) -> ImageResult:
    """Janus text-to-image with CFG for n = len(draws) images. Rows [0, n) are conditional, [n, 2n) the
    unconditional prompt. `draws` [n, T] are the uniform numbers that pick each token.

    forced [n, T]: teacher forcing: these tokens are fed back (and decoded) instead of the drawn ones, while
    `tokens` still holds what each step drew. on_logits(step, logits [2n, V]) sees the gen_head's logits."""
    n, T = draws.shape
    rows = np.stack([prompt_ids] * n + [unconditional(prompt_ids, ids)] * n)
    S = rows.shape[1]
    embeds = graphs.run("prepare_inputs_embeds", {
        "input_ids": rows, "pixel_values": np.zeros((2 * n, 0, 3, dims.image_size, dims.image_size), np.float32),
        "images_seq_mask": np.zeros((2 * n, S), bool),
        "images_emb_mask": np.zeros((2 * n, 0, dims.num_image_tokens), bool)})[0]
    cache = KVCache(dims, 2 * n)
    tokens = np.zeros((n, T), np.int64)
    for step in range(T):
        mask = np.ones((2 * n, cache.length + embeds.shape[1]), np.int64)
        hidden = _decode_step(graphs, cache, embeds, mask)
        logits = graphs.to_numpy(graphs.run("gen_head", {"hidden_states": hidden[:, -1:]})[0][:, -1])
        if on_logits:
            on_logits(step, logits)
        chosen = sample(cfg_logits(logits[:n], logits[n:], guidance), draws[:, step], temperature)
        tokens[:, step] = chosen
        if on_step:
            on_step(step + 1, T)
        fed = chosen if forced is None else forced[:, step]
        embeds = graphs.run("gen_img_embeds", {"image_ids": np.concatenate([fed, fed])[:, None]})[0]
    full = np.zeros((n, dims.num_image_tokens), np.int64)  # a shortened run decodes with zeros after it
    full[:, :T] = tokens if forced is None else forced
    images = graphs.to_numpy(graphs.run("image_decode", {"generated_tokens": full})[0])
    return ImageResult(tokens, images)
