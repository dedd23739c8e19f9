"""Built-in model presets: `tiny` (the embedded default, seconds to export) and the real Janus-Pro shapes.

Presets carry random weights drawn from a seed: exports of them are for tests and benchmarks, where speed
and numerics do not depend on the weight values.
"""

from dataclasses import dataclass

import torch
from transformers import JanusConfig, JanusForConditionalGeneration

from janusweb.errors import UserError


@dataclass(frozen=True)
class Shapes:
    vocab_size: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    image_size: int
    codebook: int
    vq_base_channels: int
    vq_latent_channels: int
    vq_res_blocks: int
    patch: int = 16  # the vision tower's patch side; the VQ's grid is the same, so it downsamples by it
    max_positions: int = 16384


TINY_VOCAB = 512  # the size of the tokenizer built by export.tokenizer for `tiny`

SHAPES = {
    "tiny": Shapes(TINY_VOCAB, 64, 128, 2, 4, 4, 64, 2, 4, 64, 256, 32, 64, 1),
    "janus-pro-1b": Shapes(102400, 2048, 5632, 24, 16, 16, 1024, 24, 16, 384, 16384, 128, 256, 2),
    "janus-pro-7b": Shapes(102400, 4096, 11008, 30, 32, 32, 1024, 24, 16, 384, 16384, 128, 256, 2),
    # Two decoder layers at Janus-Pro-7B's widths, a small vocabulary and vision tower: the streamed export's test.
    "janus-pro-7b-2l": Shapes(16384, 4096, 11008, 2, 32, 32, 1024, 2, 16, 64, 16384, 128, 256, 2),
}


def janus_config(s: Shapes, token_ids: dict) -> JanusConfig:
    patch = s.patch
    levels = patch.bit_length()  # a 2**(levels - 1) downsampling VQ: the multipliers' tail of [1, 1, 2, 2, 4]
    text = dict(
        model_type="llama", vocab_size=s.vocab_size, hidden_size=s.hidden, intermediate_size=s.intermediate,
        num_hidden_layers=s.layers, num_attention_heads=s.heads, num_key_value_heads=s.kv_heads,
        max_position_embeddings=s.max_positions, rms_norm_eps=1e-6, hidden_act="silu", tie_word_embeddings=False,
        bos_token_id=token_ids["bos"], eos_token_id=token_ids["eos"], pad_token_id=token_ids["pad"],
    )
    vision = dict(
        hidden_size=s.vision_hidden, num_hidden_layers=s.vision_layers, num_attention_heads=s.vision_heads,
        image_size=s.image_size, patch_size=patch, projection_dim=s.hidden, depth=2,
        num_image_tokens=(s.image_size // patch) ** 2,
    )
    vq = dict(
        embed_dim=8, num_embeddings=s.codebook, base_channels=s.vq_base_channels,
        latent_channels=s.vq_latent_channels, num_res_blocks=s.vq_res_blocks,
        channel_multiplier=[1, 1, 2, 2, 4][:levels],
        projection_dim=s.hidden, image_token_embed_dim=s.hidden, num_hidden_layers=2,
    )
    return JanusConfig(text_config=text, vision_config=vision, vq_config=vq,
                       image_token_id=token_ids["image"], tie_word_embeddings=False)


def build_preset(name: str, seed: int, token_ids: dict) -> JanusForConditionalGeneration:
    """A model of the preset's shapes with seeded random weights, in eval mode, fp32."""
    if name not in SHAPES:
        raise UserError(f"unknown preset {name!r}; presets: {', '.join(SHAPES)}")
    config = janus_config(SHAPES[name], token_ids)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    with torch.device("meta"):
        model = JanusForConditionalGeneration(config)
    model = model.to_empty(device="cpu")
    _init_random(model, seed)
    return model.eval()


@torch.no_grad()
def _init_random(model: torch.nn.Module, seed: int) -> None:
    """Seeded weights with sane scales: norms at 1, biases small, matrices ~ N(0, 1/fan_in)."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if p.ndim == 1:
            fill = 1.0 if ("norm" in name and name.endswith("weight")) else 0.0
            p.fill_(fill)
            if fill == 0.0:
                p.add_(torch.randn(p.shape, generator=gen) * 0.02)
        else:
            fan_in = p[0].numel()
            p.copy_(torch.randn(p.shape, generator=gen) * fan_in ** -0.5)
    # `to_empty` left the computed (non-persistent) buffers uninitialised: recompute them.
    for module in model.modules():
        if hasattr(module, "compute_default_rope_parameters"):
            inv_freq, _ = module.compute_default_rope_parameters(module.config)
            module.inv_freq.copy_(inv_freq)
            module.original_inv_freq.copy_(inv_freq)
        if isinstance(getattr(module, "position_ids", None), torch.Tensor):
            module.position_ids.copy_(torch.arange(module.position_ids.shape[-1]).expand_as(module.position_ids))
