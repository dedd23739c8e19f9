"""`janusweb quantize BUNDLE --dtype {int8,q4,fp16}` (int4: an alias of q4): write `<graph><suffix>.onnx` beside every fp32 graph,
measure it against fp32, and record it in manifest.json and config.json.

Everything is checked before anything is written (janusweb.bundle_check, then every input file's sha256). The
graphs are quantized one at a time (one graph's weights in memory) into a staging folder inside the bundle, together
with the new config.json, the report and the manifest; only then are the files renamed into place, the manifest
last (janusweb.atomic: staging, commit). A failure at any point removes the staging folder and leaves the bundle as
it was; the CLI holds the bundle's lock (janusweb.lock) for the whole run.
"""

import gc
import json
import shutil
import sys
from pathlib import Path

import onnxruntime

from janusweb import manifest as manifests
from janusweb.atomic import check_writable, commit, staging
from janusweb.buffers import record as record_buffers
from janusweb.bundle_check import check_bundle
from janusweb.errors import UserError
from janusweb.fused import REPLACEMENTS
from janusweb.graphs import GRAPH_NAMES
from janusweb.integrity import verify_bundle
from janusweb.log import step
from janusweb.quantize import graph_io
from janusweb.dtypes import DType
from janusweb.manifest import add_files, add_variants, read_json, write_json_atomic
from janusweb.quantize.records import update_config
from janusweb.quantize.report import RANDOM_WEIGHTS_NOTE, Settings, measure
from janusweb.quantize.task_quality import has_task, measure_task
from janusweb.quantize.stream import NBITS, STREAM_BYTES, graph_bytes, quantize_large_graph
from janusweb.quantize.table import table
from janusweb.quantize.targets import quantizer, target

REPORT = "quantize_report.json"
# report field of a graph -> its name in the manifest's variant entry
MANIFEST_FIELDS = {"max_abs_diff": "max_abs_diff_vs_fp32", "cosine": "cosine_vs_fp32",
                   "ids_agreement": "ids_agreement_vs_fp32",
                   "hidden_states_vs_fp32_language_model": "hidden_states_vs_fp32_language_model"}
STAGE = "quantize"  # its staging folder: .quantize.stage-PID-XXXX (janusweb.atomic.staging)


def _check_bundle(bundle: Path) -> tuple:
    """(manifest, config, {graph: fp32 .onnx path}) of a valid fp32 bundle (janusweb.bundle_check, then what
    quantize itself needs), else UserError. The graphs are the manifest's: GRAPH_NAMES plus those that replace one
    of them (the fused WebGPU decoder) when the bundle has them."""
    manifest = check_bundle(bundle, GRAPH_NAMES)
    config = read_json(bundle / "config.json", "config.json")
    sources = {}
    for name, entry in manifest["graphs"].items():
        path = bundle / "onnx" / f"{name}.onnx"
        files = entry.get("files", {})
        if not path.is_file() or f"onnx/{name}.onnx" not in files:
            raise UserError(f"{bundle}: graph file missing: {path.name} (a streamed bundle without fp32 graphs cannot "
                            "be quantized again: export it with another --dtype)")
        if entry.get("dtype", "fp32") != "fp32":
            raise UserError(f"onnx/{path.name} is already quantized (manifest dtype {entry['dtype']}); "
                            "quantize starts from fp32 graphs")
        why = graph_io.is_quantized(graph_io.load(path, with_data=False))
        if why:
            raise UserError(f"onnx/{path.name} is already quantized ({why}); quantize starts from fp32 graphs")
        sources[name] = path
    return manifest, config, sources


def quantize_graph(src: Path, out_dir: Path, stem: str, t: DType, opts: dict) -> dict:
    """One graph: load (weights included), convert with the dtype's quantizer, save. Returns its manifest entry
    (files relative to the staging root)."""
    if t.quantizer == NBITS and graph_bytes(src) > STREAM_BYTES:
        return quantize_large_graph(src, out_dir, stem, t, opts)
    q = quantizer(t)
    model, info = q.convert(graph_io.load(src), t, opts)
    ops = graph_io.op_counts(model)
    forbidden = sorted(set(ops) & graph_io.WEBGPU_FORBIDDEN_OPS)
    if forbidden:
        raise RuntimeError(f"{stem}: quantization produced ops the WebGPU EP lacks: {forbidden}")
    files = graph_io.save(model, out_dir, stem)
    del model
    gc.collect()
    return {"files": [f"onnx/{p.name}" for p in files], "quantization": info, "ops": ops,
            "quantized": q.summary(ops, t), "external_data": len(files) > 1}


def quantize_bundle(bundle: Path, dtype: str, block_size: int | None = None, accuracy_level: int | None = None,
                    settings: Settings | None = None, report: bool = True) -> dict:
    """Quantize every graph of `bundle` to `dtype`; returns the report (also in quantize_report.json)."""
    t = target(dtype)
    opts = quantizer(t).options(t, block_size, accuracy_level)
    bundle = Path(bundle).resolve()
    manifest, config, sources = _check_bundle(bundle)
    verify_bundle(bundle)  # every fp32 graph, config.json, tokenizer.json against the manifest, before reading
    check_writable(bundle / manifests.NAME)
    with staging(bundle, STAGE) as staged:
        result = _stage(bundle, staged, manifest, config, sources, t, dtype, opts, settings, report)
        _commit(bundle, staged, manifest, t)
    return result


