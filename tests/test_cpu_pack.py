"""`janusweb pack --engine cpu` (`janusweb cpu-pack`): the CPU engine's weights are the bundle's own graph
initializers byte for byte, and the engine (web/lib/engines/cpu under Node, 1 and 2 threads) on them gives the hidden states
of the fused decoder graph on onnxruntime and the logits of the lm_head graph, fp32 / int8 / q4 (quantized with
--accuracy-level 4: onnxruntime's MatMulNBits then quantizes activations per block of 32 as the kernels do). Bad
input: one line."""

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
from cpu_reference import assert_ties
from janusweb.sampling import cfg_logits, sample, uniforms

pytest.importorskip("ziglang", reason="the kernels are built with PyPI ziglang: pip install -e .")
REPO = Path(__file__).resolve().parent.parent
CHECK = REPO / "tests" / "js" / "cpu_check.mjs"
pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node runs the kernels")


@pytest.fixture(scope="module")
def bundle(tiny_bundle, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cpu") / "bundle"
    shutil.copytree(tiny_bundle, out)
    for dtype in ("int8", "int4"):  # accuracy_level 4: onnxruntime quantizes activations as the CPU engine does
        assert main(["--quiet", "quantize", str(out), "--dtype", dtype, "--accuracy-level", "4", "--no-report"]) == 0
    assert main(["--quiet", "cpu-pack", str(out), "--dtype", "fp32,int8,q4"]) == 0
    return out


@pytest.fixture(scope="module")
def wasm(tmp_path_factory) -> Path:
    sys.path.insert(0, str(REPO / "web" / "lib" / "engines" / "cpu"))
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
    for role, graph in (("embed_tokens", "prepare_inputs_embeds"), ("gen_head", "gen_head"),
                        ("gen_img_embeds", "gen_img_embeds")):
        assert desc[role]["source_sha256"] == manifest["files"][graph_file(graph, dtype)]["sha256"]
    inits = initializers(bundle / graph_file("prepare_inputs_embeds", dtype))
    table = next(a for n, a in inits.items() if "embed_tokens" in n and a.ndim == 2 and a.shape[0] == desc["lm_head"]
                 ["vocab"] and a.dtype == (np.float32 if dtype == "fp32" else np.uint8))
    assert got("embed_tokens") == table.tobytes()
    gen = initializers(bundle / graph_file("gen_head", dtype))
    first = next(a for a in gen.values() if a.ndim == (2 if dtype == "fp32" else 3))
    assert got("gen_head.0") == (np.ascontiguousarray(first.T) if dtype == "fp32" else first).tobytes()
    assert got("gen_head.1.bias") == gen["head.vision_head.bias"].tobytes()
    assert got("gen_img_embeds.table") == initializers(bundle / graph_file("gen_img_embeds", dtype))[
        "embeddings.weight"].tobytes()


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
        if dtype == "fp32":
            diff = float(np.abs(got - ref).max())
            assert diff <= 1e-4 * float(np.abs(ref).max()), f"NOT OK: max diff {diff:.3g}"
        else:  # int8 activations: now and then a rounding tie falls the other way (cpu_reference.assert_ties)
            assert_ties(got, ref)


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


@pytest.mark.parametrize("dtype", ["fp32", "int8", "q4"])
@pytest.mark.parametrize("threads", [1, 2])
def test_heads_match_onnxruntime(bundle, wasm, tmp_path, dtype, threads):
    """Token embeddings = prepare_inputs_embeds (text-only) at the pack's dtype; each image step's tokens = the
    Python reference's rule on gen_head's logits from the same draws, and its next embeddings = gen_img_embeds."""
    config = json.loads((bundle / "config.json").read_text())["janusweb"]
    H, T, n, guidance, temperature, steps = config["hidden_size"], config["num_image_tokens"], 2, 5.0, 1.0, 12
    session = lambda g: ort.InferenceSession(str(bundle / graph_file(g, dtype)),  # noqa: E731
                                             providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(2)
    ids = rng.integers(0, config["vocab_size"], 70).astype(np.int64)
    want = [session("prepare_inputs_embeds").run(None, {
        "input_ids": ids[None], "pixel_values": np.zeros((1, 0, 3, config["image_size"], config["image_size"]),
                                                         np.float32),
        "images_seq_mask": np.zeros((1, len(ids)), bool), "images_emb_mask": np.zeros((1, 0, T), bool)})[0].reshape(-1)]
    hidden = (rng.standard_normal((steps, 2 * n, H)) * 4).astype(np.float32)
    u = uniforms(3, steps * n).reshape(steps, n).astype(np.float32)
    gen_head, gen_img = session("gen_head"), session("gen_img_embeds")
    for s in range(steps):
        logits = gen_head.run(None, {"hidden_states": hidden[s][:, None]})[0][:, 0]
        chosen = sample(cfg_logits(logits[:n], logits[n:], guidance), u[s].astype(np.float64), temperature)
        want += [chosen.astype(np.float32), gen_img.run(None, {"image_ids": chosen[:, None]})[0].reshape(-1)]
    files = {"ids": ids.astype(np.uint32), "hidden": hidden, "u": u}
    for name, array in files.items():
        (tmp_path / f"{name}.bin").write_bytes(array.tobytes())
    spec = {"wasm": str(wasm / ("kernels.wasm" if threads == 1 else "kernels-mt.wasm")), "op": "heads",
            "threads": threads, "pack": str(bundle / "cpu" / f"decoder{'' if dtype == 'fp32' else '_' + dtype}"),
            "n": n, "guidance": guidance, "temperature": temperature}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    done = subprocess.run(["node", str(CHECK), str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    got = np.frombuffer((tmp_path / "out.bin").read_bytes(), np.float32)
    at = 0
    for i, w in enumerate(want):
        part, at = got[at:at + w.size], at + w.size
        if i % 2:  # tokens
            assert part.tolist() == w.tolist(), f"step {i // 2}: tokens {part.tolist()} != {w.tolist()}"
        else:
            diff = float(np.abs(part - w).max())
            assert diff <= (0 if i == 0 else 1e-5) * max(1.0, float(np.abs(w).max())), f"NOT OK part {i}: {diff:.3g}"
    assert at == got.size
