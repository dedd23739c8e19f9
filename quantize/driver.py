"""`janusweb quantize BUNDLE --dtype {int8,int4,fp16}`: write `<graph><suffix>.onnx` beside every fp32 graph,
measure it against fp32, and record it in manifest.json and config.json.

Everything is checked before anything is written. The graphs are quantized one at a time (one graph's weights
in memory) into a temporary folder inside the bundle, together with the new config.json, the report and the
manifest; only then are the files renamed into place, the manifest last. A failure before that point removes
the temporary folder and leaves the bundle as it was.
"""

import gc
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import onnxruntime

from janusweb.errors import UserError
from janusweb.fused import STEM as FUSED
from janusweb.fused import hidden_state_diff
from janusweb.graphs import GRAPH_NAMES
from janusweb.log import log, step
from janusweb.quantize import graph_io
from janusweb.quantize.embedding import quantize_gathers
from janusweb.quantize.fp16 import to_fp16
from janusweb.quantize.matmul import quantize_matmuls
from janusweb.quantize.records import add_files, add_variants, update_config, write_json_atomic
from janusweb.quantize.stream import STREAM_BYTES, graph_bytes, quantize_large_graph
from janusweb.quantize.report import RANDOM_WEIGHTS_NOTE, Settings, measure, table
from janusweb.quantize.targets import Target, check_options, target

REPORT = "quantize_report.json"
# report field of a graph -> its name in the manifest's variant entry
MANIFEST_FIELDS = {"max_abs_diff": "max_abs_diff_vs_fp32", "cosine": "cosine_vs_fp32",
                   "ids_agreement": "ids_agreement_vs_fp32",
                   "hidden_states_vs_fp32_language_model": "hidden_states_vs_fp32_language_model"}
TEMP_PREFIX = ".quantize-"


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot read {what} ({e.__class__.__name__})") from e


def _check_bundle(bundle: Path) -> tuple:
    """(manifest, config, {graph: fp32 .onnx path}) of a valid fp32 bundle, else UserError. The graphs are
    GRAPH_NAMES plus the fused WebGPU decoder when the bundle has it."""
    if not bundle.is_dir():
        raise UserError(f"{bundle} is not a folder")
    if not (bundle / "manifest.json").is_file():
        raise UserError(f"{bundle} has no manifest.json: not a janusweb bundle (write one with `janusweb export`)")
    manifest = _read_json(bundle / "manifest.json", "the manifest")
    config = _read_json(bundle / "config.json", "config.json")
    if "janusweb" not in config or "graphs" not in manifest:
        raise UserError(f"{bundle}: config.json or manifest.json is not a janusweb bundle's")
    missing = [name for name in GRAPH_NAMES if name not in manifest["graphs"]]
    if missing:
        raise UserError(f"{bundle}: manifest.json lacks graphs {', '.join(missing)} (exported by an older "
                        "janusweb? export it again)")
    if not (bundle / "tokenizer.json").is_file():
        raise UserError(f"{bundle} has no tokenizer.json (the accuracy report needs it)")
    sources = {}
    for name in GRAPH_NAMES + ((FUSED,) if FUSED in manifest["graphs"] else ()):
        entry = manifest["graphs"][name]
        path = bundle / "onnx" / f"{name}.onnx"
        files = entry.get("files", {})
        absent = [rel for rel in files if not (bundle / rel).is_file()]
        if not path.is_file() or absent:
            raise UserError(f"{bundle}: graph file missing: {', '.join(absent) or path.name}")
        if entry.get("dtype", "fp32") != "fp32":
            raise UserError(f"onnx/{path.name} is already quantized (manifest dtype {entry['dtype']}); "
                            "quantize starts from fp32 graphs")
        why = graph_io.is_quantized(graph_io.load(path, with_data=False))
        if why:
            raise UserError(f"onnx/{path.name} is already quantized ({why}); quantize starts from fp32 graphs")
        sources[name] = path
    return manifest, config, sources


