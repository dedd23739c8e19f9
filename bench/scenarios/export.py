"""`janusweb export` measured: wall time, peak memory of its process tree, the bundle's size and its checks.

Each case runs `janusweb export SOURCE --out DIR [--stream] [--dtype D] [--no-validate] [--text-steps N]
[--image-steps N]` as a child process (its log saved beside the report as export-<n>.log), its process tree's
memory sampled every half second (RSS and PSS summed over the tree; the kernel's own peak RSS of the largest
process, wait4's rusage, too). The bundle goes to `--work` (default the temp folder) and is removed after it is
measured unless `--keep` names a folder to keep it in. A 7B export is heavy: run it under the heavy-job lock.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from janusweb.bench.scenario import Metric, Param, Result, Scenario, Verdict, boolean


def dtypes(text: str) -> str:
    """`none`, or variants joined by `+` (q4+int8: one export writing both)."""
    names = text.split("+")
    if text != "none" and not all(n in ("int8", "q4") for n in names):
        raise ValueError(f"{text!r}: none, int8, q4 or both joined by + (q4+int8)")
    return text


class Export(Scenario):
    """janusweb export measured: wall time, peak memory of its process tree, bundle size, checks."""
    name = "export"
    params = (
        Param("source", str, None, "a checkpoint folder or a preset (tiny, janus-pro-1b, janus-pro-7b, "
                                   "janus-pro-7b-2l)"),
        Param("stream", boolean, (False,), "--stream (yes/no)"),
        Param("dtype", dtypes, ("none",), "--dtype: none, int8, q4, q4+int8"),
        Param("validate", boolean, (True,), "no: --no-validate"),
        Param("text_steps", int, None, "--text-steps (default: export's)", multi=False),
        Param("image_steps", int, None, "--image-steps (default: export's)", multi=False),
        Param("work", Path, None, "where the bundles are written (default: the temp folder)", multi=False),
        Param("keep", Path, None, "keep each bundle in this folder (named by its case)", multi=False),
    )
    metrics = (
        Metric("exit_code", "", "export's exit status", int),
        Metric("wall_s", "s", "wall time"),
        Metric("peak_rss_bytes", "bytes", "the largest process's peak RSS (the kernel's, wait4)"),
        Metric("peak_rss_sum_bytes", "bytes", "the process tree's summed RSS, peak (sampled)"),
        Metric("peak_pss_sum_bytes", "bytes", "the process tree's summed PSS, peak (sampled)"),
        Metric("bundle_bytes", "bytes", "every file the manifest lists"),
        Metric("graphs_ok", "", "every graph's check against PyTorch passed", bool),
    )

    @contextlib.contextmanager
    def context(self, run):
        with tempfile.TemporaryDirectory(prefix="janusweb-export-bench-", dir=run.values["work"]) as tmp:
            yield {"run": run, "tmp": Path(tmp), "n": [0]}

    def run(self, ctx, case: dict, session) -> Result:
        from janusweb.bench.memory import ProcessTreeMemory
        ctx["n"][0] += 1
        n, out = ctx["n"][0], ctx["tmp"] / f"bundle-{ctx['n'][0]}"
        argv = ["export", case["source"], "--out", str(out), *(["--stream"] if case["stream"] else []),
                *(["--dtype", case["dtype"].replace("+", ",")] if case["dtype"] != "none" else []),
                *([] if case["validate"] else ["--no-validate"]),
                *(["--text-steps", str(case["text_steps"])] if case["text_steps"] is not None else []),
                *(["--image-steps", str(case["image_steps"])] if case["image_steps"] is not None else [])]
        log_path = ctx["run"].out / f"export-{n}.log"
        t0 = time.perf_counter()
        with open(log_path, "w") as log:
            child = subprocess.Popen([sys.executable, "-m", "janusweb", *argv], stdout=log, stderr=subprocess.STDOUT)
            with ProcessTreeMemory(root=child.pid, include_root=True) as mem:
                _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage (not earlier cases')
            child.returncode = code = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        figures = {"exit_code": code, "wall_s": wall, "peak_rss_bytes": usage.ru_maxrss * 1024,
                   "peak_rss_sum_bytes": mem.report()["peak_rss_sum_bytes"],
                   "peak_pss_sum_bytes": mem.report()["peak_pss_sum_bytes"]}
        detail = {"command": "janusweb " + " ".join(argv), "log": log_path.name}
        if code == 0:
            manifest = json.loads((out / "manifest.json").read_text())
            figures["bundle_bytes"] = sum(f["bytes"] for f in manifest["files"].values())
            checks = manifest.get("validation", {})
            if "graphs_ok" in checks:
                figures["graphs_ok"] = bool(checks["graphs_ok"])
            detail |= {"files": {rel: f["bytes"] for rel, f in manifest["files"].items()},
                       "buffers_largest": manifest.get("buffers", {}).get("largest"), "tools": manifest.get("tools"),
                       "variants": {d: v.get("layerwise_vs_source_weights") for d, v in
                                    manifest["graphs"]["language_model"].get("variants", {}).items()}}
            if case["keep"]:
                shutil.move(str(out), str(Path(case["keep"]) / out.name))
            else:
                shutil.rmtree(out)
        return Result(figures, {"device": "cpu", "runner": "janusweb export (a child process)"}, detail)

    def verdicts(self, ctx, rows: list) -> list:
        from janusweb.bench.driver import title, varying
        names = varying(self, [r.case for r in rows]) or ["source"]
        return [Verdict("exported", "export exited 0", r.metrics["exit_code"], "= 0", r.metrics["exit_code"] == 0,
                        title(r.case, names)) for r in rows if r.ran]
