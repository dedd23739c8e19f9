"""The end-to-end run of a streamed bundle (export.end_to_end): with its decoder layers made on demand the model
computes what the whole model computes while holding one layer at a time; `janusweb end-to-end` runs it on a
bundle already written, records it, and fails on a bundle that does not match its source."""

import json

import torch

from janusweb.cli import main
from janusweb.export import end_to_end, stream
from janusweb.export.memory import meta_model
from janusweb.export.weights import PresetStore, layers_on_demand, materialized

GB = 1e9


def _tiny():
    config = stream.source_config("tiny")[0]
    config._attn_implementation = "eager"
    model = meta_model(config)
    stream.real_buffers(model)
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
    config = stream.source_config("janus-pro-7b")[0]
    model = meta_model(config)
    quant = type("Q", (), {"name": "q4"})()
    assert end_to_end.choose(config, model, "/nonexistent", quant, available=100 * GB)[0] == end_to_end.WHOLE
    assert end_to_end.choose(config, model, "/nonexistent", quant, available=20 * GB)[0] == end_to_end.ON_DEMAND
    mode, why = end_to_end.choose(config, model, "/nonexistent", quant, available=4 * GB)
    assert mode is None and "4.0 GB are available" in why
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
    assert set(e2e) == {"q4"}
    q4 = e2e["q4"]
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
    assert not json.loads((out / "manifest.json").read_text())["validation"]["end_to_end"]["q4"]["ok"]


def test_end_to_end_command_refuses_a_whole_model_bundle(tiny_bundle, capsys):
    assert main(["--quiet", "end-to-end", str(tiny_bundle)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not written by the streamed export" in err[0]

