"""The numbers of a Janus config checked before any model is built from them: every size a positive whole number,
the divisions the architecture makes exact (heads into the hidden size, key/value heads into heads, patches into
the image, GroupNorm's 32 groups into the VQ channels). transformers checks types but accepts -64, and divides by
0 heads; here each is one line naming the field (UserError, exit 2).

`check_config` takes a JanusConfig, or a transformers-layout config.json as read (`partial`: the fields it leaves
out take transformers' defaults, checked when the JanusConfig exists)."""

from pathlib import Path

from janusweb.errors import UserError

SIZES = {
    "text_config": ("hidden_size", "vocab_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                    "intermediate_size", "max_position_embeddings", "head_dim"),
    "vision_config": ("hidden_size", "num_hidden_layers", "num_attention_heads", "image_size", "patch_size",
                      "projection_dim", "depth", "num_image_tokens"),
    "vq_config": ("embed_dim", "num_embeddings", "base_channels", "latent_channels", "num_res_blocks",
                  "projection_dim", "image_token_embed_dim", "num_hidden_layers"),
}
OPTIONAL = {("text_config", "head_dim")}  # None: hidden_size / num_attention_heads
GROUPS = 32  # the VQ model's GroupNorm groups


def _get(section, field: str):
    return section.get(field) if isinstance(section, dict) else getattr(section, field, None)


def _positive(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _multiple(values: dict, where: str, field: str, of: str, factor=None) -> None:
    """values[field] a multiple of values[of] (times factor); skipped where either is absent."""
    a, b = values.get(field), values.get(of) if of else factor
    if a is not None and b is not None and a % b:
        raise UserError(f"{where}.{field} is {a}, not a multiple of " + (f"{of} ({b})" if of else str(b)))


def check_config(config, path: Path, partial: bool = False) -> None:
    """UserError for the first value of `config` (read from `path`) that no model can be built from."""
    found = {}
    for section, fields in SIZES.items():
        sub = _get(config, section)
        if sub is None and partial:
            continue
        if not isinstance(sub, dict) and partial:
            raise UserError(f"{path}: {section} is {sub!r}, not an object")
        values = found[section] = {}
        for field in fields:
            value = _get(sub, field)
            if value is None and (partial or (section, field) in OPTIONAL):
                continue
            if not _positive(value):
                raise UserError(f"{path}: {section}.{field} is {value!r}, not a positive whole number")
            values[field] = value
    text, vision, vq = (found.get(s, {}) for s in SIZES)
    if "head_dim" not in text:
        _multiple(text, f"{path}: text_config", "hidden_size", "num_attention_heads")
    _multiple(text, f"{path}: text_config", "num_attention_heads", "num_key_value_heads")
    _multiple(vision, f"{path}: vision_config", "hidden_size", "num_attention_heads")
    _multiple(vision, f"{path}: vision_config", "image_size", "patch_size")
    _multiple(vq, f"{path}: vq_config", "base_channels", None, GROUPS)  # GroupNorm's groups
    if {"image_size", "patch_size", "num_image_tokens"} <= vision.keys():
        grid = vision["image_size"] // vision["patch_size"]
        if vision["num_image_tokens"] != grid * grid:
            raise UserError(f"{path}: vision_config.num_image_tokens is {vision['num_image_tokens']}, not "
                            f"(image_size / patch_size)^2 = {grid * grid}")
    mult = _get(_get(config, "vq_config"), "channel_multiplier") if _get(config, "vq_config") is not None else None
    if mult is not None or not partial:
        if not isinstance(mult, (list, tuple)) or not mult or not all(_positive(m) for m in mult):
            raise UserError(f"{path}: vq_config.channel_multiplier is {mult!r}, not a list of positive whole numbers")
    eps = _get(_get(config, "text_config"), "rms_norm_eps") if _get(config, "text_config") is not None else None
    if (eps is not None or not partial) and (isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps <= 0):
        raise UserError(f"{path}: text_config.rms_norm_eps is {eps!r}, not a positive number")
