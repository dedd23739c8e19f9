"""The model to export: a preset, a transformers Janus checkpoint, or DeepSeek's original Janus-Pro layout.

Local folders only: janusweb never downloads. Every bad input ends in a one-line UserError, raised before the
expensive part of loading where the files allow it.
"""

import json
import logging
import pickle
import re
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub.errors import StrictDataclassError
from safetensors import SafetensorError, safe_open
from tokenizers import Tokenizer
from transformers import JanusConfig, JanusForConditionalGeneration

from janusweb.atomic import private_temp_dir
from janusweb.errors import UserError
from janusweb.export import deepseek, presets, tokenizer
from janusweb.export.config_check import check_config
from janusweb.log import step

log = logging.getLogger("janusweb")

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
# Tensors that older saves hold and that transformers recomputes; it ignores them too.
IGNORED_UNEXPECTED = re.compile(r"rotary_emb\.inv_freq$|(^|\.)position_ids$")
SINGLE_FILES = ("model.safetensors", "pytorch_model.bin")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
TOKENIZER_PREFIX = "janusweb-tokenizer-"  # a preset's tokenizer folder under $TMPDIR (janusweb.atomic)


@dataclass
class Source:
    model: JanusForConditionalGeneration  # fp32, eval(), config._attn_implementation == "eager"
    tokenizer_dir: Path  # holds tokenizer.json (+ tokenizer_config.json, special_tokens_map.json)
    description: dict  # {"kind": "preset"|"transformers"|"deepseek", "name" or "path", "seed" for presets}


def load_source(source: str, seed: int = 0) -> Source:
    """A preset name (`tiny`, `janus-pro-1b`, `janus-pro-7b`) or a local checkpoint folder of either layout.

    For presets, tokenizer_dir is a fresh temporary folder that the caller deletes.
    """
    if source in presets.SHAPES:
        return _load_preset(source, seed)
    config, description, folder = source_config(source)
    load = _load_transformers if description["kind"] == "transformers" else _load_deepseek
    return Source(load(folder, config), folder, description)


def source_config(source: str) -> tuple:
    """(JanusConfig, the manifest's `source` description, folder or None for a preset) of a preset or checkpoint,
    from its config and tokenizer files and the weight files' headers only (no weight is read)."""
    if source in presets.SHAPES:
        ids = tokenizer.special_token_ids(tokenizer.build_tiny_tokenizer(presets.TINY_VOCAB))
        return presets.janus_config(presets.SHAPES[source], ids), {"kind": "preset", "name": source}, None
    folder = _local_folder(source)
    raw = read_json(folder / "config.json")
    if raw.get("model_type") == "janus":
        config = _janus_config(folder, lambda: JanusConfig.from_pretrained(folder, local_files_only=True))
        return config, {"kind": "transformers", "path": str(folder)}, folder
    if raw.get("model_type") == "multi_modality":
        ids = read_token_ids(folder)
        has_head = "language_model.lm_head.weight" in tensor_shapes(weight_files(folder, other_names=True))
        config = _janus_config(folder, lambda: deepseek.janus_config(raw, ids, has_head))
        return config, {"kind": "deepseek", "path": str(folder)}, folder
    raise UserError(f"{folder / 'config.json'}: model_type {raw.get('model_type')!r} is not a Janus checkpoint "
                    "(expected 'janus' or 'multi_modality')")


def _load_preset(name: str, seed: int) -> Source:
    tokenizer_dir = private_temp_dir(TOKENIZER_PREFIX)
    try:
        tok = tokenizer.write_tiny_tokenizer(tokenizer_dir, presets.TINY_VOCAB)
        model = presets.build_preset(name, seed, tokenizer.special_token_ids(tok))
    except BaseException:
        shutil.rmtree(tokenizer_dir)
        raise
    return Source(model, tokenizer_dir, {"kind": "preset", "name": name, "seed": seed})


def _local_folder(source: str) -> Path:
    path = Path(source).expanduser()
    if not path.exists():
        if HUB_ID.fullmatch(source):
            raise UserError(f"{source!r} is not a local folder; janusweb never downloads: "
                            "download the checkpoint first and pass its path")
        raise UserError(f"no such folder: {source} (presets: {', '.join(presets.SHAPES)})")
    if not path.is_dir():
        raise UserError(f"{source} is a file; pass the checkpoint folder")
    if not (path / "config.json").is_file():
        raise UserError(f"{source} has no config.json: not a checkpoint folder")
    return path.resolve()


