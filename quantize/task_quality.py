"""The quantize report's answer to "what does the dtype cost in pictures and answers": for a bundle exported from a
model trained on the shapes task (it carries task.json), janusweb/quality.py's evaluation, scored by the model-free
scorer, on the fp32 graphs and on the new variant, onnxruntime's CPU provider both. Summaries only (the bench's
quality scenario keeps each picture's and answer's verdict)."""

from pathlib import Path

from janusweb.log import log
from janusweb.quality import TASK_FILE, evaluate, read_task, runner_backend
from janusweb.runner import Runner

# the figures set beside each other in the report and its table: (label, path into the evaluation's summaries)
HEADLINE = (("guidance 5, seen, all three right", ("generation", "guidance_5", "seen", "all")),
            ("guidance 1, seen, all three right", ("generation", "guidance_1", "seen", "all")),
            ("answers, seen, exact", ("answers", "seen", "exact")),
            ("answers, held-out, exact", ("answers", "held_out", "exact")))


def _value(summary: dict, path: tuple):
    for key in path:
        summary = summary[key]
    return summary


def has_task(bundle: Path) -> bool:
    """Whether the bundle was exported from a model trained on the task (random weights and Janus-Pro checkpoints
    have nothing to be scored against)."""
    return (bundle / TASK_FILE).is_file()


def measure_task(bundle: Path, staged: Path, dtype: str) -> dict:
    """{"fp32": summary, dtype: summary, "points": {label: dtype - fp32, in points}}."""
    task = read_task(bundle)
    out = {}
    for name, folder in (("fp32", bundle), (dtype, staged)):
        def progress(what, k, n, name=name):
            if k == n or k % max(1, n // 2) == 0:
                log.info("task quality, %s, %s: %d/%d", name, what, k, n)
        result = evaluate(runner_backend(f"ort-{name}", Runner.over(folder, bundle, name)), task, on_progress=progress)
        out[name] = {"generation": result["generation"], "answers": result["answers"]}
    out["points"] = {label: round(100 * (_value(out[dtype], path) - _value(out["fp32"], path)), 2)
                     for label, path in HEADLINE}
    return out


def lines(report: dict) -> list:
    """The table's lines for the task quality (none when the report has none)."""
    q = report.get("task_quality")
    if not q:
        return []
    dtype = report["dtype"]
    out = [f"on the shapes task ({TASK_FILE}; onnxruntime CPU, scored from the pixels): fp32 -> {dtype}"]
    for label, path in HEADLINE:
        out.append(f"  {label}: {100 * _value(q['fp32'], path):.1f} % -> {100 * _value(q[dtype], path):.1f} % "
                   f"({q['points'][label]:+.1f} points)")
    return out
