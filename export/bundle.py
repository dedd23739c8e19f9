"""The bundle's JSON files (config, generation, processor, tokenizer; the manifest is janusweb.manifest's), a graph's
manifest entry, and the output folder check: what export.driver writes from either weight source.

config.json keeps DeepSeek's `multi_modality` shape (what transformers.js reads) plus a `janusweb` block with
every number the page and the Python runtime need; nothing else is needed to run the graphs.
"""

import shutil
from pathlib import Path

from transformers import JanusConfig

from janusweb.atomic import check_writable
from janusweb.errors import UserError
from janusweb.export.tokenizer import set_chat_templates
from janusweb.manifest import write_json_atomic
from janusweb.prompts import SpecialIds

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# copied from the checkpoint folder when present: its tokenizer, and the task a trained shapes model was trained on
# (janusweb/quality.py reads its held-out pairs from the bundle)
CARRIED_FILES = TOKENIZER_FILES + ("task.json",)


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
    """An output folder may be new, empty or an earlier bundle (replaced); anything else is kept safe. A path no
    folder can be made at (a name too long, a file on the way, a read-only or foreign folder) is refused before
    any work (janusweb.atomic.check_writable)."""
    final = Path(final)
    if final.exists() and (not final.is_dir() or (any(final.iterdir()) and not (final / "manifest.json").exists())):
        raise UserError(f"{final} exists and is not a janusweb bundle; refusing to overwrite it")
    check_writable(final)


def write_configs(root: Path, cfg: JanusConfig, ids: SpecialIds, tokenizer_dir: Path, external: dict) -> None:
    """The tokenizer files (chat templates named as transformers.js's Janus processor reads them), a trained
    model's task.json, and the JSON files of a bundle being written in `root`. external: graph -> whether its weights are in <graph>.onnx_data."""
    for name in CARRIED_FILES:
        if (Path(tokenizer_dir) / name).is_file():
            shutil.copyfile(Path(tokenizer_dir) / name, root / name)
    set_chat_templates(root / "tokenizer_config.json")
    tokens, size = cfg.vision_config.num_image_tokens, cfg.vision_config.image_size
    contents = {"config.json": config_json(cfg, ids, external),
                "generation_config.json": generation_config_json(ids, tokens),
                "preprocessor_config.json": preprocessor_config_json(size),
                "processor_config.json": processor_config_json(tokens)}
    for name, data in contents.items():
        write_json_atomic(root / name, data)


def _tensors(tensors) -> list:
    return [{"name": t.name, "dims": list(t.dims), "dtype": t.dtype} for t in tensors]


def graph_entry(spec, opset: int, files: dict | None, max_diff: float | None, not_written: str | None = None) -> dict:
    """A traced graph's fp32 entry in the manifest. files: bundle-relative path -> digest (None: not written, and
    `not_written` says why); max_diff: its largest difference from PyTorch (None: not checked)."""
    entry = {"graph": spec.name, "dtype": "fp32", "opset": opset, "inputs": _tensors(spec.inputs),
             "outputs": _tensors(spec.outputs), "tolerance": spec.tolerance}
    if files is None:
        return {**entry, "fp32": not_written}
    return {**entry, "files": files, "bytes": sum(f["bytes"] for f in files.values()),
            "max_abs_diff_vs_pytorch": max_diff}
