"""export.checkpoint and export.deepseek: presets, both checkpoint layouts, and every bad input as a UserError."""

import json
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch
from transformers import JanusForConditionalGeneration

import checkpoints
from janusweb.errors import UserError
from janusweb.export import deepseek, presets, tokenizer
from janusweb.export.checkpoint import check_tensors, load_source, source_config

LAYOUTS = ["transformers", "deepseek-bin", "deepseek-safetensors"]
WRITERS = {"transformers": checkpoints.write_transformers, "deepseek-bin": checkpoints.write_deepseek_bin,
           "deepseek-safetensors": checkpoints.write_deepseek_sharded}


@pytest.fixture(scope="session")
def reference() -> JanusForConditionalGeneration:
    return checkpoints.tiny_model(seed=0)


@pytest.fixture(scope="session")
def folders(tmp_path_factory, reference) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    return {layout: write(reference, root / layout) for layout, write in WRITERS.items()}


@pytest.fixture(scope="session")
def loaded(folders) -> dict:
    return {layout: load_source(str(folder)) for layout, folder in folders.items()}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layout_loads_the_same_weights(layout, loaded, folders, reference):
    source = loaded[layout]
    assert source.description == {"kind": layout.split("-")[0], "path": str(folders[layout].resolve())}
    assert (source.tokenizer_dir / "tokenizer.json").is_file()
    model = source.model
    assert not model.training and model.config._attn_implementation == "eager"
    assert model.config.image_token_id == reference.config.image_token_id
    assert model.config.text_config.pad_token_id == reference.config.text_config.pad_token_id
    got, want = model.state_dict(), reference.state_dict()
    assert got.keys() == want.keys()
    for key, tensor in want.items():
        assert got[key].dtype == torch.float32 and torch.equal(got[key], tensor), key
    for name, buffer in reference.named_buffers():
        assert torch.equal(model.get_buffer(name), buffer), name


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layout_gives_the_same_outputs(layout, loaded, reference):
    model, config = loaded[layout].model, reference.config
    vision = config.vision_config
    gen = torch.Generator().manual_seed(0)
    pixels = torch.randn(1, 3, vision.image_size, vision.image_size, generator=gen)
    ids = torch.tensor([[config.text_config.bos_token_id] + [config.image_token_id] * vision.num_image_tokens
                        + torch.randint(10, 500, (6,), generator=gen).tolist()])
    image_tokens = torch.randint(0, config.vq_config.num_embeddings, (1, config.vq_config.num_patches ** 2),
                                 generator=gen)
    outputs = {}
    for name, m in (("loaded", model), ("reference", reference)):
        with torch.no_grad():
            logits = m(input_ids=ids, pixel_values=pixels).logits
            tokens = m.generate(input_ids=ids, pixel_values=pixels, max_new_tokens=5, do_sample=False)
            image = m.decode_image_tokens(image_tokens)
            image_logits = m.model.generation_head(m.model.generation_aligner(
                m.model.generation_embeddings(image_tokens)))
        outputs[name] = (logits, tokens, image, image_logits)
    for got, want in zip(outputs["loaded"], outputs["reference"]):
        assert torch.equal(got, want)


def test_preset_uses_the_tiny_tokenizer_ids():
    source = load_source("tiny", seed=3)
    try:
        assert source.description == {"kind": "preset", "name": "tiny", "seed": 3}
        assert {p.name for p in source.tokenizer_dir.iterdir()} >= {"tokenizer.json", "tokenizer_config.json"}
        ids = tokenizer.special_token_ids(tokenizer.build_tiny_tokenizer(presets.TINY_VOCAB))
        want = presets.build_preset("tiny", 3, ids).state_dict()
        got = source.model.state_dict()
        assert all(torch.equal(got[k], want[k]) for k in want)
        assert source.model.config.image_token_id == ids["image"]
    finally:
        shutil.rmtree(source.tokenizer_dir)


