"""DeepSeek's original Janus-Pro layout (`model_type: multi_modality`) as a transformers config and state dict.

Pure conversion, no file access (export.checkpoint reads the files). DeepSeek's code fixes the SigLIP and VQ
architectures by name; the `params` of config.json may override those defaults, so that small checkpoints in
this layout can exist for tests.
"""

import logging
import re
from collections.abc import Callable, Iterable

import torch
from transformers import JanusConfig

from janusweb.errors import UserError

log = logging.getLogger("janusweb")

# DeepSeek's `create_siglip_vit` and `VQ_16` defaults, by name.
VISION_TOWERS = {"siglip_large_patch16_384": {"width": 1024, "layers": 24, "heads": 16, "mlp_ratio": 4,
                                              "patch_size": 16}}
GEN_VISION_MODELS = {"VQ-16": {"base_channels": 128, "channel_multiplier": [1, 1, 2, 2, 4],
                               "latent_channels": 256, "num_res_blocks": 2}}

# Keys of the DeepSeek checkpoint that no part of the transformers model uses.
DROPPED = re.compile(r"^vision_model\.vision_tower\.attn_pool\.|^gen_vision_model\.quantize\.codebook_used$"
                     r"|\.rotary_emb\.inv_freq$")
QKV = re.compile(r"^(model\.vision_model\.encoder\.layers\.\d+\.self_attn\.)qkv\.(weight|bias)$")
POS_EMBED = "model.vision_model.embeddings.position_embedding.weight"


