"""The streamed export's benchmark: `python -m janusweb.bench.export_stream --out BUNDLE --results DIR` runs
`janusweb export SOURCE --stream --dtype DTYPES` as a child under /usr/bin/time -v and writes DIR/results.json:
wall time, peak resident memory (the child's), the load average before and after, the size of every file of the
bundle, and the validation summary (graphs_ok, per-layer accuracy of the quantized language model). Heavy: run it
under `flock /work/heavy.lock`."""

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path


def _time_v(stderr: str) -> dict:
    fields = {"wall": r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)",
              "peak_rss_kb": r"Maximum resident set size \(kbytes\): (\d+)"}
    return {k: (m[1] if (m := re.search(p, stderr)) else None) for k, p in fields.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m janusweb.bench.export_stream")
    p.add_argument("--source", default="janus-pro-7b")
    p.add_argument("--dtype", default="q4")
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument("--results", required=True, help="folder for results.json and the export's log")
    args = p.parse_args(argv)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "janusweb", "export", args.source, "--stream",
           "--dtype", args.dtype, "--out", args.out]
    load_before, t0 = os.getloadavg(), time.time()
    with open(results / "export.log", "w") as log:  # progress lines as they come, then time -v's report
        run = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    out = Path(args.out)
    record = {"command": " ".join(cmd[2:]), "returncode": run.returncode, "seconds": round(time.time() - t0, 1),
              **_time_v((results / "export.log").read_text()), "load_before": load_before,
              "load_after": os.getloadavg(),
              "cpus": os.cpu_count()}
    if run.returncode == 0:
        manifest = json.loads((out / "manifest.json").read_text())
        record["files"] = {rel: f["bytes"] for rel, f in manifest["files"].items()}
        record["bundle_bytes"] = sum(record["files"].values())
        record["graphs_ok"] = manifest["validation"]["graphs_ok"]
        record["layerwise_vs_source_weights"] = {
            d: manifest["graphs"]["language_model"]["variants"][d].get("layerwise_vs_source_weights")
            for d in args.dtype.split(",")}
        record["buffers_largest"] = manifest["buffers"]["largest"]
        record["tools"] = manifest["tools"]
    (results / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    sys.stdout.write(json.dumps({k: v for k, v in record.items() if k not in ("files", "layerwise_vs_source_weights")},
                                indent=2) + "\n")
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
