"""The one results schema of every scenario, and its files.

A results folder (`bench/results/<date>-<host>-<scenario>[-<label>]/` unless `--out`) holds:
- report.json: `schema`, `scenario`, `label`, `argv` and `command`, `date`, `host` (CPU, cores, memory, GPUs),
  `versions`, `load` (1/5/15-minute load averages before and after), `params` (every parameter as asked),
  `metrics` (the row columns: key, unit, what, type), `varying` (the parameters with several values), `rows`
  (each: `params` (its case), `status` ran/skipped/failed, `reason`, and when it ran `metrics`, `label`,
  `detail`), `verdicts` (key, what, value, target, met: true/false/null = not run, row), `notes`, `seconds`;
- rows.jsonl: one row per line, written as each row finishes (what a cut-off run leaves);
- rows.csv: the rows flat, llama-bench style: every parameter, status, reason, every metric;
- report.md: the same for people.
"""

import csv
import dataclasses
import io
import json
import shlex
from pathlib import Path

import numpy as np

SCHEMA = "janusweb-bench/1"


def command(argv: list) -> str:
    return shlex.join(["janusweb", "bench", *argv])


def columns(metrics: tuple) -> list:
    return [{"key": m.key, "unit": m.unit, "what": m.what, "type": m.type.__name__} for m in metrics]


def verdict_dict(v) -> dict:
    return dataclasses.asdict(v)


def plain(x):
    """JSON-able: numpy scalars and arrays as numbers and lists, paths as strings."""
    if isinstance(x, dict):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    return x


def dumps(x) -> str:
    return json.dumps(plain(x), indent=1)


def append_row(out: Path, row) -> None:
    with open(out / "rows.jsonl", "a") as f:
        f.write(json.dumps(plain(row.to_dict())) + "\n")


def fmt(value, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if unit == "bytes" and isinstance(value, (int, float)):
        return f"{value / 1e9:.2f}"
    if isinstance(value, float):
        a = abs(value)
        return f"{value:.0f}" if a >= 100 else f"{value:.1f}" if a >= 10 else f"{value:.3g}"
    return str(value)


def _unit(m: dict) -> str:
    return "GB" if m["unit"] == "bytes" else m["unit"]


def shown_params(report: dict) -> list:
    """The table's parameter columns: those that vary, else every list-valued one."""
    return report["varying"] or [k for k, v in report["params"].items() if isinstance(v, list)]


def _case(row: dict, params: list) -> str:
    return " ".join(f"{p}={row['params'][p]}" for p in params) or "all"


def markdown(report: dict) -> str:
    h, load = report["host"], report["load"]
    gpus = ", ".join(g["name"] for g in h.get("gpus", []))
    lines = [f"# janusweb bench {report['scenario']}" + (f" — {report['label']}" if report["label"] else ""), "",
             f"`{report['command']}`", "",
             f"{report['date']} · {h['cpu']}, {h['cores']} cores, {fmt(h.get('memory_bytes'), 'bytes')} GB"
             + (f" · GPU: {gpus}" if gpus else "") + f" · load {load['before']} before, {load['after']} after"
             f" · {report['seconds']} s", ""]
    params = shown_params(report)
    ran = [r for r in report["rows"] if r["status"] == "ran"]
    cols = [m for m in report["metrics"] if any(r["metrics"].get(m["key"]) is not None for r in ran)]
    if ran:
        lines += ["| " + " | ".join(params + [m["key"] for m in cols]) + " |",
                  "|" + "---|" * (len(params) + len(cols))]
        for r in ran:
            cells = [str(r["params"][p]) for p in params] + [fmt(r["metrics"].get(m["key"]), m["unit"]) for m in cols]
            lines.append("| " + " | ".join(cells) + " |")
        lines += [""] + [f"- {m['key']}" + (f" ({_unit(m)})" if _unit(m) else "") + f": {m['what']}" for m in cols]
        lines.append("")
    if report["verdicts"]:
        lines += ["## Verdicts", "", "| row | target | value | wanted | |", "|---|---|---|---|---|"]
        for v in report["verdicts"]:
            state = "not run" if v["met"] is None else ("met" if v["met"] else "**not met**")
            lines.append(f"| {v['row'] or 'all'} | {v['what']} | {fmt(v['value'])} | {v['target']} | {state} |")
        lines.append("")
    for status, heading in (("skipped", "Skipped (cannot run on this host)"), ("failed", "Failed")):
        rows = [r for r in report["rows"] if r["status"] == status]
        if rows:
            lines += [f"## {heading}", ""]
            lines += [f"- {_case(r, params)}: {r['reason']}" for r in rows] + [""]
    labelled = [r for r in ran if r["label"]]
    if labelled:
        lines += ["## What ran", ""]
        for r in labelled:
            what = ", ".join(f"{k}={v}" for k, v in r["label"].items() if v not in (None, "", [], {}))
            lines.append(f"- {_case(r, params)}: {what}")
        lines.append("")
    if report["notes"]:
        lines += ["## Notes", ""] + [f"- {n}" for n in report["notes"]] + [""]
    lines += ["Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()), ""]
    return "\n".join(lines)


def csv_text(report: dict) -> str:
    params = list(report["params"])
    keys = [m["key"] for m in report["metrics"]]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(params + ["status", "reason"] + keys)
    for r in report["rows"]:
        w.writerow([r["params"].get(p) for p in params] + [r["status"], r.get("reason", "")]
                   + [r.get("metrics", {}).get(k) for k in keys])
    return buf.getvalue()


def write(out: Path, report: dict) -> None:
    report = plain(report)
    (out / "report.json").write_text(dumps(report) + "\n")
    (out / "report.md").write_text(markdown(report))
    (out / "rows.csv").write_text(csv_text(report))


def folder(root: Path, date: str, host_slug: str, scenario: str, label: str = "") -> Path:
    return Path(root) / "-".join(x for x in (date, host_slug, scenario, label) if x)
