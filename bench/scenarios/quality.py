"""How right a shapes model (models/shapes, `janusweb train`) is on every backend, engine and dtype: the fixed
evaluation of janusweb/quality.py (every prompt of the task's grammar x 2 images at guidance 5 and 1, scored by
the model-free scorer; 240 questions on drawn scenes, exact answers), seen and held-out (colour, shape) pairs
apart. The bundle carries the task (task.json: its held-out pairs).

Rows: `pytorch` (the bundle's source checkpoint in transformers, fp32, through the reference loop), `ort` (the
bundle's graphs on onnxruntime's CPU EP at each dtype) and the page (`webgpu`, `wasm`: each engine) through
web/bench-pages/quality.js. Verdicts: the targets of the trained default (PyTorch guidance 5: all three
attributes on >= 90 % of seen prompts, answers >= 95 % exact, guidance 5 above guidance 1), fp32 rows within 1
point of PyTorch, int8 rows within 3 points of the same backend's fp32.
"""

import json
from pathlib import Path

from janusweb.bench.pagerun import browser_params
from janusweb.bench.scenario import Metric, Param, Result, Scenario, Skipped, Verdict, unique

BACKENDS = ("pytorch", "ort", "webgpu", "wasm")
PAGE = ("webgpu", "wasm")
KINDS = ("colour", "shape", "position", "describe")


def _metrics() -> tuple:
    out = []
    for g in (5, 1):
        for part in ("seen", "held_out"):
            out.append(Metric(f"g{g}_{part}_all_pct", "%", f"guidance {g}, {part.replace('_', '-')} prompts: images "
                                                           "with colour, shape and position all right"))
            if g == 5:
                out += [Metric(f"g5_{part}_{a}_pct", "%", f"guidance 5, {part.replace('_', '-')}: {a} right")
                        for a in ("colour", "shape", "position")]
    for part in ("seen", "held_out"):
        out.append(Metric(f"answers_{part}_exact_pct", "%", f"answers exactly right, {part.replace('_', '-')} "
                                                            "scenes"))
        if part == "seen":
            out += [Metric(f"answers_seen_{k}_pct", "%", f"'{k}' answers exactly right, seen") for k in KINDS]
    return tuple(out)


def figures(result: dict) -> dict:
    """A quality.evaluate result as the row's columns (percentages)."""
    out = {}
    for key, parts in result["generation"].items():
        g = key.split("_")[1]
        for part, s in parts.items():
            for attribute in ("all", "colour", "shape", "position"):
                name = f"g{g}_{part}_{attribute}_pct"
                if s[attribute] is not None and (attribute == "all" or g == "5"):
                    out[name] = round(100 * s[attribute], 2)
    for part, s in result["answers"].items():
        if s["exact"] is not None:
            out[f"answers_{part}_exact_pct"] = round(100 * s["exact"], 2)
        if part == "seen":
            out.update({f"answers_seen_{k}_pct": round(100 * s[k], 2) for k in KINDS if s[k] is not None})
    return out


