"""`janusweb pack --engine cpu` (`janusweb cpu-pack`): the CPU engine's weights are the bundle's own graph
initializers byte for byte, and the engine (web/cpu under Node, 1 and 2 threads) on them gives the hidden states
of the fused decoder graph on onnxruntime and the logits of the lm_head graph, fp32 / int8 / q4. Bad input: one
line."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from janusweb.cli import main
from janusweb.dtypes import graph_file
from janusweb.fused import STEM, FusedLanguageModel
from janusweb.generate import ModelDims

pytest.importorskip("ziglang", reason="the kernels are built with PyPI ziglang: pip install -e .")
REPO = Path(__file__).resolve().parent.parent
CHECK = REPO / "tests" / "js" / "cpu_check.mjs"
pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node runs the kernels")


@pytest.fixture(scope="module")
def bundle(tiny_bundle, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cpu") / "bundle"
    shutil.copytree(tiny_bundle, out)
    for dtype in ("int8", "int4"):
        assert main(["--quiet", "quantize", str(out), "--dtype", dtype, "--no-report"]) == 0
    assert main(["--quiet", "cpu-pack", str(out), "--dtype", "fp32,int8,q4"]) == 0
    return out


@pytest.fixture(scope="module")
def wasm(tmp_path_factory) -> Path:
    sys.path.insert(0, str(REPO / "web" / "cpu"))
    from build import build
    return build(tmp_path_factory.mktemp("cpu-wasm"))


def initializers(path: Path) -> dict:
    model = onnx.load(str(path))
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


@pytest.mark.parametrize("dtype", ["fp32", "int8", "q4"])
def test_pack_holds_the_graphs_bytes(bundle, dtype):
    manifest = json.loads((bundle / "manifest.json").read_text())
    desc = json.loads((bundle / manifest["cpu"][dtype]["json"]).read_text())
    parts = [(bundle / rel).read_bytes() for rel in manifest["cpu"][dtype]["parts"]]
    got = lambda name: parts[desc["tensors"][name]["part"]][desc["tensors"][name]["offset"]:][  # noqa: E731
        :desc["tensors"][name]["bytes"]]
    assert desc["source_sha256"] == manifest["files"][graph_file(STEM, dtype)]["sha256"]
    assert desc["lm_head"]["source_sha256"] == manifest["files"][graph_file("lm_head", dtype)]["sha256"]
    head = list(initializers(bundle / graph_file("lm_head", dtype)).values())
    if dtype == "fp32":
        assert got("lm_head") == np.ascontiguousarray(head[0].T).tobytes()
    else:
        q = next(a for a in head if a.dtype == np.uint8)
        s = next(a for a in head if a.dtype == np.float32)
        assert got("lm_head") == q.tobytes() and got("lm_head.scales") == s.tobytes()
    fused = initializers(bundle / graph_file(STEM, dtype))
    layer0 = {n: a for n, a in fused.items() if "layers.0" in n and "qkv" in n}
    want = next(a for a in layer0.values() if a.ndim == (2 if dtype == "fp32" else 3))
    assert got("layers.0.qkv") == (np.ascontiguousarray(want.T) if dtype == "fp32" else want).tobytes()


@pytest.mark.parametrize("dtype", ["fp32", "int8", "q4"])
@pytest.mark.parametrize("threads", [1, 2])
def test_engine_matches_onnxruntime(bundle, wasm, tmp_path, dtype, threads):
    config = json.loads((bundle / "config.json").read_text())["janusweb"]
    dims, H, rows, calls = ModelDims.from_bundle_config(config), config["hidden_size"], 2, [6, 1, 1]
    rng = np.random.default_rng(1)
    embeds = [rng.standard_normal((rows, S, H)).astype(np.float32) for S in calls]
    lm = FusedLanguageModel(bundle / graph_file(STEM, dtype), dims, capacity=sum(calls))
    head = ort.InferenceSession(str(bundle / graph_file("lm_head", dtype)),
                                providers=["CPUExecutionProvider"])
    names = [f"past_key_values.{i // 2}.{('key', 'value')[i % 2]}" for i in range(2 * dims.layers)]
    cache = [np.zeros((rows, dims.kv_heads, 0, dims.head_dim), np.float32)] * len(names)
    want_hidden, want_logits, past = [], [], 0
    for x in embeds:
        S = x.shape[1]
        out = lm.run({"inputs_embeds": x, "attention_mask": np.ones((rows, past + S), np.int64),
                      "position_ids": np.tile(np.arange(past, past + S), (rows, 1)), **dict(zip(names, cache))})
        cache, past = out[1:], past + S
        want_hidden.append(out[0].reshape(-1))
        want_logits.append(head.run(None, {"hidden_states": out[0]})[0].reshape(-1))
    pack = bundle / "cpu" / f"decoder{'' if dtype == 'fp32' else '_' + dtype}"
    (tmp_path / "embeds.bin").write_bytes(b"".join(x.tobytes() for x in embeds))
    for head_too, want in ((False, want_hidden), (True, want_logits)):
        spec = {"wasm": str(wasm / ("kernels.wasm" if threads == 1 else "kernels-mt.wasm")), "op": "decoder",
                "threads": threads, "pack": str(pack), "rows": rows, "capacity": sum(calls), "calls": calls,
                "head": head_too}
        (tmp_path / "spec.json").write_text(json.dumps(spec))
        done = subprocess.run(["node", str(CHECK), str(tmp_path)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        got, ref = np.frombuffer((tmp_path / "out.bin").read_bytes(), np.float32), np.concatenate(want)
        diff = float(np.abs(got - ref).max())
        assert diff <= 1e-4 * float(np.abs(ref).max()), f"NOT OK: max diff {diff:.3g}"


def test_bad_input_is_one_line(bundle, tmp_path, capsys):
    assert main(["cpu-pack", str(bundle), "--dtype", "fp16"]) != 0
    assert "CPU packs are made for fp32, int8, q4" in capsys.readouterr().err
    plain = tmp_path / "plain"
    shutil.copytree(bundle, plain)
    manifest = json.loads((plain / "manifest.json").read_text())
    manifest["graphs"]["lm_head"].pop("variants")
    (plain / "manifest.json").write_text(json.dumps(manifest))
    assert main(["cpu-pack", str(plain), "--dtype", "int8"]) != 0
    assert "no int8 variant of lm_head" in capsys.readouterr().err