def _remove_stale_temps(bundle: Path) -> None:
    for old in bundle.glob(f"{TEMP_PREFIX}*"):
        log.info("removing %s left by an interrupted quantize", old.name)
        shutil.rmtree(old) if old.is_dir() else old.unlink()


def _summary(ops: dict, t: Target) -> str:
    if t.bits is None:
        return "fp16 weights and compute, float32 inputs and outputs"
    quantized = {k: v for k, v in ops.items() if k in ("MatMulNBits", "GatherBlockQuantized")}
    return ", ".join(f"{v} {k}" for k, v in quantized.items()) or "nothing to quantize (the fp32 graph)"


def quantize_graph(src: Path, out_dir: Path, stem: str, t: Target, block_size: int | None,
                   accuracy_level: int | None) -> dict:
    """One graph: load (weights included), convert, save. Returns its manifest entry (files relative to the
    staging root)."""
    if t.bits is not None and graph_bytes(src) > STREAM_BYTES:
        return quantize_large_graph(src, out_dir, stem, t, block_size, accuracy_level)
    model = graph_io.load(src)
    if t.bits is None:
        model, info = to_fp16(model)
    else:
        model, mm = quantize_matmuls(model, t.bits, block_size, accuracy_level)
        info = {"bits": t.bits, "block_size": block_size, "symmetric": True, "accuracy_level": accuracy_level or 0,
                "matmul": mm.as_dict(), "gather": quantize_gathers(model, t.bits, block_size).as_dict()}
    ops = graph_io.op_counts(model)
    forbidden = sorted(set(ops) & graph_io.WEBGPU_FORBIDDEN_OPS)
    if forbidden:
        raise RuntimeError(f"{stem}: quantization produced ops the WebGPU EP lacks: {forbidden}")
    files = graph_io.save(model, out_dir, stem)
    del model
    gc.collect()
    return {"files": [f"onnx/{p.name}" for p in files], "quantization": info, "ops": ops,
            "quantized": _summary(ops, t), "external_data": len(files) > 1}


def quantize_bundle(bundle: Path, dtype: str, block_size: int | None = None, accuracy_level: int | None = None,
                    settings: Settings | None = None, report: bool = True) -> dict:
    """Quantize every graph of `bundle` to `dtype`; returns the report (also in quantize_report.json)."""
    t = target(dtype)
    block_size = check_options(t, block_size, accuracy_level)
    bundle = Path(bundle).resolve()
    manifest, config, sources = _check_bundle(bundle)
    _remove_stale_temps(bundle)
    staged = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{t.dtype}.tmp-", dir=bundle))
    try:
        result = _stage(bundle, staged, manifest, config, sources, t, block_size, accuracy_level, settings, report)
        _commit(bundle, staged, manifest, t)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return result


def _stage(bundle, staged, manifest, config, sources, t, block_size, accuracy_level, settings, report) -> dict:
    (staged / "onnx").mkdir()
    variants = {}
    for k, name in enumerate(sources, 1):
        with step(f"[{k}/{len(sources)}] {t.cli} {name}"):
            variants[name] = quantize_graph(sources[name], staged / "onnx", f"{name}{t.suffix}", t, block_size,
                                            accuracy_level)
    shutil.copyfile(bundle / "config.json", staged / "config.json")  # the report's OrtGraphs reads it
    rep = _report(bundle, staged, manifest, variants, t, block_size, accuracy_level, settings, report)
    for name, v in variants.items():
        v.update({field: rep["graphs"][name][k] for k, field in MANIFEST_FIELDS.items() if k in rep["graphs"][name]})
    run = {"dtype": t.dtype, "cli": t.cli, "block_size": block_size, "accuracy_level": accuracy_level or 0,
           "onnxruntime": onnxruntime.__version__, "report": REPORT if report else None}
    add_variants(manifest, staged, t.dtype, variants, run)
    write_json_atomic(staged / "config.json", update_config(
        config, manifest, t.suffix, {name: variants[name]["external_data"] for name in GRAPH_NAMES}))
    reports = _read_json(bundle / REPORT, "the report") if (bundle / REPORT).is_file() else {}
    reports[t.dtype] = rep
    write_json_atomic(staged / REPORT, reports)
    add_files(manifest, staged, ["config.json", REPORT])
    write_json_atomic(staged / "manifest.json", manifest)
    sys.stdout.write(table(rep) + "\n")
    return rep


