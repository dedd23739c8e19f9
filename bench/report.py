"""The benchmark report: report.json (everything but raw arrays), report.md (tables), steps.png (per-step
times of one image). Rows that did not run are listed in both with their reason: skipped (cannot run on this
host) or failed (the error)."""

import json
from pathlib import Path

import numpy as np

ARRAYS = ("images", "first_logits")


def _clean(x):
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items() if k not in ARRAYS}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


def _fmt(v, digits=1):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _title(row: dict) -> str:
    return f"{row['name']} [{row['variant']}]" if row.get("variant") else row["name"]


def _not_run(report: dict, status: str) -> list:
    return [r for r in report["rows"] if status in r]


def markdown(report: dict) -> str:
    lines = [f"# janusweb bench — {report['bundle']['name']}", "",
             f"{report['date']} · host: {report['host'].get('cpu', '?')}"
             + (f" · GPU: {report['host']['gpu']}" if report["host"].get("gpu") else ""), "",
             "## Speed", "",
             "| backend | dtype | device | load s | TTFT ms | decode tok/s | ms/step (1 img) p50 | s/image (1) | "
             "s/image (4) | VQ decode ms |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        if "result" not in row:
            continue
        r, g = row["result"], row["result"].get("generation", {})
        one, four = g.get("1", {}), g.get("4", {})
        lines.append("| " + " | ".join([
            _title(row), row["dtype"], row["label"].get("device", "?"), _fmt(row.get("load_s"), 2),
            _fmt(r.get("understanding", {}).get("ttft_ms")),
            _fmt(r.get("understanding", {}).get("decode_tokens_per_s")),
            _fmt(one.get("ms_per_step", {}).get("p50") or one.get("ms_per_step", {}).get("mean"), 2),
            _fmt(one.get("s_per_image"), 2), _fmt(four.get("s_per_image"), 2), _fmt(one.get("vq_decode_ms"))]) + " |")
    lines += ["", "## Parity against " + report["reference"], "",
              "| backend | dtype | text tokens % | first divergence | first-step logits max diff | "
              "image tokens % (1) | PSNR dB (1) | image tokens % (4) |", "|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        p = row.get("parity")
        if not p:
            continue
        lines.append("| " + " | ".join([
            _title(row), row["dtype"], _fmt(p.get("text_token_agreement_pct")), _fmt(p.get("text_first_divergence")),
            _fmt(p.get("first_step_logits_max_abs_diff"), 6), _fmt(p.get("image_token_agreement_pct_1")),
            _fmt(p.get("image_psnr_db_1")), _fmt(p.get("image_token_agreement_pct_4"))]) + " |")
    for status, heading in (("skipped", "Skipped (cannot run on this host)"), ("failed", "Failed")):
        rows = _not_run(report, status)
        if rows:
            lines += ["", f"## {heading}", ""] + [f"- {_title(r)} {r['dtype']}: {r[status]}" for r in rows]
    lines += ["", "## What ran", ""]
    for row in report["rows"]:
        if "result" in row:
            lines.append(f"- **{_title(row)} {row['dtype']}**: " + ", ".join(f"{k}={v}" for k, v in row["label"].items()))
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()), ""]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for row in report["rows"]:
        steps = row.get("result", {}).get("generation", {}).get("1", {}).get("step_ms")
        if steps:
            ax.plot(np.arange(1, len(steps) + 1), steps, label=f"{_title(row)} {row['dtype']}", lw=1)
    ax.set_xlabel("image token step")
    ax.set_ylabel("ms per step (CFG batch 2)")
    ax.set_yscale("log")
    ax.set_title(f"Per-step time, 1 image — {report['bundle']['name']}")
    if ax.lines:
        ax.legend(fontsize=8)
    missing = [f"{s}: {_title(r)} {r['dtype']}: {r[s]}"[:110]
               for s in ("skipped", "failed") for r in _not_run(report, s)]
    shown = missing[:8] + ([f"... {len(missing) - 8} more"] if len(missing) > 8 else [])
    if shown:  # what is absent from the plot, and why
        fig.text(0.01, 0.01, "\n".join(shown), fontsize=6, va="bottom", family="monospace")
    fig.tight_layout(rect=(0, 0.025 * len(shown), 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_partial(rows: list, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "rows.partial.json").write_text(json.dumps(_clean(rows), indent=1) + "\n")


def write(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    clean = _clean(report)
    (out / "report.json").write_text(json.dumps(clean, indent=1) + "\n")
    (out / "report.md").write_text(markdown(clean))
    plot(clean, out / "steps.png")
    (out / "rows.partial.json").unlink(missing_ok=True)