# The real releases' config.json (deepseek-ai/Janus-Pro-1B and -7B), minus fields that do not matter here.
def _real_config(hidden: int, intermediate: int, heads: int, layers: int) -> dict:
    mlp = {"cls": "MlpProjector", "params": {"depth": 2, "n_embed": hidden, "projector_type": "mlp_gelu"}}
    return {
        "model_type": "multi_modality",
        "language_config": {"hidden_size": hidden, "intermediate_size": intermediate,
                            "max_position_embeddings": 16384, "model_type": "llama", "num_attention_heads": heads,
                            "num_hidden_layers": layers, "num_key_value_heads": heads, "torch_dtype": "bfloat16",
                            "vocab_size": 102400},
        "vision_config": {"cls": "CLIPVisionTower", "params": {
            "image_size": 384, "model_name": "siglip_large_patch16_384", "select_feature": "same", "select_layer": -1}},
        "aligner_config": {**mlp, "params": {**mlp["params"], "input_dim": 1024}},
        "gen_vision_config": {"cls": "VQ-16", "params": {"image_token_size": 16384, "n_embed": 8}},
        "gen_aligner_config": {**mlp, "params": {**mlp["params"], "input_dim": 8}},
        "gen_head_config": {"cls": "vision_head", "params": {"image_token_embed": hidden, "image_token_size": 16384,
                                                             "n_embed": hidden}},
    }


@pytest.mark.parametrize("name, sizes", [("janus-pro-1b", (2048, 5632, 16, 24)),
                                         ("janus-pro-7b", (4096, 11008, 32, 30))])
def test_real_deepseek_config_converts_to_the_preset_architecture(name, sizes):
    ids = {"bos": 100000, "eos": 100001, "pad": 100015, "image": 100581}
    with torch.device("meta"):
        converted = JanusForConditionalGeneration(deepseek.janus_config(_real_config(*sizes), ids))
        preset = JanusForConditionalGeneration(presets.janus_config(presets.SHAPES[name], ids))
    want = {k: tuple(t.shape) for k, t in preset.state_dict().items()}
    assert {k: tuple(t.shape) for k, t in converted.state_dict().items()} == want
    # DeepSeek's names of every tensor (as the test writer produces them) convert to exactly the model's keys.
    names = deepseek.convert_state_dict(checkpoints.to_deepseek(preset.state_dict()).items())
    check_tensors({k: tuple(t.shape) for k, t in names.items()}, converted, "the converted names")


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])


def _set(section: str, key: str, value):
    return lambda cfg: cfg[section].__setitem__(key, value)


def _drop_deepseek_tensor(folder: Path) -> None:
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    del state["gen_head.vision_head.bias"]
    torch.save(state, folder / "pytorch_model.bin")