def _load_transformers(folder: Path, config: JanusConfig) -> JanusForConditionalGeneration:
    _tokenizer(folder)
    files = weight_files(folder, other_names=False)
    with torch.device("meta"):
        skeleton = JanusForConditionalGeneration(config)
    check_tensors(tensor_shapes(files), skeleton, f"the weights in {folder}")
    del skeleton
    with step(f"load the transformers checkpoint {folder}"):
        model, info = JanusForConditionalGeneration.from_pretrained(
            folder, local_files_only=True, dtype=torch.float32, attn_implementation="eager",
            output_loading_info=True)
    problems = [f"{kind} {sorted(keys)[:3]}" for kind, keys in info.items() if keys and kind != "unexpected_keys"]
    if problems:
        raise UserError(f"transformers could not load {folder}: {'; '.join(problems)}")
    return model.eval()


def _load_deepseek(folder: Path, config: JanusConfig) -> JanusForConditionalGeneration:
    files = weight_files(folder, other_names=True)
    shapes = tensor_shapes(files)
    config._attn_implementation = "eager"
    with torch.device("meta"):
        model = JanusForConditionalGeneration(config)
    # The conversion runs on meta tensors first: a mismatch is reported before any weight is read.
    meta = ((key, torch.empty(shape, device="meta")) for key, shape in shapes.items())
    converted = {key: tuple(t.shape) for key, t in deepseek.convert_state_dict(meta).items()}
    check_tensors(converted, model, f"the weights in {folder}")
    with step(f"load the DeepSeek checkpoint {folder}"):
        state = deepseek.convert_state_dict(iter_tensors(files))
        result = model.load_state_dict(state, strict=False, assign=True)
        del state
    tied = set(model.all_tied_weights_keys) if config.tie_word_embeddings else set()
    if set(result.missing_keys) - tied or result.unexpected_keys:
        raise RuntimeError(f"internal error: load_state_dict disagrees with the key check: {result}")
    if tied:
        model.tie_weights()
    _materialize_buffers(model)
    return model.eval()


def _janus_config(folder: Path, make) -> JanusConfig:
    """make() with the config errors of transformers (it validates types) as UserError, then the values checked
    (export.config_check) before any model is built from them."""
    raw = read_json(folder / "config.json")
    if raw.get("model_type") == "janus":  # transformers' own checks would divide by 0 heads
        check_config(raw, folder / "config.json", partial=True)
    try:
        config = make()
    except (ValueError, TypeError, KeyError, AttributeError, ArithmeticError, StrictDataclassError) as e:
        raise UserError(f"{folder / 'config.json'} is not a valid Janus config: {_one_line(e)}") from e
    check_config(config, folder / "config.json")
    return config


def _materialize_buffers(model: torch.nn.Module) -> None:
    """Recompute the non-persistent buffers (rotary frequencies, position ids) that the meta build left empty."""
    for module in model.modules():
        names = [n for n in module._non_persistent_buffers_set
                 if module._buffers.get(n) is not None and module._buffers[n].is_meta]
        if names:
            for name in names:
                module._buffers[name] = torch.empty_like(module._buffers[name], device="cpu")
            model._init_weights(module)
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"internal error: {left[0]} is still on the meta device after loading")


def check_tensors(found: dict[str, tuple], model: torch.nn.Module, where: str) -> None:
    """UserError unless `found` (name -> shape) covers the model's state dict exactly, shapes included."""
    expected = {key: tuple(t.shape) for key, t in model.state_dict().items()}
    tied = set(model.all_tied_weights_keys) if model.config.tie_word_embeddings else set()
    missing = sorted(expected.keys() - found.keys() - tied)
    unexpected = sorted(k for k in found.keys() - expected.keys() if not IGNORED_UNEXPECTED.search(k))
    mismatched = sorted(k for k in expected.keys() & found.keys() if tuple(found[k]) != expected[k])
    if mismatched:
        key = mismatched[0]
        raise UserError(f"{where} do not match config.json: {key} has shape {list(found[key])}, config.json "
                        f"implies {list(expected[key])} ({len(mismatched)} tensor(s) differ)")
    if missing:
        raise UserError(f"{where} lack {len(missing)} tensor(s) that config.json implies, e.g. {missing[0]}")
    if unexpected:
        raise UserError(f"{where} hold {len(unexpected)} tensor(s) that a Janus model does not have, "
                        f"e.g. {unexpected[0]}")


def weight_files(folder: Path, other_names: bool) -> list[Path]:
    """The files that hold a checkpoint's tensors: one file, or the shards an index names.

    other_names: besides transformers' file names, accept any `*.safetensors` (+ `*.safetensors.index.json`).
    """
    for single, index in zip(SINGLE_FILES, INDEX_FILES):
        if (folder / single).is_file():
            return [folder / single]
        if (folder / index).is_file():
            return _shards(folder / index)
    if other_names:
        indexes = sorted(folder.glob("*.safetensors.index.json"))
        if len(indexes) == 1:
            return _shards(indexes[0])
        if files := sorted(folder.glob("*.safetensors")):
            return files
    raise UserError(f"no weights in {folder}: expected {' or '.join(SINGLE_FILES)} "
                    f"(or a sharded {' or '.join(INDEX_FILES)})")