def _stage(bundle, staged, manifest, config, sources, t, spelling, opts, settings, report) -> dict:
    (staged / "onnx").mkdir()
    variants = {}
    for k, name in enumerate(sources, 1):
        with step(f"[{k}/{len(sources)}] {spelling} {name}"):
            variants[name] = quantize_graph(sources[name], staged / "onnx", f"{name}{t.suffix}", t, opts)
    shutil.copyfile(bundle / "config.json", staged / "config.json")  # the report's OrtGraphs reads it
    rep = _report(bundle, staged, manifest, variants, t, opts, settings, report)
    for name, v in variants.items():
        v.update({field: rep["graphs"][name][k] for k, field in MANIFEST_FIELDS.items() if k in rep["graphs"][name]})
    run = {"dtype": t.name, "cli": spelling, **opts,
           "onnxruntime": onnxruntime.__version__, "report": REPORT if report else None}
    add_variants(manifest, staged, t.name, variants, run)
    write_json_atomic(staged / "config.json", update_config(
        config, manifest, t.suffix, {name: variants[name]["external_data"] for name in GRAPH_NAMES}))
    reports = read_json(bundle / REPORT, "the report") if (bundle / REPORT).is_file() else {}
    reports[t.name] = rep
    write_json_atomic(staged / REPORT, reports)
    add_files(manifest, staged, ["config.json", REPORT])
    record_buffers(manifest, (staged, bundle))
    manifests.write(staged, manifest)
    sys.stdout.write(table(rep) + "\n")
    return rep


def _report(bundle, staged, manifest, variants, t, opts, settings, run_it) -> dict:
    """Sizes (the total over GRAPH_NAMES: a graph that replaces another is an alternative, not an addition) and,
    when `run_it`, the measured accuracy (a replacing graph's against the fp32 graph it replaces)."""
    fp32_bytes = {name: sum(f["bytes"] for f in manifest["graphs"][name]["files"].values()) for name in variants}
    sizes = {name: sum((staged / rel).stat().st_size for rel in v["files"]) for name, v in variants.items()}
    rep = {"dtype": t.name, **opts,
           "source": manifest.get("source", {}),
           "weights_note": (RANDOM_WEIGHTS_NOTE if manifest.get("source", {}).get("kind") == "preset"
                            else "real checkpoint weights"),
           "bytes": sum(sizes[name] for name in GRAPH_NAMES),
           "fp32_bytes": sum(fp32_bytes[name] for name in GRAPH_NAMES),
           "graphs": {name: {"bytes": sizes[name], "fp32_bytes": fp32_bytes[name],
                             "quantized": variants[name]["quantized"]} for name in variants}}
    if run_it:
        with step(f"accuracy report: {t.name} vs fp32"):
            measured = measure(bundle, staged, t.name, settings)
        for name in GRAPH_NAMES:
            rep["graphs"][name].update(measured["graphs"][name])
        for name in variants:
            replaces = manifest["graphs"][name].get("replaces")
            if replaces:
                rep["graphs"][name].update(_replacement_accuracy(bundle, staged, name, replaces, variants[name]))
        rep["end_to_end"] = measured["end_to_end"]
        rep["settings"] = measured["settings"]
        if has_task(bundle):  # a model trained on the shapes task: what the dtype costs in pictures and answers
            with step(f"task quality: {t.name} vs fp32"):
                rep["task_quality"] = measure_task(bundle, staged, t.name)
    return rep


def _replacement_accuracy(bundle: Path, staged: Path, name: str, replaces: str, variant: dict) -> dict:
    """A quantized replacing graph against the fp32 graph it replaces, with its comparison (janusweb.fused's
    REPLACEMENTS; the fused decoder: hidden states on random embeddings, prefill + 4 steps, batch 1 and 2)."""
    config = json.loads((bundle / "config.json").read_text())["janusweb"]
    main = next(rel for rel in variant["files"] if rel.endswith(".onnx"))
    with step(f"{name}: against the fp32 {replaces}"):
        check = REPLACEMENTS[name](staged / main, bundle / "onnx" / f"{replaces}.onnx", config)
    return {"max_abs_diff": max(c["max_abs_diff"] for c in check.values()),
            f"hidden_states_vs_fp32_{replaces}": check}


def _commit(bundle: Path, staged: Path, manifest: dict, t: DType) -> None:
    """Rename the staged files into the bundle (graphs, then config and report, the manifest last; janusweb.atomic's
    commit: all of them or none) and take out the files of a previous variant of the same dtype that the new one no
    longer has."""
    quantized = [name for name, g in manifest["graphs"].items() if t.name in g.get("variants", {})]
    new = {rel for name in quantized for rel in manifest["graphs"][name]["variants"][t.name]["files"]}
    old = read_json(bundle / manifests.NAME, "the manifest")
    stale = {rel for g in old["graphs"].values() for rel in g.get("variants", {}).get(t.name, {}).get("files", {})}
    stale -= new
    if stale:
        for rel in stale:
            manifest["files"].pop(rel, None)
        manifests.write(staged, manifest)
    commit(bundle, staged, [*sorted(new), "config.json", REPORT, manifests.NAME], remove=sorted(stale))
