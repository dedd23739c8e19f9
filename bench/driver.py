"""`janusweb bench`: the same workload on every backend asked for, one report."""

import datetime
import json
import os
import platform
import shutil
from pathlib import Path

import onnxruntime as ort
import torch

from janusweb.bench import native, report, tjs
from janusweb.bench.loops import measure
from janusweb.bench.timing import timed
from janusweb.bench.parity import parity
from janusweb.bench.workload import Workload, build_inputs
from janusweb.env import versions
from janusweb.errors import UserError
from janusweb.export.checkpoint import load_source
from janusweb.graphs import GRAPH_NAMES, OrtGraphs
from janusweb.log import log, step

BACKENDS = ("webgpu", "wasm", "native-cuda", "native-cpu", "ort-cpu", "ort-cuda", *tjs.BACKENDS)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bundle_dtypes(bundle: Path) -> list:
    """fp32, then every dtype `janusweb quantize` wrote for the language model (other graphs without that
    variant run at fp32, as on the page)."""
    graphs = json.loads((bundle / "manifest.json").read_text())["graphs"]
    return ["fp32", *graphs["language_model"].get("variants", {})]


def _variant_map(bundle: Path, dtype: str) -> dict:
    graphs = json.loads((bundle / "manifest.json").read_text())["graphs"]
    return {g: dtype for g in GRAPH_NAMES if dtype == "fp32" or dtype in graphs[g].get("variants", {})}


def _ort_row(bundle, inp, w, dtype, provider, device) -> dict:
    dtypes = _variant_map(bundle, dtype)
    graphs, load_ms = timed(lambda: OrtGraphs(bundle, dtypes, providers=[provider]))
    ran = graphs.providers()
    if any(p != provider for p in ran.values()):
        raise RuntimeError(f"sessions fell back to other providers: {ran}")
    return {"load_s": load_ms / 1000, "label": {"device": device, "provider": provider, "ort": ort.__version__,
                                                "dtypes": graphs.dtypes},
            "result": measure(graphs, inp, w)}


def _native_rows(model, inp, w, device: str) -> list:
    rows = []
    label = {"device": device, "torch": torch.__version__, **native.cuda_label()}
    dtypes = [torch.float32, torch.bfloat16] if device == "cuda" else [torch.float32]
    for dtype in dtypes:
        name = str(dtype).removeprefix("torch.").replace("float32", "fp32").replace("bfloat16", "bf16")
        with step(f"native-{device} {name}: reference loop"):
            rows.append({"name": f"native-{device}", "dtype": name, "label": {**label, "runner": "reference loop"},
                         "result": native.reference_loop(model, inp, w, device, dtype)})
    if device == "cuda":
        for compiled in (False, True):
            runner = "transformers generate, static cache + torch.compile" if compiled else "transformers generate"
            name = "native-cuda-tuned" if compiled else "native-cuda-eager"
            with step(f"native-cuda bf16: {runner}"):
                try:
                    result = native.transformers_generate(model, inp, w, compiled)
                except (TypeError, RuntimeError) as e:  # e.g. a transformers release whose Janus generate breaks
                    log.warning("%s failed: %s", name, e)
                    rows.append({"name": name, "dtype": "bf16", "skipped": f"{type(e).__name__}: {e}"})
                    continue
                rows.append({"name": name, "dtype": "bf16", "label": {**label, "runner": runner}, "result": result})
    model.to(device="cpu", dtype=torch.float32)
    return rows