def _shards(index: Path) -> list[Path]:
    """The shard files an index names: each a plain file name beside the index, of the index's own kind (a file
    there may be a symbolic link, as in the Hugging Face cache's snapshots)."""
    weight_map = read_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise UserError(f"{index} has no weight_map")
    kind = index.name.removesuffix(".index.json").rpartition(".")[2]  # safetensors, or bin
    shards = []
    for name in sorted(set(weight_map.values()), key=str):
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", "..") or \
                not name.endswith(f".{kind}"):
            raise UserError(f"{index} names {name!r} as a shard: not a .{kind} file beside the index "
                            "(shards are read from the checkpoint folder only)")
        shards.append(index.parent / name)
    for shard in shards:
        if not shard.is_file():
            raise UserError(f"{shard.name}, named by {index}, is missing")
    return shards


def tensor_shapes(files: list[Path]) -> dict[str, tuple]:
    """Name -> shape of every tensor, from the safetensors headers or memory-mapped .bin files (no data read)."""
    shapes = {}
    for file in files:
        if file.suffix == ".safetensors":
            with _open_safetensors(file) as handle:
                shapes.update({key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()})
        else:
            shapes.update({key: tuple(t.shape) for key, t in _torch_load(file).items()})
    return shapes


def iter_tensors(files: list[Path]) -> Iterator[tuple[str, torch.Tensor]]:
    """Every (name, tensor) of the files, one at a time (.bin files are memory-mapped)."""
    for file in files:
        if file.suffix == ".safetensors":
            with _open_safetensors(file) as handle:
                for key in handle.keys():
                    yield key, handle.get_tensor(key)
        else:
            yield from _torch_load(file).items()


def _open_safetensors(file: Path):
    try:
        return safe_open(str(file), framework="pt", device="cpu")
    except (SafetensorError, OSError) as e:
        raise UserError(f"corrupt or truncated weights file {file}: {_one_line(e)}") from e


def _torch_load(file: Path) -> dict[str, torch.Tensor]:
    """A .bin state dict, read with torch's weights-only unpickler (nothing in the file can run)."""
    with open(file, "rb") as f:
        head = f.read(4)
    zipped = head == b"PK\x03\x04"  # torch.save's zip format (memory-mapped); the legacy one is a pickle
    if not zipped and head[:1] != b"\x80":
        raise UserError(f"{file} is not a PyTorch checkpoint (neither torch.save's zip format nor a pickle)")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True, mmap=zipped)
    except pickle.UnpicklingError as e:
        raise UserError(f"{file} holds objects other than tensors, which janusweb does not load (a pickle can run "
                        "code); only a plain state dict of tensors is read") from e
    except (RuntimeError, OSError, EOFError, IndexError, KeyError, ValueError, TypeError, AttributeError,
            zipfile.BadZipFile) as e:
        raise UserError(f"corrupt or truncated weights file {file}: {_one_line(e)}") from e
    if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise UserError(f"{file} does not hold a plain state dict of tensors")
    return state


def read_token_ids(folder: Path) -> dict[str, int]:
    """bos, eos, pad and image (`<image_placeholder>`) ids, from the folder's tokenizer files."""
    tok = _tokenizer(folder)
    names = {"pad": tokenizer.PAD, "image": tokenizer.IMAGE}
    for file in ("tokenizer_config.json", "special_tokens_map.json"):  # the second one wins
        if (folder / file).is_file():
            data = read_json(folder / file)
            for role in ("bos", "eos", "pad"):
                value = data.get(f"{role}_token")
                value = value.get("content") if isinstance(value, dict) else value
                if isinstance(value, str):
                    names[role] = value
    ids = {}
    for role in ("bos", "eos", "pad", "image"):
        if role not in names:
            raise UserError(f"{folder}: neither special_tokens_map.json nor tokenizer_config.json names a {role}_token")
        ids[role] = tok.token_to_id(names[role])
        if ids[role] is None:
            raise UserError(f"{folder / 'tokenizer.json'} has no token {names[role]!r} (the {role} token)")
    return ids


def _tokenizer(folder: Path) -> Tokenizer:
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise UserError(f"{folder} has no tokenizer.json")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # the tokenizers library raises plain Exception
        raise UserError(f"{path} is not a readable tokenizer: {_one_line(e)}") from e


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"cannot parse {path}: {_one_line(e)}") from e
    if not isinstance(data, dict):
        raise UserError(f"{path} does not hold a JSON object")
    return data


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
