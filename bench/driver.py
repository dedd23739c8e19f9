"""`janusweb bench`: the same workload on every backend asked for (bench/backends/), one report."""

import datetime
import json
import os
import platform
import shutil
from pathlib import Path

import torch

from janusweb.bench import backends as registry
from janusweb.bench import native, report
from janusweb.bench.backends import BenchContext
from janusweb.bench.parity import parity
from janusweb.bench.workload import Workload, build_inputs
from janusweb.env import versions
from janusweb.errors import UserError
from janusweb.export.checkpoint import load_source
from janusweb.log import log, step

BACKENDS = registry.NAMES
# the page's decoder engines on WebGPU (web/engines/list.js; 'grow' is ort-grow's old name, kept)
ENGINES = ("auto", "ort-gqa", "ort-grow", "wgsl", "grow")


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


def run_rows(chosen: list, ctx: BenchContext, out: Path | None = None) -> list:
    """Every case of every backend, in the order asked for: ran, skipped (cannot run here, with the reason) or
    failed (the error; the traceback goes to the log)."""
    rows = []
    for backend in chosen:
        cases = backend.cases(ctx)
        why = backend.unavailable(ctx)
        if why:
            rows += [c.skipped(why) for c in cases]
            continue
        try:
            with backend.session(ctx) as session:
                for case in cases:
                    if out:
                        report.write_partial([r.to_dict() for r in rows], out)  # survives an interrupted run
                    with step(f"{case.title()} {case.dtype}"):
                        try:
                            rows.append(backend.run(ctx, case, session))
                        except Exception as e:  # noqa: BLE001 (recorded as a failed row, with the traceback)
                            log.exception("%s %s failed", case.title(), case.dtype)
                            rows.append(case.failed(e))
        except Exception as e:  # noqa: BLE001 (the backend's setup failed: every case not yet run fails)
            log.exception("%s could not start", backend.name)
            done = {(r.name, r.dtype, r.variant) for r in rows}
            rows += [c.failed(e) for c in cases if (c.name, c.dtype, c.variant) not in done]
    return rows


def add_parity(rows: list, reference: dict) -> None:
    for row in rows:
        if row.ran and "tokens" in row.result.get("understanding", {}):
            row.parity = parity(row.result, reference["result"])
            fp32 = next((r for r in rows if (r.name, r.variant, r.dtype) == (row.name, row.variant, "fp32")
                         and r.ran), None)
            if row.dtype not in ("fp32", "bf16") and fp32:
                row.parity_vs_fp32_same_backend = parity(row.result, fp32.result)


def reference_run(rows: list, ctx: BenchContext) -> dict:
    """Native fp32 (CUDA if it ran, else CPU); computed when no native backend ran."""
    for name in ("native-cuda", "native-cpu"):
        for r in rows:
            if r.name == name and r.dtype == "fp32" and r.ran and r.label.get("runner") == "reference loop":
                return {"name": f"{name} fp32 (reference loop on transformers)", "result": r.result}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with step(f"reference: native-{device} fp32"):
        one = Workload(**{**ctx.w.__dict__, "repeats": 1})
        model = ctx.model if device == "cpu" else ctx.model.to("cuda")
        try:
            result = native.reference_loop(model, ctx.inp, one, device, torch.float32)
        finally:
            ctx.model.to("cpu")
        return {"name": f"native-{device} fp32 (reference loop on transformers)", "result": result}


def run_bench(bundle: Path, backends: list, out: Path, w: Workload, browser: str | None = None,
              headed: bool = False, dtypes: list | None = None, page: Path | None = None,
              kv_cache: str = "auto", driver: str = "auto") -> dict:
    """kv_cache: the page's decoder engine(s) on WebGPU, comma-separated ('auto': the page's choice; 'ort-gqa':
    the fused language_model_gqa, 'ort-grow' (or 'grow'): language_model, its KV cache grown per step; 'wgsl':
    the page's WGSL decoder on the bundle's WGSL pack)."""
    bundle = Path(bundle)
    if not (bundle / "manifest.json").is_file():
        raise UserError(f"{bundle} is not a janusweb bundle (no manifest.json)")
    bad = [e for e in kv_cache.split(",") if e not in ENGINES]
    if bad:
        raise UserError(f"unknown page engine(s) {', '.join(bad)}; known: {', '.join(ENGINES)}")
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise UserError(f"unknown backend(s) {', '.join(unknown)}; known: {', '.join(BACKENDS)}")
    manifest = json.loads((bundle / "manifest.json").read_text())
    available = bundle_dtypes(bundle)
    missing = [d for d in dtypes or [] if d not in available]
    if missing:
        raise UserError(f"the bundle has no {', '.join(missing)} variant; it has {', '.join(available)}")
    dtypes = dtypes or available
    source = manifest["source"]
    with step("load the PyTorch model (native backends and the parity reference)"):
        src = load_source(source.get("name") or source["path"], source.get("seed", 0))
    ctx = BenchContext(bundle, build_inputs(bundle, w), w, dtypes, src.model, browser, headed, page,
                       kv_cache.split(","), driver)
    try:
        rows = run_rows([registry.load(b) for b in backends], ctx, Path(out))
        reference = reference_run(rows, ctx)
        add_parity(rows, reference)
    finally:
        if src.description["kind"] == "preset":
            shutil.rmtree(src.tokenizer_dir, ignore_errors=True)
    rep = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
           "bundle": {"name": source.get("name") or source.get("path"), "path": str(bundle), "dtypes": dtypes},
           "host": {"cpu": cpu_model(), "cores": os.cpu_count(), **native.cuda_label()},
           "workload": w.__dict__, "reference": reference["name"], "versions": versions(),
           "rows": [r.to_dict() for r in rows]}
    report.write(rep, Path(out))
    log.info("report written to %s", out)
    return rep

