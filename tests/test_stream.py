"""The streamed export (`janusweb export --stream`): checkpoints of both layouts give graphs equal to the fp32
model that wrote them; a 7B-wide preset stays within a memory bound derived from its bf16 size; a source that
cannot fit is refused with one line before any work."""

import json
import re
import subprocess
import sys

import pytest

from janusweb.cli import main
from janusweb.export import memory
from janusweb.export.checkpoint import source_config
from janusweb.export.specs import graph_specs
from janusweb.export.validate import Report, check_graph
from janusweb.graphs import GRAPH_NAMES

from checkpoints import tiny_model, write_deepseek_sharded, write_transformers

GB = 1e9


@pytest.fixture(scope="module")
def model():
    return tiny_model(0)


@pytest.mark.parametrize("layout", ["transformers", "deepseek"])
def test_streamed_checkpoint_matches_the_model_that_wrote_it(layout, model, tmp_path):
    writer = write_transformers if layout == "transformers" else write_deepseek_sharded
    folder = writer(model, tmp_path / "ckpt")
    out = tmp_path / "bundle"
    assert main(["--quiet", "export", str(folder), "--stream", "--dtype", "q4", "--fp32-graphs", "--no-fused",
                 "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["export"]["streamed"] and manifest["validation"]["graphs_ok"]
    runs = manifest["validation"]["end_to_end"]["runs"]
    assert runs["q4"]["ok"] and runs["fp32"]["ok"] and set(manifest["graphs"]) == set(GRAPH_NAMES)
    assert all("q4" in g["variants"] for g in manifest["graphs"].values())
    # against the fp32 model itself (not the streamed weights): every graph, every check case
    report = Report()
    for spec in graph_specs(model):
        check_graph(spec, spec.wrapper(model).eval(), out / "onnx" / f"{spec.name}.onnx", report)
    assert report.ok, report.table()
    assert {c.graph for c in report.checks} == set(GRAPH_NAMES)


def test_plan_whole_shortened_streamed_or_refused():
    """Each branch of the plan, forced by the memory figures it is given (nothing allocated): MemAvailable less
    the margin decides, never the machine's total."""
    config = source_config("janus-pro-7b")[0]
    n = memory.needs(config)
    assert n.parameters > 7e9 and n.stream_bytes < 20 * GB < n.whole_bytes(0)  # 7B streams within 20 GB
    room = lambda need: int(need / (1 - memory.MARGIN)) + 1  # noqa: E731  MemAvailable that leaves `need`
    whole = memory.plan("x", config, stream=False, available=room(n.whole_bytes()))
    assert not whole.streamed and whole.image_steps is None and "whole fp32 model in memory" in whole.line
    # the whole model fits, every image step does not: the image check is shortened, the bundle stays the same
    short = memory.plan("x", config, stream=False, available=room(n.whole_bytes(100)))
    assert not short.streamed and 95 <= short.image_steps <= 100 and f"of {n.image_tokens} steps" in short.line
    # a length the user asked for is never shortened: that streams
    assert memory.plan("x", config, stream=False, image_steps=576, available=room(n.whole_bytes(100))).streamed
    # fewer than MIN_IMAGE_STEPS fit: streamed, and the line says why
    streamed = memory.plan("x", config, stream=False, available=room(n.whole_bytes(memory.MIN_IMAGE_STEPS - 1)))
    assert streamed.streamed and "the whole fp32 model needs about" in streamed.line
    assert memory.plan("x", config, stream=True, available=room(n.whole_bytes())).streamed
    assert not memory.plan("x", config, stream=False, validate=False, available=room(n.whole_bytes(0))).streamed
    # the margin is kept: exactly the streamed peak available is not enough
    with pytest.raises(memory.UserError, match=r"needs about 10\.\d GB .* this machine has 10\.\d GB available, "
                                               r"10% of it kept free"):
        memory.plan("x", config, stream=False, available=n.stream_bytes)
    with pytest.raises(memory.UserError, match=r"needs about 10\.\d GB .* this machine has 4\.0 GB available"):
        memory.plan("x", config, stream=False, available=int(4 * GB))
    # int8 variants: the quantized decoder layers (6.8 GB at 7B) are held twice while the fused decoder is checked
    int8 = memory.needs(config, bits=(8,))
    assert 6.5 * GB < int8.quantized_bytes < 7 * GB and n.stream_bytes < int8.stream_bytes < 20 * GB
    assert memory.needs(config, bits=(8,), fused=False).stream_bytes < int8.stream_bytes
    with pytest.raises(memory.UserError, match=r"needs about 16\.\d GB .*quantized decoder layers 6\.8 GB, held 2\.2x, "
                                               r"less with --no-fused.* 12\.0 GB available"):
        memory.plan("x", config, stream=True, available=int(12 * GB), bits=(8,))


def test_busy_machine_streams_and_says_why(tmp_path, monkeypatch, capsys):
    """`janusweb export` where MemAvailable (faked) holds the streamed export but not the whole model: the export
    streams, one progress line says so and why, and the manifest records the same line."""
    config = source_config("tiny")[0]
    n = memory.needs(config)
    monkeypatch.setattr(memory, "mem_available", lambda: int(n.stream_bytes / (1 - memory.MARGIN)) + 1)
    assert n.whole_bytes(memory.MIN_IMAGE_STEPS) > n.stream_bytes  # (tiny: the whole model is not the larger)
    out = tmp_path / "b"
    assert main(["export", "tiny", "--text-steps", "0", "--no-fused", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "streamed (the whole fp32 model needs about" in line]
    assert len(lines) == 1 and "GB available, 10% of it kept free" in lines[0], err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["export"]["streamed"] and manifest["export"]["plan"] == lines[0]


def test_source_that_cannot_fit_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(memory, "mem_available", lambda: int(3 * GB))

    def no_work(*args, **kwargs):
        raise AssertionError("work started")

    monkeypatch.setattr("janusweb.export.driver.open_source", no_work)
    out = tmp_path / "out"
    assert main(["export", "janus-pro-7b", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(r"janus-pro-7b \(7\.41 B parameters\) needs about [\d.]+ GB .*--stream.* "
                                       r"3\.0 GB available", err[0]), err
    assert not out.exists()


def test_streamed_7b_wide_preset_peak_memory(tmp_path):
    """janus-pro-7b-2l: two decoder layers at Janus-Pro-7B's widths (0.76 B parameters, 1.5 GB in bf16), streamed at
    its default dtype q4 (no fp32 language model on disk). The peak resident memory stays below 1.5 GB (the
    runtime) + the bf16 weights once: an export that held the fp32 model (2 x bf16) beside the runtime would fail
    here (measured: 2.66 GB, bound 3.02 GB)."""
    config = source_config("janus-pro-7b-2l")[0]
    bf16 = 2 * memory.needs(config).parameters
    out = tmp_path / "bundle"
    cmd = [sys.executable, "-c", "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)",
           sys.executable, "-m", "janusweb", "export", "janus-pro-7b-2l", "--stream", "--dtype", "q4", "--text-steps",
           "0", "--out", str(out)]  # --text-steps 0: no end-to-end run, which would hold the whole model where it fits
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    peak = int(run.stdout.strip().splitlines()[-1]) * 1024
    bound = memory.BASE_BYTES + bf16
    assert peak <= bound, f"peak {peak / GB:.2f} GB > bound {bound / GB:.2f} GB (bf16 weights {bf16 / GB:.2f} GB)"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["validation"]["graphs_ok"]
    assert not (out / "onnx" / "language_model.onnx").exists() and "files" not in manifest["graphs"]["language_model"]
    assert set(manifest["quantization"]) == {"q4"} and manifest["quantization"]["q4"]["streamed"]
    for name in [*GRAPH_NAMES, "language_model_gqa"]:
        files = manifest["graphs"][name]["variants"]["q4"]["files"]
        assert all((out / rel).stat().st_size == f["bytes"] for rel, f in files.items())
    lm = manifest["graphs"]["language_model"]["variants"]["q4"]
    assert lm["quantization"]["matmul"]["quantized"] == 14 and lm["ops"]["MatMulNBits"] == 14
    assert all(a["cosine"] > 0.98 for a in lm["layerwise_vs_source_weights"].values())
    table = run.stdout
    for layer in (0, 1):
        assert re.search(rf"language_model_q4:hidden_states\s+layers {layer}-{layer},batch_size=3,seq=1,past=17 .* OK",
                         table)
    assert re.search(r"language_model_gqa_q4:hidden_states\s+batch=2,prefill\+4 steps vs language_model_q4 .* OK", table)
    assert "NOT OK" not in table


def test_streamed_quantization_equals_matmulnbits_quantizer(tiny_bundle, tmp_path, monkeypatch):
    """quantize.stream (weights quantized as the file is written) gives the same MatMulNBits weights, scales
    and outputs as onnxruntime's MatMulNBitsQuantizer on the whole graph; the driver takes it above STREAM_BYTES."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from janusweb.quantize import driver, graph_io
    from janusweb.quantize.matmul import quantize_matmuls
    from janusweb.quantize.stream import quantize_streamed
    from janusweb.quantize.targets import target

    src = tiny_bundle / "onnx" / "language_model.onnx"
    files, stats, ops = quantize_streamed(src, tmp_path, "lm_q4", 4, 32)
    whole, whole_stats = quantize_matmuls(graph_io.load(src), 4, 32)
    assert stats.quantized == whole_stats.quantized > 0 and ops["MatMulNBits"] == stats.quantized
    mine = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(files[0])).graph.initializer}
    theirs = {t.name: numpy_helper.to_array(t) for t in whole.graph.initializer}
    quantized = [k for k in theirs if k.endswith(("_Q4", "_scales"))]
    assert len(quantized) == 2 * stats.quantized and all(np.array_equal(mine[k], theirs[k]) for k in quantized)
    spec = next(s for s in graph_specs(tiny_model(0)) if s.name == "language_model")
    args = spec.make_inputs(spec.check_dims[1], __import__("torch").Generator().manual_seed(3))
    feeds = {t.name: a.numpy() for t, a in zip(spec.inputs, args)}
    a = ort.InferenceSession(str(files[0])).run(None, feeds)
    b = ort.InferenceSession(whole.SerializeToString()).run(None, feeds)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    monkeypatch.setattr(driver, "STREAM_BYTES", 0)
    entry = driver.quantize_graph(src, tmp_path, "lm_driver", target("int4"),
                                 {"block_size": 32, "accuracy_level": 0})
    assert entry["quantization"]["streamed"] and entry["quantization"]["matmul"]["quantized"] == stats.quantized


def test_dequantize_is_what_matmulnbits_computes():
    """quantize.stream's dequantized weights (the layer check's reference weights, read from the graph) times an
    input equal
    onnxruntime's MatMulNBits on the packed weights, for both bit widths and a K that is not a whole block."""
    import numpy as np
    import onnx_ir as ir
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from janusweb.quantize.stream import StreamQuantizer

    rng = np.random.default_rng(0)
    for dtype in ("q4", "int8"):
        quant = StreamQuantizer(dtype)
        w, a = rng.standard_normal((100, 24)).astype(np.float32), rng.standard_normal((3, 100)).astype(np.float32)
        graph = helper.make_graph([helper.make_node("MatMul", ["a", "w"], ["y"], name="mm")], "g",
                                  [helper.make_tensor_value_info("a", TensorProto.FLOAT, [3, 100])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 24])],
                                  [numpy_helper.from_array(w, "w")])
        model = ir.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
        assert quant.apply(model)[0].quantized == 1
        proto = ir.to_proto(model)
        assert [n.op_type for n in proto.graph.node] == ["MatMulNBits"]
        y = ort.InferenceSession(proto.SerializeToString()).run(None, {"a": a})[0]
        inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
        packed, scales = inits[f"w_Q{quant.bits}"], inits["w_scales"]
        np.testing.assert_allclose(y, a @ quant.dequantize(packed, scales, 100).T, atol=2e-5)
        assert np.abs(y - a @ w).max() > 1e-3  # it is quantized


def test_streamed_variants_equal_janusweb_quantize(model, tmp_path):
    """`export --stream --dtype q4` (no fp32 language model written) gives the graphs `janusweb export` +
    `janusweb quantize --dtype q4` give from the same checkpoint: every q4 graph, the fused decoder included,
    computes the same outputs; the manifest and config.json record the variants as quantize does."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from janusweb.fused import FusedLanguageModel
    from janusweb.generate import ModelDims

    folder = write_transformers(model, tmp_path / "ckpt")
    whole, streamed = tmp_path / "whole", tmp_path / "streamed"
    assert main(["--quiet", "export", str(folder), "--no-validate", "--out", str(whole)]) == 0
    assert main(["--quiet", "quantize", str(whole), "--dtype", "q4", "--no-report"]) == 0
    assert main(["--quiet", "export", str(folder), "--stream", "--dtype", "q4", "--out", str(streamed)]) == 0
    mw, ms = (json.loads((b / "manifest.json").read_text()) for b in (whole, streamed))
    assert ms["validation"]["graphs_ok"] and not (streamed / "onnx" / "language_model.onnx").exists()
    # the whole tiny model fits: the end-to-end run on language_model_q4 against transformers (32 greedy tokens,
    # every image step) ran and passed
    e2e = ms["validation"]["end_to_end"]["runs"]["q4"]
    assert e2e["ok"] and e2e["text_equal"] and e2e["text_tokens"] == 32 and e2e["image"]["steps"] > 0
    assert set(ms["graphs"]) == set(mw["graphs"]) and "fp32" in ms["graphs"]["language_model"]
    for name, entry in mw["graphs"].items():
        assert set(ms["graphs"][name]["variants"]) == {"q4"}
        assert ms["graphs"][name]["variants"]["q4"]["ops"] == entry["variants"]["q4"]["ops"], name
    config = json.loads((streamed / "config.json").read_text())["transformers.js_config"]
    assert config["dtype"] == {name: "q4" for name in GRAPH_NAMES}
    assert config["use_external_data_format"]["language_model_q4.onnx"] is True
    spec = next(s for s in graph_specs(model) if s.name == "language_model")
    for n, dims in enumerate(spec.check_dims):
        args = spec.make_inputs(dims, torch.Generator().manual_seed(7 + n))
        feeds = {t.name: a.numpy() for t, a in zip(spec.inputs, args)}
        a, b = (ort.InferenceSession(str(d / "onnx" / "language_model_q4.onnx")).run(None, feeds)
                for d in (whole, streamed))
        assert all(np.allclose(x, y, atol=1e-5) for x, y in zip(a, b))
    runtime = json.loads((whole / "config.json").read_text())["janusweb"]
    dims, hidden = ModelDims.from_bundle_config(runtime), runtime["hidden_size"]
    fused = [FusedLanguageModel(d / "onnx" / "language_model_gqa_q4.onnx", dims, capacity=16) for d in (whole, streamed)]
    rng = np.random.default_rng(1)
    past = [np.zeros((1, dims.kv_heads, 0, dims.head_dim), np.float32)] * (2 * dims.layers)
    names = [f"past_key_values.{i}.{kv}" for i in range(dims.layers) for kv in ("key", "value")]
    caches, done = [past, past], 0
    for seq in (5, 1, 1):
        feeds = {"inputs_embeds": rng.standard_normal((1, seq, hidden)).astype(np.float32),
                 "attention_mask": np.ones((1, done + seq), np.int64),
                 "position_ids": np.arange(done, done + seq)[None]}
        outs = [lm.run(feeds | dict(zip(names, cache))) for lm, cache in zip(fused, caches)]
        np.testing.assert_allclose(outs[0][0], outs[1][0], atol=1e-5)
        caches, done = [o[1:] for o in outs], done + seq


def test_outputs_are_the_same_rule_for_both_sources():
    """What is written depends on the arguments and the model's size only: no --dtype writes fp32 (q4 for a
    language model over 16 GB), a --dtype leaves the fp32 language model out unless --fp32-graphs."""
    from janusweb.export.driver import outputs

    tiny, big = source_config("tiny")[0], source_config("janus-pro-7b")[0]
    assert outputs(tiny, None, None) == ((), True) and outputs(big, None, None) == (("q4",), False)
    assert outputs(tiny, ["int8"], None) == (("int8",), False) and outputs(tiny, ["int8"], True) == (("int8",), True)
    assert outputs(big, None, True) == (("q4",), True) and outputs(big, [], None) == ((), True)
    with pytest.raises(memory.UserError, match="--no-fp32-graphs: the language model would be written at no dtype"):
        outputs(tiny, None, False)


def test_export_dtype_names_only_block_quantized_variants(tmp_path, capsys):
    assert main(["export", "tiny", "--stream", "--dtype", "q4,fp16", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--dtype: fp16: export writes the variants int8, q4, int4" in err[0], err
    assert not (tmp_path / "out").exists()


def _keys(x):
    """The key structure of a JSON value (leaves and list items beyond the first left out)."""
    if isinstance(x, dict):
        return {k: _keys(v) for k, v in x.items()}
    return [_keys(v) for v in x[:1]] if isinstance(x, list) else "leaf"


def test_whole_and_streamed_manifests_have_the_same_shape(tmp_path):
    """The same `janusweb export` from the whole model and streamed writes the same files and manifests of the same
    shape: the same keys at every level (graphs and their variants, files, buffers, validation, export). With
    --fp32-graphs and a variant, everything is written: fp32 and q4 language models and fused decoders, and an
    end-to-end run of each."""
    args = ["--quiet", "export", "tiny", "--dtype", "q4", "--fp32-graphs", "--text-steps", "4", "--image-steps", "4"]
    whole, streamed = tmp_path / "whole", tmp_path / "streamed"
    assert main([*args, "--out", str(whole)]) == 0
    assert main([*args, "--stream", "--out", str(streamed)]) == 0
    mw, ms = (json.loads((b / "manifest.json").read_text()) for b in (whole, streamed))
    assert not mw["export"]["streamed"] and ms["export"]["streamed"]
    assert sorted(p.relative_to(whole) for p in whole.rglob("*")) == sorted(p.relative_to(streamed)
                                                                          for p in streamed.rglob("*"))
    assert _keys(mw) == _keys(ms)
    for m in (mw, ms):
        assert m["validation"]["graphs_ok"] and m["validation"]["end_to_end"]["ok"]
        assert set(m["validation"]["end_to_end"]["runs"]) == {"fp32", "q4"}
        assert set(m["graphs"]["language_model_gqa"]["variants"]) == {"q4"} and "files" in m["graphs"]["language_model_gqa"]
