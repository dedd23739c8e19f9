"""The end-to-end run of a bundle's language model (export.end_to_end): with its decoder layers made on demand the
model computes what the whole model computes while holding one layer at a time; `janusweb end-to-end` runs it on a
bundle already written (streamed or whole), records it, and fails on a bundle that does not match its source."""

import json

import torch

from janusweb.cli import main
from janusweb.export import end_to_end
from janusweb.export.checkpoint import source_config
from janusweb.export.memory import meta_model
from janusweb.export.weights import PresetStore, layers_on_demand, materialized, real_buffers

GB = 1e9


def _tiny():
    config = source_config("tiny")[0]
    config._attn_implementation = "eager"
    model = meta_model(config)
    real_buffers(model)
    return model, PresetStore(model, 3)


def test_layers_on_demand_equal_the_whole_model_one_layer_at_a_time():
    model, store = _tiny()
    layers = list(model.model.language_model.layers)
    ids = torch.randint(0, model.config.text_config.vocab_size, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), materialized(model, store, {id(p) for p in model.parameters()}):
        whole = model(input_ids=ids).logits
    live = []

    def count(_layer, _args):
        live.append(sum(not next(layer.parameters()).is_meta for layer in layers))

    with torch.no_grad(), layers_on_demand(model, store, layers):
        hooks = [layer.register_forward_pre_hook(count) for layer in layers]  # after the block's own: sees its layer
        assert all(next(layer.parameters()).is_meta for layer in layers)
        assert not model.model.language_model.embed_tokens.weight.is_meta
        on_demand = model(input_ids=ids).logits
        for h in hooks:
            h.remove()
    assert live == [1] * len(layers)
    assert torch.equal(whole, on_demand)
    assert all(p.is_meta for p in model.parameters())


def test_choice_by_memory_on_7b():
    config = source_config("janus-pro-7b")[0]
    model = meta_model(config)
    assert end_to_end.choose(config, model, "/nonexistent", "q4", available=100 * GB)[0] == end_to_end.WHOLE
    assert end_to_end.choose(config, model, "/nonexistent", "q4", available=20 * GB)[0] == end_to_end.ON_DEMAND
    mode, why = end_to_end.choose(config, model, "/nonexistent", "q4", available=4 * GB)
    assert mode is None and "3.6 GB may be used" in why  # 4 GB less the margin
    text, image, why = end_to_end.lengths(end_to_end.ON_DEMAND, 32, None, 576)
    assert (text, image) == (end_to_end.ON_DEMAND_TEXT_STEPS, end_to_end.ON_DEMAND_IMAGE_STEPS) and "32" in why


def test_end_to_end_command_on_a_streamed_bundle(tmp_path, monkeypatch, capsys):
    out = tmp_path / "bundle"
    assert main(["--quiet", "export", "tiny", "--stream", "--dtype", "q4", "--no-fused", "--text-steps", "0",
                 "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["validation"]["end_to_end"]["ok"] is None  # not asked at export
    monkeypatch.setattr(end_to_end, "choose", lambda *a, **k: (end_to_end.ON_DEMAND, None))
    assert main(["--quiet", "end-to-end", str(out)]) == 0
    e2e = json.loads((out / "manifest.json").read_text())["validation"]["end_to_end"]
    assert set(e2e["runs"]) == {"q4"} and e2e["ok"]
    q4 = e2e["runs"]["q4"]
    assert q4["ok"] and q4["text_equal"] and q4["weights"] == end_to_end.ON_DEMAND
    assert q4["text_tokens"] == end_to_end.ON_DEMAND_TEXT_STEPS and q4["image"]["steps"] == 4 and q4["shortened"]
    assert "text tokens equal" in capsys.readouterr().out
    assert main(["--quiet", "end-to-end", str(out), "--dtype", "int8"]) == 2  # a variant the bundle lacks
    assert "no onnx/language_model_int8.onnx" in capsys.readouterr().err
    # the same bundle against another source (the preset's other seed): the run fails, exit 1
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["source"]["seed"] = 1
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert main(["--quiet", "end-to-end", str(out)]) == 1
    e2e = json.loads((out / "manifest.json").read_text())["validation"]["end_to_end"]
    assert e2e["ok"] is False and not e2e["runs"]["q4"]["ok"]


def test_end_to_end_command_on_a_whole_model_bundle(tiny_bundle, tmp_path, capsys):
    """The whole preset is rebuilt (its weights are not the streamed preset's): fp32 passes and is recorded; a
    dtype the bundle lacks is refused in one line."""
    import shutil

    assert main(["--quiet", "end-to-end", str(tiny_bundle)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no onnx/language_model_q4.onnx" in err[0]
    bundle = shutil.copytree(tiny_bundle, tmp_path / "b")
    assert main(["--quiet", "end-to-end", str(bundle), "--dtype", "fp32", "--text-steps", "8", "--image-steps", "8"]) == 0
    fp32 = json.loads((bundle / "manifest.json").read_text())["validation"]["end_to_end"]["runs"]["fp32"]
    assert fp32["ok"] and fp32["weights"] == end_to_end.WHOLE and fp32["text_tokens"] == 8

