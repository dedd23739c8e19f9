"""The CPU engine's kernels (web/cpu) in Chromium on random weights of Janus-Pro-1B's shapes:
`python -m janusweb.bench.cpu_engine --out bench/results/DATE-cpu-2core-wasm-idot`.

Per dtype (int8; q4), thread count (1, 2), build (plain SIMD128; relaxed SIMD where Chromium validates it) and
kernels (the integer-dot ones the page runs, "int"; the earlier float-dequant ones, "float", built beside the page
for the before numbers): one decoder pass for 1 row (a text token) and 2 rows (a CFG image step) after 600
cached positions, lm_head for 1 row, the image head's matrices for 2 rows, one 5632 x 2048 matrix for 1 and 2
rows. Each job's effective bandwidth (weight bytes / median time) is set against this machine's read bandwidth,
a numpy sum over 1 GiB measured in the same run before and after the browser; `uptime` is recorded before and
after every round. Several rounds: the report gives the median and the spread of the per-round medians.
`--accuracy BUNDLE...`: first, what the integer path costs against the float path on those bundles' int8 graphs
(bench/cpu_accuracy.py), in the same report.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from janusweb.atomic import atomic_dir
from janusweb.bench.pagerun import page_runner
from janusweb.env import chromium_path, versions
from janusweb.log import step
from janusweb.site import build_page
from janusweb.site.page import WEB

# the builds the page loads (runtime.js's kernelsFile), at int8
CONFIGS = [{"threads": t, "relaxed": r} for t in (1, 2) for r in (False, True)]
KERNELS = ("float", "int")  # before, after


def read_bandwidth(gib: float = 1.0, repeats: int = 5) -> float:
    """GB/s of a numpy sum over `gib` GiB of float32 (the best of `repeats`)."""
    a = np.ones(int(gib * 2**30 / 4), np.float32)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a.sum()
        best = min(best, time.perf_counter() - t0)
    return a.nbytes / best / 1e9


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def build_float_kernels(site: Path) -> None:
    """The float-dequant kernels (web/cpu/build.py --float-dequant) into the bench page's cpu/ folder."""
    done = subprocess.run([sys.executable, str(WEB / "cpu" / "build.py"), "--float-dequant", str(site / "cpu")],
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"web/cpu/build.py --float-dequant failed:\n{done.stderr}")


def measure(runner, repeats: int = 5, configs: list = CONFIGS, label: str = "") -> list:
    """One round: the kernel page's jobs (web/cpu/bench.js) once per config, in a runner over a bench page."""
    out = []
    for config in configs:
        with step(f"{label}: CPU engine {config}"):
            out.append({**runner.call("cpu/bench.html", "cpuBench", {**config, "repeats": repeats}),
                        "kernels": "float" if config.get("float") else "int"})
    return out


def plan(dtypes: tuple, before: bool) -> list:
    """Every config of the run: the page's builds at each dtype, with and without the float kernels."""
    kernels = KERNELS if before else ("int",)
    return [{**c, "dtype": d, "float": k == "float"} for d in dtypes for c in CONFIGS for k in kernels]