class Quality(Scenario):
    """The shapes model's pictures and answers scored per backend, engine and dtype (seen / held-out pairs)."""
    name = "quality"
    params = (
        Param("bundle", Path, None, "bundles exported from a model trained by `janusweb train` (they hold task.json)"),
        Param("backend", str, ("pytorch", "ort"), "pytorch (the source checkpoint), ort (onnxruntime CPU EP), the "
                                                  "page: webgpu, wasm", choices=BACKENDS),
        Param("dtype", str, ("fp32",), "the bundle's variants (auto: all it has; pytorch runs fp32 only)"),
        Param("engine", str, ("auto",), "the page's decoder engine (page rows only)",
              choices=("auto", "ort-gqa", "ort-grow", "wgsl", "cpu")),
        Param("guidances", str, "5,1", "guidance scales, each a pass over every prompt", multi=False),
        *browser_params(),
    )
    metrics = (*_metrics(),)

    def cases(self, values: dict) -> list:
        """dtype auto -> every dtype the bundle has; pytorch runs fp32 alone; engine only for the page."""
        from janusweb.manifest import read
        from janusweb.runner import bundle_dtypes
        out = []
        for c in super().cases(values):
            have = bundle_dtypes(read(c["bundle"]))
            dtypes = have if c["dtype"] == "auto" else [c["dtype"]]
            for d in dtypes:
                out.append({**c, "dtype": "fp32" if c["backend"] == "pytorch" else d,
                            "engine": c["engine"] if c["backend"] in PAGE else None})
        return unique(out)

    def unavailable(self, ctx, case: dict) -> str | None:
        from janusweb.bench.browser import unavailable
        from janusweb.pack import PACKERS
        if case["backend"] not in PAGE:
            return None
        packer = PACKERS.get(case["engine"])
        if packer is not None and case["dtype"] not in packer.dtypes:
            return f"the {case['engine']} engine runs {', '.join(packer.dtypes)} packs, not {case['dtype']}"
        return unavailable(case["browser"], case["driver"])

    def run(self, ctx, case: dict, session) -> Result:
        from janusweb.log import log
        from janusweb.quality import evaluate, read_task, runner_backend
        task = read_task(case["bundle"])
        guidances = tuple(float(g) for g in case["guidances"].split(","))
        name = f"{case['backend']}-{case['dtype']}" + (f"-{case['engine']}" if case["engine"] else "")

        def progress(what, k, n):
            if k == n or k % max(1, n // 4) == 0:
                log.info("%s %s: %d/%d", name, what, k, n)

        if case["backend"] in PAGE:
            backend, label = page_backend(case, task, guidances)
        else:
            backend = runner_backend(name, self._runner(case))
            label = {"runner": "transformers (PyTorch) fp32" if case["backend"] == "pytorch" else "onnxruntime CPU EP"}
        result = evaluate(backend, task, guidances, on_progress=progress)
        # per item, compactly (the results are committed and travel to the GPU host): the scorer's reading of each
        # picture in the order of quality.generation_requests() x IMAGES_PER_PROMPT, each answer in the order of
        # quality.question_cases()
        rows = result["rows"]
        return Result(figures(result), label, {
            "generation": result["generation"], "answers": result["answers"], "held_out": task["held_out"],
            "read": {k: [r["read"] for r in v] for k, v in rows.items() if k.startswith("generation")},
            "answered": [r["answer"] for r in rows["answers"]]})

    @staticmethod
    def _runner(case: dict):
        from janusweb.runner import Runner
        if case["backend"] == "ort":
            return Runner.open(case["bundle"], case["dtype"])
        from janusweb.export.checkpoint import load_source
        from janusweb.train.evaluate import torch_runner
        source = json.loads((Path(case["bundle"]) / "manifest.json").read_text())["source"]
        if source.get("kind") != "transformers":
            raise Skipped(f"the bundle's source is a {source.get('kind')}, not a trained checkpoint")
        src = load_source(source["path"])
        from tokenizers import Tokenizer
        return torch_runner(src.model, Tokenizer.from_file(str(src.tokenizer_dir / "tokenizer.json")))

    def verdicts(self, ctx, rows: list) -> list:
        ran = [r for r in rows if r.status == "ran"]
        out = []
        torch_rows = [r for r in ran if r.case["backend"] == "pytorch"]
        for r in torch_rows:
            m = r.metrics
            out += [Verdict("seen_all_g5", "PyTorch fp32, guidance 5: seen prompts with all three right",
                            m.get("g5_seen_all_pct"), ">= 90 %", (m.get("g5_seen_all_pct") or 0) >= 90),
                    Verdict("answers_exact", "PyTorch fp32: answers exactly right (seen)",
                            m.get("answers_seen_exact_pct"), ">= 95 %", (m.get("answers_seen_exact_pct") or 0) >= 95),
                    Verdict("guidance_helps", "PyTorch fp32: guidance 5 above guidance 1 (seen, all three)",
                            m.get("g5_seen_all_pct"), f"> {m.get('g1_seen_all_pct')} %",
                            None if m.get("g1_seen_all_pct") is None
                            else m.get("g5_seen_all_pct", 0) > m["g1_seen_all_pct"])]
        reference = torch_rows[0].metrics if torch_rows else None
        for r in ran:
            if r.case["backend"] == "pytorch":
                continue
            row = f"{r.case['backend']} {r.case['dtype']}" + (f" {r.case['engine']}" if r.case["engine"] else "")
            if r.case["dtype"] == "fp32" and reference:
                out.append(_within("fp32 vs PyTorch", r, reference, 1.0, row))
            if r.case["dtype"] == "int8":
                fp32 = next((x for x in ran if x.case["dtype"] == "fp32" and x.case["backend"] == r.case["backend"]
                             and x.case["engine"] == r.case["engine"]), None)
                if fp32:
                    out.append(_within("int8 vs the same backend's fp32", r, fp32.metrics, 3.0, row))
        return out


def _within(what: str, row, reference: dict, points: float, name: str) -> Verdict:
    keys = ("g5_seen_all_pct", "answers_seen_exact_pct")
    gaps = [abs(row.metrics[k] - reference[k]) for k in keys if k in row.metrics and k in reference]
    worst = max(gaps) if gaps else None
    return Verdict(f"within_{points:g}", f"{what}: seen all-three (guidance 5) and exact answers", worst,
                   f"<= {points:g} points", None if worst is None else worst <= points, name)


def page_backend(case: dict, task: dict, guidances: tuple) -> tuple:
    """(quality.Backend, label) for a page row: every request of the evaluation asked of the library in Chromium in
    one call (web/bench-pages/quality.js), the Backend then answering from what the page drew and said."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    from janusweb.bench.browser import decoded_images, site_runner
    from janusweb.image import to_uint8
    from janusweb.log import step
    from janusweb.quality import IMAGES_PER_PROMPT, QUESTIONS, Backend, generation_requests, question_cases

    requests = [(scene.prompt, seed, g) for g in guidances for scene, seed in generation_requests()]
    cases = [(QUESTIONS[kind], image) for _, kind, image in question_cases(task["image_size"])]

    def png(image) -> str:
        out = io.BytesIO()
        Image.fromarray(image).save(out, format="PNG")
        return base64.b64encode(out.getvalue()).decode()

    config = {"backend": case["backend"], "engine": case["engine"], "dtype": case["dtype"], "maxNewTokens": 16,
              "images": [{"prompt": p, "seed": s, "count": IMAGES_PER_PROMPT, "guidance": g} for p, s, g in requests],
              "questions": [{"question": q, "imagePng": png(image)} for q, image in cases]}
    with step(f"the page on {case['backend']} ({case['engine']}, {case['dtype']}): {len(requests)} image requests, "
              f"{len(cases)} questions"):
        with site_runner(case["bundle"], case["backend"], case["browser"], False, case["page"],
                         case["driver"]) as runner:
            raw = runner.call("quality.html", "runQuality", config)
    info = raw["info"]
    if info["ep"] != case["backend"] or case["engine"] != "auto" and info.get("engine") != case["engine"]:
        raise Skipped(f"the page ran the {info.get('engine')} engine on {info['ep']}: {'; '.join(info['notes'])}")

    size = json.loads((Path(case["bundle"]) / "config.json").read_text())["janusweb"]["decoded_image_size"]
    pictures = {r: np.stack([to_uint8(x) for x in decoded_images({"decoded": texts}, size)])
                for r, texts in zip(requests, raw["images"])}
    answers = {(q, image.tobytes()): text.strip() for (q, image), text in zip(cases, raw["answers"])}
    backend = Backend(f"page-{case['backend']}-{case['engine']}-{case['dtype']}",
                      lambda prompt, seed, n, g: pictures[(prompt, seed, g)][:n],
                      lambda question, image: answers[(question, np.asarray(image).tobytes())])
    label = {"runner": f"the page in Chromium {runner.version}", "ep": info["ep"], "adapter": info.get("adapter"),
             "engine": info.get("engine"), "dtypes": info.get("dtypes"), "kv_cache": info.get("kvCache")}
    return backend, label
