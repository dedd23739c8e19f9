"""The CPU engine's kernels (web/cpu) in Chromium on random weights of Janus-Pro-1B's shapes, int8:
`python -m janusweb.bench.cpu_engine --out bench/results/DATE-cpu-2core-wasm-engine`.

Per thread count and build (plain SIMD128; relaxed SIMD's fused multiply-add where Chromium validates it): one
decoder pass for 1 row (a text token) and 2 rows (a CFG image step) after 600 cached positions, lm_head for 1 row,
the image head's matrices for 2 rows, one 5632 x 2048 matrix for 1 and 2 rows. Each job's effective bandwidth
(weight bytes / median time) is set against this machine's read bandwidth, a numpy sum over 1 GiB measured in the
same run before and after the browser. Several rounds: the report gives the median and the spread.
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from janusweb.atomic import atomic_dir
from janusweb.bench.pagerun import page_runner
from janusweb.env import chromium_path, versions
from janusweb.log import step
from janusweb.site import build_page

CONFIGS = [{"threads": 1, "relaxed": False}, {"threads": 2, "relaxed": False}, {"threads": 2, "relaxed": True}]


def read_bandwidth(gib: float = 1.0, repeats: int = 5) -> float:
    """GB/s of a numpy sum over `gib` GiB of float32 (the best of `repeats`)."""
    a = np.ones(int(gib * 2**30 / 4), np.float32)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a.sum()
        best = min(best, time.perf_counter() - t0)
    return a.nbytes / best / 1e9


def measure(runner, repeats: int = 5, configs: list = CONFIGS, label: str = "") -> list:
    """One round: the kernel page's jobs (web/cpu/bench.js) once per config, in a runner over a bench page."""
    out = []
    for config in configs:
        with step(f"{label}: CPU engine {config}"):
            out.append(runner.call("cpu/bench.html", "cpuBench", {**config, "repeats": repeats}))
    return out


def job_medians(runs: list) -> dict:
    """(job, build, threads) -> the per-run medians (ms) and the job's weight bytes."""
    keys = {}
    for r in runs:
        for job, v in r["jobs"].items():
            keys.setdefault((job, r["file"], r["threads"]), {"ms": [], "bytes": v["bytes"]})["ms"].append(
                float(np.median(v["ms"])))
    return keys


def run(out: Path, rounds: int = 3, repeats: int = 5) -> dict:
    bandwidth, load = [read_bandwidth()], [os.getloadavg()[0]]
    results = []
    with tempfile.TemporaryDirectory(prefix="janusweb-cpu-bench-") as tmp:
        build_page(Path(tmp), bench=True)
        with page_runner(Path(tmp), "wasm", chromium_path()) as runner:
            for r in range(rounds):
                results += measure(runner, repeats, label=f"round {r + 1}/{rounds}")
            version = runner.version
    bandwidth.append(read_bandwidth())
    load.append(os.getloadavg()[0])
    report = {"versions": {**versions(), "chromium": version}, "numpy_read_gbps": bandwidth, "load_average_1min": load,
              "cpus": os.cpu_count(), "runs": results}
    with atomic_dir(out) as tmp_out:
        (tmp_out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
        (tmp_out / "report.md").write_text(markdown(report))
    return report


def markdown(report: dict) -> str:
    bw = max(report["numpy_read_gbps"])
    lines = [f"# CPU engine kernels, janus-pro-1b shapes int8, random weights ({time.strftime('%Y-%m-%d')})", "",
             f"Versions: {report['versions']}", "",
             f"numpy read bandwidth (1 GiB sum), before / after: "
             f"{' / '.join(f'{g:.1f}' for g in report['numpy_read_gbps'])} GB/s; 1-minute load average before / "
             f"after: {' / '.join(f'{x:.1f}' for x in report.get('load_average_1min', []))} on "
             f"{report.get('cpus')} CPUs", "",
             "Median ms over all rounds (min-max of the per-round medians); GB/s = weight bytes / median time; "
             "% of the best numpy read bandwidth.", "",
             "| job | build | threads | median ms | spread ms | GB/s | % of read bw |", "|---|---|---|---|---|---|---|"]
    for (job, file, threads), vals in job_medians(report["runs"]).items():
        meds = vals["ms"]
        med, nbytes = float(np.median(meds)), vals["bytes"]
        gbps = nbytes / med / 1e6
        lines.append(f"| {job} | {file} | {threads} | {med:.1f} | {min(meds):.1f}-{max(meds):.1f} | {gbps:.1f} | "
                     f"{100 * gbps / bw:.0f} % |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    run(args.out, args.rounds, args.repeats)
    print((args.out / "report.md").read_text())