def _report(bundle, staged, manifest, variants, t, block_size, accuracy_level, settings, run_it) -> dict:
    """Sizes (the total over GRAPH_NAMES: the fused decoder is an alternative to language_model, not an
    addition) and, when `run_it`, the measured accuracy."""
    fp32_bytes = {name: sum(f["bytes"] for f in manifest["graphs"][name]["files"].values()) for name in variants}
    sizes = {name: sum((staged / rel).stat().st_size for rel in v["files"]) for name, v in variants.items()}
    rep = {"dtype": t.dtype, "block_size": block_size, "accuracy_level": accuracy_level or 0,
           "source": manifest.get("source", {}),
           "weights_note": (RANDOM_WEIGHTS_NOTE if manifest.get("source", {}).get("kind") == "preset"
                            else "real checkpoint weights"),
           "bytes": sum(sizes[name] for name in GRAPH_NAMES),
           "fp32_bytes": sum(fp32_bytes[name] for name in GRAPH_NAMES),
           "graphs": {name: {"bytes": sizes[name], "fp32_bytes": fp32_bytes[name],
                             "quantized": variants[name]["quantized"]} for name in variants}}
    if run_it:
        with step(f"accuracy report: {t.dtype} vs fp32"):
            measured = measure(bundle, staged, t.dtype, settings)
        for name in GRAPH_NAMES:
            rep["graphs"][name].update(measured["graphs"][name])
        if FUSED in variants:
            rep["graphs"][FUSED].update(_fused_accuracy(bundle, staged, variants[FUSED]))
        rep["end_to_end"] = measured["end_to_end"]
        rep["settings"] = measured["settings"]
    return rep


def _fused_accuracy(bundle: Path, staged: Path, variant: dict) -> dict:
    """The quantized fused decoder's hidden states against the fp32 language_model.onnx (random embeddings,
    prefill + 4 steps, batch 1 and 2)."""
    config = json.loads((bundle / "config.json").read_text())["janusweb"]
    main = next(rel for rel in variant["files"] if rel.endswith(".onnx"))
    with step(f"{FUSED}: hidden states against the fp32 language_model"):
        check = hidden_state_diff(staged / main, bundle / "onnx" / "language_model.onnx", config)
    return {"max_abs_diff": max(c["max_abs_diff"] for c in check.values()),
            "hidden_states_vs_fp32_language_model": check}


def _commit(bundle: Path, staged: Path, manifest: dict, t: Target) -> None:
    """Rename the staged files into the bundle (graphs, then config and report, the manifest last) and delete
    the files of a previous variant of the same dtype that the new one no longer has."""
    quantized = [name for name, g in manifest["graphs"].items() if t.dtype in g.get("variants", {})]
    new = {rel for name in quantized for rel in manifest["graphs"][name]["variants"][t.dtype]["files"]}
    for rel in sorted(new):
        os.replace(staged / rel, bundle / rel)
    os.replace(staged / "config.json", bundle / "config.json")
    os.replace(staged / REPORT, bundle / REPORT)
    old = json.loads((bundle / "manifest.json").read_text())
    stale = {rel for g in old["graphs"].values() for rel in g.get("variants", {}).get(t.dtype, {}).get("files", {})}
    stale -= new
    for rel in stale:
        manifest["files"].pop(rel, None)
    if stale:
        write_json_atomic(staged / "manifest.json", manifest)
    os.replace(staged / "manifest.json", bundle / "manifest.json")
    for rel in stale:
        (bundle / rel).unlink(missing_ok=True)
