"""The bundle's JSON files (config, generation, processor; the manifest is janusweb.manifest's) and the output
folder check.

config.json keeps DeepSeek's `multi_modality` shape (what transformers.js reads) plus a `janusweb` block with
every number the page and the Python runtime need; nothing else is needed to run the graphs.
"""

from pathlib import Path

from transformers import JanusConfig

from janusweb.errors import UserError
from janusweb.prompts import SpecialIds

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def runtime_config(cfg: JanusConfig, ids: SpecialIds) -> dict:
    text, vision, vq = cfg.text_config, cfg.vision_config, cfg.vq_config
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    grid = vision.image_size // vision.patch_size
    return {
        "hidden_size": text.hidden_size, "vocab_size": text.vocab_size, "num_layers": text.num_hidden_layers,
        "num_attention_heads": text.num_attention_heads, "num_key_value_heads": text.num_key_value_heads,
        "head_dim": head_dim, "image_size": vision.image_size, "num_image_tokens": vision.num_image_tokens,
        "image_token_grid": grid, "codebook_size": vq.num_embeddings,
        "decoded_image_size": grid * 2 ** (len(vq.channel_multiplier) - 1),
        "image_token_id": ids.image, "bos_token_id": ids.bos, "eos_token_id": ids.eos, "pad_token_id": ids.pad,
        "boi_token_id": ids.boi, "eoi_token_id": ids.eoi,
    }


def config_json(cfg: JanusConfig, ids: SpecialIds, external: dict) -> dict:
    text, vision, vq = cfg.text_config, cfg.vision_config, cfg.vq_config
    rt = runtime_config(cfg, ids)
    language = {
        "model_type": "llama", "vocab_size": text.vocab_size, "hidden_size": text.hidden_size,
        "intermediate_size": text.intermediate_size, "num_hidden_layers": text.num_hidden_layers,
        "num_attention_heads": text.num_attention_heads, "num_key_value_heads": text.num_key_value_heads,
        "head_dim": rt["head_dim"], "max_position_embeddings": text.max_position_embeddings,
        "rms_norm_eps": text.rms_norm_eps, "bos_token_id": ids.bos, "eos_token_id": ids.eos,
        "pad_token_id": ids.pad,
    }
    return {
        "model_type": "multi_modality",
        "architectures": ["MultiModalityCausalLM"],
        "language_config": language,
        "vision_config": {"cls": "CLIPVisionTower", "model_type": "vision",
                          "params": {"image_size": vision.image_size, "patch_size": vision.patch_size,
                                     "width": vision.hidden_size, "layers": vision.num_hidden_layers}},
        "aligner_config": {"cls": "MlpProjector", "model_type": "aligner",
                           "params": {"depth": vision.depth, "input_dim": vision.hidden_size,
                                      "n_embed": vision.projection_dim, "projector_type": "mlp_gelu"}},
        "gen_vision_config": {"cls": "VQ-16", "model_type": "gen_vision",
                              "params": {"image_token_size": vq.num_embeddings, "n_embed": vq.embed_dim}},
        "gen_aligner_config": {"cls": "MlpProjector", "model_type": "gen_aligner",
                               "params": {"depth": vq.num_hidden_layers, "input_dim": vq.embed_dim,
                                          "n_embed": vq.projection_dim, "projector_type": "mlp_gelu"}},
        "gen_head_config": {"cls": "vision_head", "model_type": "gen_head",
                            "params": {"image_token_embed": vq.image_token_embed_dim,
                                       "image_token_size": vq.num_embeddings, "n_embed": vq.projection_dim}},
        "janusweb": rt,
        "transformers.js_config": {"dtype": "fp32", "kv_cache_dtype": "float32",
                                   "use_external_data_format": external},
    }


def generation_config_json(ids: SpecialIds, num_image_tokens: int) -> dict:
    return {"bos_token_id": ids.bos, "eos_token_id": ids.eos, "pad_token_id": ids.pad, "guidance_scale": 5,
            "temperature": 1.0, "max_new_tokens": num_image_tokens,
            "generation_kwargs": {"boi_token_id": ids.boi, "eoi_token_id": ids.eoi}}


def preprocessor_config_json(image_size: int) -> dict:
    from janusweb import image
    return {"image_processor_type": "VLMImageProcessor", "processor_class": "VLChatProcessor",
            "image_size": image_size, "min_size": image.MIN_SIZE, "background_color": list(image.BACKGROUND),
            "image_mean": list(image.MEAN), "image_std": list(image.STD), "do_normalize": True,
            "rescale_factor": 1 / 255}


def processor_config_json(num_image_tokens: int) -> dict:
    return {"processor_class": "VLChatProcessor", "image_tag": "<image_placeholder>",
            "image_start_tag": "<begin_of_image>", "image_end_tag": "<end_of_image>", "pad_tag": "<｜▁pad▁｜>",
            "num_image_tokens": num_image_tokens, "add_special_token": False, "sft_format": "deepseek",
            "mask_prompt": True, "ignore_id": -100}


def check_output_dir(final: Path) -> None:
    """An output folder may be new, empty or an earlier bundle (replaced); anything else is kept safe."""
    final = Path(final)
    if final.exists() and (not final.is_dir() or (any(final.iterdir()) and not (final / "manifest.json").exists())):
        raise UserError(f"{final} exists and is not a janusweb bundle; refusing to overwrite it")