def janus_config(raw: dict, token_ids: dict, has_lm_head: bool = True) -> JanusConfig:
    """The JanusConfig of a DeepSeek config.json; token_ids: bos, eos, pad, image (from the tokenizer files)."""
    lang = _section(raw, "language_config")
    vision, aligner = _params(raw, "vision_config"), _params(raw, "aligner_config")
    gen_vision, gen_aligner, gen_head = (_params(raw, name) for name in
                                         ("gen_vision_config", "gen_aligner_config", "gen_head_config"))
    if raw["vision_config"].get("cls", "CLIPVisionTower") != "CLIPVisionTower":
        raise UserError(f"config.json: vision tower class {raw['vision_config']['cls']!r} is not supported")
    tower = _named_defaults(VISION_TOWERS, _need(vision, "model_name", "vision_config.params"), "vision tower", vision)
    vq = _named_defaults(GEN_VISION_MODELS, _need(raw["gen_vision_config"], "cls", "gen_vision_config"),
                         "gen_vision model", gen_vision)
    text = _text_config(lang, token_ids, has_lm_head)
    hidden = text["hidden_size"]
    _check_projector(aligner, "aligner_config", tower["width"], hidden)
    code_dim = _count(gen_vision, "n_embed", "gen_vision_config.params")
    _check_projector(gen_aligner, "gen_aligner_config", code_dim, hidden)
    # transformers' generation head is Linear(image_token_embed_dim -> projection_dim) then -> num_embeddings, and
    # projection_dim is also the generation aligner's width: DeepSeek's gen_head must agree with gen_aligner.
    image_token_embed = _count(gen_head, "image_token_embed", "gen_head_config.params")
    if image_token_embed != gen_aligner["n_embed"]:
        raise UserError(f"config.json: gen_head_config image_token_embed {image_token_embed} differs from "
                        f"gen_aligner_config n_embed {gen_aligner['n_embed']}; transformers' Janus needs them equal")
    codebook = _count(gen_vision, "image_token_size", "gen_vision_config.params")
    if _count(gen_head, "image_token_size", "gen_head_config.params") != codebook:
        raise UserError("config.json: gen_head_config and gen_vision_config disagree on image_token_size")

    image_size, patch = _count(vision, "image_size", "vision_config.params"), tower["patch_size"]
    if image_size % patch:
        raise UserError(f"config.json: image_size {image_size} is not a multiple of the patch size {patch}")
    vision_config = dict(
        hidden_size=tower["width"], num_hidden_layers=_selected_layers(tower["layers"], vision.get("select_layer", -1)),
        num_attention_heads=tower["heads"], mlp_ratio=float(tower["mlp_ratio"]), patch_size=patch,
        image_size=image_size, num_image_tokens=(image_size // patch) ** 2,
        projection_dim=aligner["n_embed"], depth=aligner["depth"],
    )
    vq_config = dict(
        embed_dim=code_dim, num_embeddings=codebook, base_channels=vq["base_channels"],
        channel_multiplier=list(vq["channel_multiplier"]), latent_channels=vq["latent_channels"],
        num_res_blocks=vq["num_res_blocks"], projection_dim=gen_aligner["n_embed"],
        num_hidden_layers=gen_aligner["depth"],
        image_token_embed_dim=_need(gen_head, "n_embed", "gen_head_config.params"),
    )
    return JanusConfig(text_config=text, vision_config=vision_config, vq_config=vq_config,
                       image_token_id=token_ids["image"], tie_word_embeddings=not has_lm_head)


def convert_key(key: str) -> str | None:
    """The transformers name of a DeepSeek tensor name; None for tensors that are dropped.

    Names this table does not know come back unchanged (the caller reports them as unexpected). The fused
    `...self_attn.qkv.*` names are split by convert_state_dict.
    """
    if DROPPED.search(key):
        return None
    for pattern, replacement in _RULES:
        if pattern.match(key):
            return pattern.sub(replacement, key, count=1)
    return key


def convert_state_dict(tensors: Iterable[tuple[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Rename, split q/k/v and squeeze pos_embed, one tensor at a time; values become fp32 tensors of their own."""
    out: dict[str, torch.Tensor] = {}
    dropped = 0
    for key, tensor in tensors:
        name = convert_key(key)
        if name is None:
            dropped += 1
            continue
        if qkv := QKV.match(name):
            if tensor.shape[0] % 3:
                raise UserError(f"tensor {key!r} of shape {list(tensor.shape)} is not a fused q, k, v")
            for part, chunk in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0)):
                out[f"{qkv[1]}{part}.{qkv[2]}"] = _fp32(chunk)
            continue
        if name == POS_EMBED and tensor.ndim == 3 and tensor.shape[0] == 1:
            tensor = tensor[0]
        out[name] = _fp32(tensor)
    log.debug("converted %d DeepSeek tensors, dropped %d unused ones", len(out), dropped)
    return out


def _fp32(tensor: torch.Tensor) -> torch.Tensor:
    # copy=True: never share memory with a memory-mapped file or with the fused tensor it was cut from.
    return tensor.to(torch.float32, copy=True).contiguous()


def _vq(match: re.Match) -> str:
    rest = re.sub(r"^(encoder|decoder)\.conv_blocks\.",
                  lambda m: f"{m[1]}.{'down' if m[1] == 'encoder' else 'up'}.", match[1])
    rest = re.sub(r"\.res\.(\d+)\.", r".block.\1.", rest)
    rest = re.sub(r"\.mid\.([012])\.", lambda m: f".mid.{('block_1', 'attn_1', 'block_2')[int(m[1])]}.", rest)
    return f"model.vqmodel.{rest}"


def _mlp_projector(prefix: str) -> Callable[[re.Match], str]:
    """DeepSeek's `mlp_gelu` projector is Sequential(Linear, GELU, Linear, ...): Linear k sits at layers.{2k}."""
    def rename(match: re.Match) -> str:
        index = int(match[1])
        if index % 2:
            return match[0]  # an activation has no weights: leave the name as unexpected
        layer = "fc1" if index == 0 else f"hidden_layers.{index // 2 - 1}"
        return f"{prefix}.{layer}.{match[2]}"
    return rename


_TOWER = r"^vision_model\.vision_tower\."
_BLOCK = _TOWER + r"blocks\.(\d+)\."
_LAYER = r"model.vision_model.encoder.layers.\1."
_RULES = [(re.compile(pattern), replacement) for pattern, replacement in [
    (_TOWER + r"pos_embed$", POS_EMBED),
    (_TOWER + r"patch_embed\.proj\.(weight|bias)$", r"model.vision_model.embeddings.patch_embedding.\1"),
    (_TOWER + r"norm\.(weight|bias)$", r"model.vision_model.post_layernorm.\1"),
    (_BLOCK + r"attn\.qkv\.(weight|bias)$", _LAYER + r"self_attn.qkv.\2"),
    (_BLOCK + r"attn\.proj\.(weight|bias)$", _LAYER + r"self_attn.projection_layer.\2"),
    (_BLOCK + r"norm([12])\.(weight|bias)$", _LAYER + r"layer_norm\2.\3"),
    (_BLOCK + r"mlp\.(fc[12])\.(weight|bias)$", _LAYER + r"mlp.\2.\3"),
    (r"^aligner\.layers\.(\d+)\.(weight|bias)$", _mlp_projector("model.aligner")),
    (r"^gen_aligner\.layers\.(\d+)\.(weight|bias)$", _mlp_projector("model.generation_aligner")),
    (r"^gen_head\.output_mlp_projector\.(weight|bias)$", r"model.generation_head.proj_out.\1"),
    (r"^gen_head\.vision_head\.(weight|bias)$", r"model.generation_head.vision_head.\1"),
    (r"^gen_embed\.weight$", "model.generation_embeddings.weight"),
    (r"^gen_vision_model\.(.+)$", _vq),
    (r"^language_model\.model\.(.+)$", r"model.language_model.\1"),
    (r"^language_model\.lm_head\.weight$", "lm_head.weight"),
]]


def _text_config(lang: dict, token_ids: dict, has_lm_head: bool) -> dict:
    if lang.get("model_type", "llama") != "llama":
        raise UserError(f"config.json: language model type {lang['model_type']!r} is not supported (expected 'llama')")
    unused = {"torch_dtype", "dtype", "architectures", "transformers_version", "_name_or_path"}
    text = {k: v for k, v in lang.items() if k not in unused}
    for field in ("hidden_size", "vocab_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
        _count(text, field, "language_config")
    text.update(model_type="llama", bos_token_id=token_ids["bos"], eos_token_id=token_ids["eos"],
                pad_token_id=token_ids["pad"], tie_word_embeddings=not has_lm_head)
    return text


def _check_projector(params: dict, where: str, input_dim: int, output_dim: int) -> None:
    kind = params.get("projector_type", "mlp_gelu")
    if kind != "mlp_gelu":
        raise UserError(f"config.json: {where} projector_type {kind!r} is not supported (expected 'mlp_gelu')")
    for field, expected in (("input_dim", input_dim), ("n_embed", output_dim), ("depth", None)):
        value = _count(params, field, f"{where}.params")
        if expected is not None and value != expected:
            raise UserError(f"config.json: {where} {field} is {value}, but the model around it needs {expected}")


def _selected_layers(layers: int, select_layer: int) -> int:
    """DeepSeek builds only the tower blocks up to `select_layer` (-1: all of them)."""
    return min(layers, layers + select_layer + 1) if select_layer <= 0 else min(layers, select_layer)


def _named_defaults(table: dict, name: str, what: str, params: dict) -> dict:
    if name not in table:
        raise UserError(f"config.json: {what} {name!r} is not supported (known: {', '.join(table)})")
    return {key: params.get(key, default) for key, default in table[name].items()}


def _section(raw: dict, name: str) -> dict:
    section = raw.get(name)
    if not isinstance(section, dict):
        raise UserError(f"config.json has no {name!r} section")
    return section


def _params(raw: dict, name: str) -> dict:
    params = _section(raw, name).get("params")
    if not isinstance(params, dict):
        raise UserError(f"config.json: {name} has no 'params'")
    if name == "vision_config" and params.get("select_feature", "same") != "same":
        raise UserError(f"config.json: vision select_feature {params['select_feature']!r} is not supported")
    return params


def _need(section: dict, key: str, where: str):
    if key not in section:
        raise UserError(f"config.json: {where} lacks {key!r}")
    return section[key]


def _count(section: dict, key: str, where: str) -> int:
    """A size: present and a positive whole number."""
    value = _need(section, key, where)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise UserError(f"config.json: {where}.{key} is {value!r}, not a positive whole number")
    return value
