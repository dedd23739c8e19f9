"""The streamed export (`janusweb export --stream`): checkpoints of both layouts give graphs equal to the fp32
model that wrote them; a 7B-wide preset stays within a memory bound derived from its bf16 size; a source that
cannot fit is refused with one line before any work."""

import json
import re
import subprocess
import sys

import pytest

from janusweb.cli import main
from janusweb.export import memory, stream
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
    assert main(["--quiet", "export", str(folder), "--stream", "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["export"]["streamed"] and manifest["validation"]["graphs_ok"]
    assert manifest["validation"]["end_to_end"]["skipped"] and set(manifest["graphs"]) == set(GRAPH_NAMES)
    # against the fp32 model itself (not the streamed weights): every graph, every check case
    report = Report()
    for spec in graph_specs(model):
        check_graph(spec, spec.wrapper(model).eval(), out / "onnx" / f"{spec.name}.onnx", report)
    assert report.ok, report.table()
    assert {c.graph for c in report.checks} == set(GRAPH_NAMES)


def test_plan_whole_streamed_or_refused():
    config = stream.source_config("janus-pro-7b")[0]
    n = memory.needs(config)
    assert n.parameters > 7e9 and n.stream_bytes < 20 * GB < n.whole_bytes  # 7B streams within 20 GB
    assert memory.plan("x", config, stream=False, available=n.stream_bytes, total=n.whole_bytes) is False
    assert memory.plan("x", config, stream=False, available=n.stream_bytes, total=n.whole_bytes - 1) is True
    assert memory.plan("x", config, stream=True, available=n.stream_bytes, total=n.whole_bytes) is True
    with pytest.raises(memory.UserError, match=r"needs about 10\.\d GB .* this machine has 4\.0 GB available"):
        memory.plan("x", config, stream=False, available=int(4 * GB), total=int(24 * GB))


def test_source_that_cannot_fit_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(memory, "mem_available", lambda: int(3 * GB))

    def no_work(*args, **kwargs):
        raise AssertionError("work started")

    monkeypatch.setattr(stream, "export_streamed", no_work)
    monkeypatch.setattr("janusweb.export.driver.load_source", no_work)
    out = tmp_path / "out"
    assert main(["export", "janus-pro-7b", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(r"janus-pro-7b \(7\.41 B parameters\) needs about [\d.]+ GB .*--stream.* "
                                       r"3\.0 GB available", err[0]), err
    assert not out.exists()


def test_streamed_7b_wide_preset_peak_memory(tmp_path):
    """janus-pro-7b-2l: two decoder layers at Janus-Pro-7B's widths (0.76 B parameters, 1.5 GB in bf16). The
    streamed export's peak resident memory stays below 1.5 GB (the runtime) + the bf16 weights once: an export
    that held the fp32 model (2 x bf16) beside the runtime would fail here (measured: 2.66 GB, bound 3.02 GB)."""
    config = stream.source_config("janus-pro-7b-2l")[0]
    bf16 = 2 * memory.needs(config).parameters
    out = tmp_path / "bundle"
    cmd = [sys.executable, "-c", "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)",
           sys.executable, "-m", "janusweb", "export", "janus-pro-7b-2l", "--stream", "--out", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    peak = int(run.stdout.strip().splitlines()[-1]) * 1024
    bound = memory.BASE_BYTES + bf16
    assert peak <= bound, f"peak {peak / GB:.2f} GB > bound {bound / GB:.2f} GB (bf16 weights {bf16 / GB:.2f} GB)"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["validation"]["graphs_ok"]
    table = run.stdout
    for layer in (0, 1):
        assert re.search(rf"language_model:hidden_states\s+layers {layer}-{layer},batch_size=3,seq=1,past=17 .* OK",
                         table)
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