class _RunsCode:
    """Unpickled, it would create the file `ran` beside the checkpoint."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def _code_pickle(path: Path, zipped: bool = False) -> None:
    state = {"gen_head.vision_head.bias": torch.zeros(2), "x": _RunsCode(path.parent / "ran")}
    if zipped:
        torch.save(state, path)
    else:
        path.write_bytes(pickle.dumps(state, protocol=2))


def _shard_name(folder: Path, name) -> None:
    _edit_json(folder / "model.safetensors.index.json",
               lambda index: index["weight_map"].__setitem__(next(iter(index["weight_map"])), name))


# (case, layout to damage or None for an empty folder, damage, expected fragment of the message)
BAD_INPUTS = [
    ("no config", None, lambda f: None, "has no config.json"),
    ("wrong model_type", None, lambda f: (f / "config.json").write_text('{"model_type": "llama"}'),
     "model_type 'llama' is not a Janus checkpoint (expected 'janus' or 'multi_modality')"),
    ("unparsable config", None, lambda f: (f / "config.json").write_text('{"model_type": '), "cannot parse"),
    ("no weights", "transformers", lambda f: (f / "model.safetensors").unlink(), "no weights in"),
    ("no weights", "deepseek-bin", lambda f: (f / "pytorch_model.bin").unlink(), "no weights in"),
    ("missing shard", "deepseek-safetensors", lambda f: (f / "model-00002-of-00002.safetensors").unlink(),
     "is missing"),
    ("truncated safetensors", "transformers", lambda f: _truncate(f / "model.safetensors"),
     "corrupt or truncated weights file"),
    ("truncated shard", "deepseek-safetensors", lambda f: _truncate(f / "model-00001-of-00002.safetensors"),
     "corrupt or truncated weights file"),
    ("truncated bin", "deepseek-bin", lambda f: _truncate(f / "pytorch_model.bin"),
     "corrupt or truncated weights file"),
    ("shape mismatch", "transformers",
     lambda f: _edit_json(f / "config.json", _set("text_config", "intermediate_size", 96)), "do not match config.json"),
    ("shape mismatch", "deepseek-bin",
     lambda f: _edit_json(f / "config.json", _set("language_config", "intermediate_size", 96)),
     "do not match config.json"),
    ("missing tensor", "deepseek-bin", _drop_deepseek_tensor, "lack 1 tensor(s)"),
    ("no tokenizer", "transformers", lambda f: (f / "tokenizer.json").unlink(), "has no tokenizer.json"),
    ("no tokenizer", "deepseek-bin", lambda f: (f / "tokenizer.json").unlink(), "has no tokenizer.json"),
    ("bad config value", "deepseek-bin",
     lambda f: _edit_json(f / "config.json", lambda c: c["vision_config"]["params"].__setitem__("model_name", "vit_x")),
     "vision tower 'vit_x' is not supported"),
    ("negative size", "transformers", lambda f: _edit_json(f / "config.json", _set("text_config", "hidden_size", -64)),
     "text_config.hidden_size is -64, not a positive whole number"),
    ("size not a number", "transformers",
     lambda f: _edit_json(f / "config.json", _set("text_config", "hidden_size", "abc")), "text_config.hidden_size is 'abc'"),
    ("zero heads", "transformers", lambda f: _edit_json(f / "config.json", _set("text_config", "num_attention_heads", 0)),
     "text_config.num_attention_heads is 0"),
    ("heads not dividing", "transformers",
     lambda f: _edit_json(f / "config.json", _set("text_config", "num_attention_heads", 3)),
     "num_attention_heads is 3, not a multiple of num_key_value_heads (4)"),
    ("vq channels", "transformers", lambda f: _edit_json(f / "config.json", _set("vq_config", "base_channels", 48)),
     "vq_config.base_channels is 48, not a multiple of 32"),
    ("zero heads", "deepseek-bin",
     lambda f: _edit_json(f / "config.json", _set("language_config", "num_attention_heads", 0)),
     "language_config.num_attention_heads is 0"),
    ("image size not a number", "deepseek-safetensors",
     lambda f: _edit_json(f / "config.json", lambda c: c["vision_config"]["params"].__setitem__("image_size", "big")),
     "vision_config.params.image_size is 'big'"),
    ("not a checkpoint", "deepseek-bin", lambda f: (f / "pytorch_model.bin").write_text("root:x:0:0:root:/root:/bin/sh\n"),
     "is not a PyTorch checkpoint"),
    ("pickle that runs code", "deepseek-bin", lambda f: _code_pickle(f / "pytorch_model.bin"),
     "holds objects other than tensors, which janusweb does not load"),
    ("zip pickle that runs code", "deepseek-bin", lambda f: _code_pickle(f / "pytorch_model.bin", zipped=True),
     "holds objects other than tensors, which janusweb does not load"),
    ("index outside the folder", "deepseek-safetensors", lambda f: _shard_name(f, "../../../../etc/passwd"),
     "names '../../../../etc/passwd' as a shard"),
    ("index absolute", "deepseek-safetensors", lambda f: _shard_name(f, "/etc/passwd"), "names '/etc/passwd' as a shard"),
    ("index of another kind", "deepseek-safetensors", lambda f: _shard_name(f, "weights.bin"),
     "names 'weights.bin' as a shard"),
    ("index not a name", "deepseek-safetensors", lambda f: _shard_name(f, 7), "names 7 as a shard"),
]


@pytest.mark.parametrize("case, layout, damage, message", BAD_INPUTS,
                         ids=[f"{case}-{layout or 'folder'}" for case, layout, *_ in BAD_INPUTS])
def test_bad_checkpoint_is_a_one_line_user_error(case, layout, damage, message, folders, tmp_path):
    folder = tmp_path / "ckpt"
    if layout:
        shutil.copytree(folders[layout], folder)
    else:
        folder.mkdir()
    damage(folder)
    with pytest.raises(UserError) as error:
        load_source(str(folder))
    assert message in str(error.value) and "\n" not in str(error.value)
    assert "weights_only" not in str(error.value)  # never the advice to load a pickle whole
    assert not (folder / "ran").exists()
    if "config" in case or "size" in case or "heads" in case or "channels" in case:
        with pytest.raises(UserError, match=re.escape(message)):  # the streamed export reads configs alike
            source_config(str(folder))


def test_hub_id_and_missing_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="is not a local folder; janusweb never downloads: download the checkpoint"):
        load_source("deepseek-ai/Janus-Pro-1B")
    with pytest.raises(UserError, match="no such folder"):
        load_source(str(tmp_path / "nowhere"))