def run(out: Path, rounds: int = 3, repeats: int = 5, dtypes: tuple = ("int8", "q4"), before: bool = True,
        accuracy: tuple = ()) -> dict:
    from janusweb.bench.cpu_accuracy import compare
    accuracy = [compare(b) for b in accuracy]
    bandwidth, loads = [read_bandwidth()], [uptime()]
    results = []
    configs = plan(dtypes, before)
    with tempfile.TemporaryDirectory(prefix="janusweb-cpu-bench-") as tmp:
        build_page(Path(tmp), bench=True)
        if before:
            build_float_kernels(Path(tmp))
        with page_runner(Path(tmp), "wasm", chromium_path()) as runner:
            for r in range(rounds):
                results += [{**x, "round": r} for x in measure(runner, repeats, configs, f"round {r + 1}/{rounds}")]
                loads.append(uptime())
            version = runner.version
    bandwidth.append(read_bandwidth())
    report = {"versions": {**versions(), "chromium": version}, "numpy_read_gbps": bandwidth, "uptime": loads,
              "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M"), "accuracy": accuracy, "runs": results}
    with atomic_dir(out) as tmp_out:
        (tmp_out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
        (tmp_out / "report.md").write_text(markdown(report))
    return report


def _medians(report: dict) -> dict:
    """(dtype, job, threads, relaxed, kernels) -> (per-round medians, weight bytes)."""
    keys = {}
    for r in report["runs"]:
        relaxed = "relaxed" in r["file"]
        for job, v in r["jobs"].items():
            key = (r.get("dtype", "int8"), job, r["threads"], relaxed, r.get("kernels", "int"))
            keys.setdefault(key, ([], v["bytes"]))[0].append(float(np.median(v["ms"])))
    return keys


def _step_lines(meds: dict, bw: float) -> list:
    """The issue's measures: a text token (decoder 1 row + lm_head), a CFG image step (decoder 2 rows + image
    head), at 2 threads, per dtype / build / kernels."""
    lines = ["| dtype | SIMD | kernels | text token ms (2 threads) | CFG image step ms | step / token | "
             "step GB/s | % of read bw |", "|---|---|---|---|---|---|---|---|"]
    for (dtype, job, threads, relaxed, kernels), (ms, _) in sorted(meds.items()):
        if job != "decoder_1row" or threads != 2:
            continue
        get = lambda j: meds.get((dtype, j, 2, relaxed, kernels))  # noqa: E731
        if not all(get(j) for j in ("lm_head_1row", "decoder_2row", "image_head_2rows")):
            continue
        text = float(np.median(ms)) + float(np.median(get("lm_head_1row")[0]))
        image = float(np.median(get("decoder_2row")[0])) + float(np.median(get("image_head_2rows")[0]))
        gbps = (get("decoder_2row")[1] + get("image_head_2rows")[1]) / image / 1e6
        lines.append(f"| {dtype} | {'relaxed' if relaxed else 'plain'} | {kernels} | {text:.0f} | {image:.0f} | "
                     f"{image / text:.2f} | {gbps:.1f} | {100 * gbps / bw:.0f} % |")
    return lines


def markdown(report: dict) -> str:
    bw = max(report["numpy_read_gbps"])
    meds = _medians(report)
    lines = [f"# CPU engine kernels, janus-pro-1b shapes, random weights ({report.get('date', '')})", "",
             f"Versions: {report['versions']}", "",
             f"numpy read bandwidth (1 GiB sum), before / after: "
             f"{' / '.join(f'{g:.1f}' for g in report['numpy_read_gbps'])} GB/s on {report.get('cpus')} CPUs.", "",
             "`uptime` before the run and after each round:", "", *[f"    {u}" for u in report.get("uptime", [])], "",
             "Kernels: `float` = quantized weights turned into floats against float activations (before); `int` = "
             "int8 activations per block of 32, integer dot products (after, what the page runs). Median ms over "
             "the rounds (min-max of the per-round medians); GB/s = weight bytes / median time; % of the best numpy "
             "read bandwidth.", "", *_step_lines(meds, bw), "",
             "| dtype | job | threads | SIMD | float ms | int ms (spread) | speed-up | int GB/s | % of read bw |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (dtype, job, threads, relaxed, kernels), (ms, nbytes) in sorted(meds.items()):
        if kernels != "int":
            continue
        med = float(np.median(ms))
        before = meds.get((dtype, job, threads, relaxed, "float"))
        was = float(np.median(before[0])) if before else None
        gbps = nbytes / med / 1e6
        lines.append(f"| {dtype} | {job} | {threads} | {'relaxed' if relaxed else 'plain'} | "
                     f"{f'{was:.1f}' if was else '-'} | {med:.1f} ({min(ms):.1f}-{max(ms):.1f}) | "
                     f"{f'{was / med:.2f}x' if was else '-'} | {gbps:.1f} | {100 * gbps / bw:.0f} % |")
    return "\n".join(lines + _accuracy_lines(report.get("accuracy", []))) + "\n"


def _accuracy_lines(results: list) -> list:
    if not results:
        return []
    out = ["", "## Integer path vs float path (onnxruntime, MatMulNBits accuracy_level 4 vs 0, same weights)", "",
           "| bundle | dtype | positions | logit max diff (max abs) | min cosine | mean KL | top-1 agreement | "
           "greedy agreement | first divergence |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        t, g = r["teacher_forced"], r["greedy"]
        out.append(f"| {Path(r['bundle']).name} | {r['dtype']} | {t['positions']} | {t['logit_max_diff']:.4f} "
                   f"({t['logit_max_abs']:.2f}) | {t['cosine_min']:.6f} | {t['kl_mean']:.2e} | "
                   f"{100 * t['top1_agreement']:.1f} % | {100 * g['agreement']:.1f} % of {r['tokens']} | "
                   f"{g['first_divergence']} |")
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dtypes", default="int8,q4", help="comma-separated: int8, q4")
    ap.add_argument("--no-before", action="store_true", help="only the integer kernels the page runs")
    ap.add_argument("--accuracy", nargs="*", type=Path, default=[], metavar="BUNDLE",
                    help="bundles with int8 graphs: the integer path against the float path first")
    args = ap.parse_args()
    run(args.out, args.rounds, args.repeats, tuple(args.dtypes.split(",")), not args.no_before, tuple(args.accuracy))
    print((args.out / "report.md").read_text())