def run_bench(bundle: Path, backends: list, out: Path, w: Workload, browser: str | None = None,
              headed: bool = False, dtypes: list | None = None, page: Path | None = None,
              kv_cache: str = "auto") -> dict:
    bundle = Path(bundle)
    if not (bundle / "manifest.json").is_file():
        raise UserError(f"{bundle} is not a janusweb bundle (no manifest.json)")
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise UserError(f"unknown backend(s) {', '.join(unknown)}; known: {', '.join(BACKENDS)}")
    manifest = json.loads((bundle / "manifest.json").read_text())
    inp = build_inputs(bundle, w)
    available = bundle_dtypes(bundle)
    missing = [d for d in dtypes or [] if d not in available]
    if missing:
        raise UserError(f"the bundle has no {', '.join(missing)} variant; it has {', '.join(available)}")
    dtypes = dtypes or available
    source = manifest["source"]
    with step("load the PyTorch model (native backends and the parity reference)"):
        src = load_source(source.get("name") or source["path"], source.get("seed", 0))
    try:
        rows, reference = _run_backends(bundle, backends, src.model, inp, w, dtypes, browser, headed, page, kv_cache,
                                        Path(out))
    finally:
        if src.description["kind"] == "preset":
            shutil.rmtree(src.tokenizer_dir, ignore_errors=True)
    rep = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
           "bundle": {"name": source.get("name") or source.get("path"), "path": str(bundle), "dtypes": dtypes},
           "host": {"cpu": cpu_model(), "cores": os.cpu_count(), **native.cuda_label()},
           "workload": w.__dict__, "reference": reference["name"], "versions": versions(), "rows": rows}
    report.write(rep, Path(out))
    log.info("report written to %s", out)
    return rep


def _run_backends(bundle, backends, model, inp, w, dtypes, browser, headed, page, kv_cache, out: Path):
    rows = []
    cuda = torch.cuda.is_available()
    # native-cuda casts the model to bf16 in place after its fp32 run: everything that needs fp32 weights
    # (native-cpu, the fallback reference) runs before it
    for b in sorted(backends, key=lambda b: b == "native-cuda"):
        report.write_partial(rows, out)  # what ran so far survives an interrupted run
        if b == "native-cpu":
            rows += _native_rows(model, inp, w, "cpu")
        elif b == "native-cuda":
            rows += _native_rows(model, inp, w, "cuda") if cuda else [
                {"name": b, "dtype": "bf16", "skipped": "no CUDA device (torch.cuda.is_available() is False)"}]
        elif b in ("ort-cpu", "ort-cuda"):
            provider = "CPUExecutionProvider" if b == "ort-cpu" else "CUDAExecutionProvider"
            if provider not in ort.get_available_providers():
                rows.append({"name": b, "dtype": "fp32", "skipped": f"onnxruntime {ort.__version__} has no {provider}"})
                continue
            for dtype in dtypes:
                with step(f"{b} {dtype}"):
                    rows.append({"name": b, "dtype": dtype, **_ort_row(bundle, inp, w, dtype, provider, b[4:])})
        elif b in tjs.BACKENDS:
            rows += tjs.rows(bundle, b, dtypes, inp, w, executable=browser, headed=headed, page=page)
        else:
            from janusweb.bench import browser as browser_mod
            rows += browser_mod.rows(bundle, b, dtypes, inp, w, executable=browser, headed=headed, page=page,
                                     kv_cache=kv_cache)
    reference = _reference(rows, model, inp, w)
    for row in rows:
        if "result" in row and "tokens" in row["result"].get("understanding", {}):
            row["parity"] = parity(row["result"], reference["result"])
            fp32 = next((r for r in rows if r["name"] == row["name"] and r["dtype"] == "fp32" and "result" in r), None)
            if row["dtype"] not in ("fp32", "bf16") and fp32:
                row["parity_vs_fp32_same_backend"] = parity(row["result"], fp32["result"])
    return rows, reference


def _reference(rows, model, inp, w) -> dict:
    """Native fp32 (CUDA if it ran, else CPU); computed on the CPU when no native backend was asked for."""
    for name in ("native-cuda", "native-cpu"):
        for r in rows:
            if r["name"] == name and r["dtype"] == "fp32" and r.get("label", {}).get("runner") == "reference loop":
                return {"name": f"{name} fp32 (reference loop on transformers)", "result": r["result"]}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with step(f"reference: native-{device} fp32"):
        one = Workload(**{**w.__dict__, "repeats": 1})
        result = native.reference_loop(model, inp, one, device, torch.float32)
        model.to("cpu")
        return {"name": f"native-{device} fp32 (reference loop on transformers)", "result": result}
