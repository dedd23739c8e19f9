"""Writers of small Janus checkpoints for tests: seeded random weights, real key names and file formats.

The DeepSeek writer maps transformers names back to DeepSeek's own, written independently of
export.deepseek so that the two check each other.
"""

import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import JanusConfig, JanusForConditionalGeneration

from janusweb.export import presets, tokenizer


def tiny_model(seed: int = 0) -> JanusForConditionalGeneration:
    """The `tiny` preset, with the ids of the tiny tokenizer."""
    ids = tokenizer.special_token_ids(tokenizer.build_tiny_tokenizer(presets.TINY_VOCAB))
    return presets.build_preset("tiny", seed, ids)


def write_transformers(model: JanusForConditionalGeneration, folder: Path) -> Path:
    """transformers layout: config.json, model.safetensors, tokenizer files."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.write_tiny_tokenizer(folder, presets.TINY_VOCAB)
    return folder


def write_deepseek_bin(model: JanusForConditionalGeneration, folder: Path) -> Path:
    """DeepSeek's release layout with one pytorch_model.bin (as Janus-Pro-1B)."""
    _write_deepseek_config(model.config, folder)
    torch.save(to_deepseek(model.state_dict()), folder / "pytorch_model.bin")
    return folder


def write_deepseek_sharded(model: JanusForConditionalGeneration, folder: Path, shards: int = 2) -> Path:
    """DeepSeek's layout with the weights as sharded safetensors plus model.safetensors.index.json."""
    _write_deepseek_config(model.config, folder)
    state = to_deepseek(model.state_dict())
    keys = list(state)
    weight_map = {}
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {key: state[key].contiguous() for key in keys[i::shards]}
        save_file(part, folder / name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, name))
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return folder


def to_deepseek(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers Janus state dict under DeepSeek's names: q, k, v fused, pos_embed [1, N, D], plus the
    tensors DeepSeek's checkpoints hold and transformers drops (attn_pool, codebook_used)."""
    out = {}
    for key, tensor in state.items():
        vision = key.startswith("model.vision_model.")
        if vision and (".self_attn.k_proj." in key or ".self_attn.v_proj." in key):
            continue
        if vision and ".self_attn.q_proj." in key:
            parts = [state[key.replace("q_proj", p)] for p in ("q_proj", "k_proj", "v_proj")]
            out[deepseek_name(key).replace(".q_proj.", ".qkv.")] = torch.cat(parts).clone()
            continue
        if key == "model.vision_model.embeddings.position_embedding.weight":
            tensor = tensor.unsqueeze(0)
        out[deepseek_name(key)] = tensor.clone()
    width = state["model.vision_model.post_layernorm.weight"].shape[0]
    gen = torch.Generator().manual_seed(1)
    out["vision_model.vision_tower.attn_pool.latent"] = torch.randn(1, 1, width, generator=gen)
    out["vision_model.vision_tower.attn_pool.kv.weight"] = torch.randn(2 * width, width, generator=gen)
    out["gen_vision_model.quantize.codebook_used"] = torch.zeros(256)
    return out


def deepseek_name(key: str) -> str:
    """DeepSeek's name of a transformers key (vision q/k/v keep their transformers suffix)."""
    if key == "lm_head.weight":
        return "language_model.lm_head.weight"
    prefixes = {
        "model.language_model.": "language_model.model.",
        "model.vision_model.": "vision_model.vision_tower.",
        "model.aligner.": "aligner.",
        "model.generation_aligner.": "gen_aligner.",
        "model.generation_head.": "gen_head.",
        "model.generation_embeddings.": "gen_embed.",
        "model.vqmodel.": "gen_vision_model.",
    }
    prefix = next(p for p in prefixes if key.startswith(p))
    rest = key[len(prefix):]
    if prefix == "model.vision_model.":
        for new, old in (("embeddings.patch_embedding.", "patch_embed.proj."),
                         ("embeddings.position_embedding.weight", "pos_embed"), ("post_layernorm.", "norm."),
                         ("encoder.layers.", "blocks."), ("self_attn.projection_layer.", "attn.proj."),
                         ("self_attn.", "attn."), ("layer_norm1.", "norm1."), ("layer_norm2.", "norm2.")):
            rest = rest.replace(new, old)
    elif prefix in ("model.aligner.", "model.generation_aligner."):
        rest = rest.replace("fc1.", "layers.0.")
        rest = re.sub(r"^hidden_layers\.(\d+)\.", lambda m: f"layers.{2 * int(m[1]) + 2}.", rest)
    elif prefix == "model.generation_head.":
        rest = rest.replace("proj_out.", "output_mlp_projector.")
    elif prefix == "model.vqmodel.":
        for new, old in (("encoder.down.", "encoder.conv_blocks."), ("decoder.up.", "decoder.conv_blocks."),
                         (".block.", ".res."), ("mid.block_1.", "mid.0."), ("mid.attn_1.", "mid.1."),
                         ("mid.block_2.", "mid.2.")):
            rest = rest.replace(new, old)
    return prefixes[prefix] + rest


def deepseek_config(config: JanusConfig) -> dict:
    """A DeepSeek config.json for the config's sizes: the fields of the real one plus the size overrides."""
    text, vision, vq = config.text_config, config.vision_config, config.vq_config
    return {
        "architectures": ["MultiModalityCausalLM"],
        "model_type": "multi_modality",
        "torch_dtype": "float32",
        "language_config": {
            "hidden_size": text.hidden_size, "intermediate_size": text.intermediate_size,
            "max_position_embeddings": text.max_position_embeddings, "model_type": "llama",
            "num_attention_heads": text.num_attention_heads, "num_hidden_layers": text.num_hidden_layers,
            "num_key_value_heads": text.num_key_value_heads, "torch_dtype": "float32", "vocab_size": text.vocab_size,
        },
        "vision_config": {"cls": "CLIPVisionTower", "model_type": "vision", "params": {
            "image_size": vision.image_size, "model_name": "siglip_large_patch16_384", "select_feature": "same",
            "select_layer": -1, "width": vision.hidden_size, "layers": vision.num_hidden_layers,
            "heads": vision.num_attention_heads, "mlp_ratio": vision.mlp_ratio, "patch_size": vision.patch_size,
        }},
        "aligner_config": {"cls": "MlpProjector", "model_type": "aligner", "params": {
            "depth": vision.depth, "input_dim": vision.hidden_size, "n_embed": vision.projection_dim,
            "projector_type": "mlp_gelu",
        }},
        "gen_vision_config": {"cls": "VQ-16", "model_type": "gen_vision", "params": {
            "image_token_size": vq.num_embeddings, "n_embed": vq.embed_dim, "base_channels": vq.base_channels,
            "latent_channels": vq.latent_channels, "num_res_blocks": vq.num_res_blocks,
            "channel_multiplier": list(vq.channel_multiplier),
        }},
        "gen_aligner_config": {"cls": "MlpProjector", "model_type": "gen_aligner", "params": {
            "depth": vq.num_hidden_layers, "input_dim": vq.embed_dim, "n_embed": vq.projection_dim,
            "projector_type": "mlp_gelu",
        }},
        "gen_head_config": {"cls": "vision_head", "model_type": "gen_head", "params": {
            "image_token_embed": vq.projection_dim, "image_token_size": vq.num_embeddings,
            "n_embed": vq.image_token_embed_dim,
        }},
    }


def _write_deepseek_config(config: JanusConfig, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(deepseek_config(config), indent=2))
    tokenizer.write_tiny_tokenizer(folder, presets.TINY_VOCAB)
