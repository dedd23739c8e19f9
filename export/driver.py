"""`janusweb export`: the one export driver. It plans memory (export.memory.plan: the whole fp32 model in memory,
or streamed), opens that weight source (export.sources), and writes the same bundle from either: every graph
exported and checked against PyTorch, the quantized variants (export.variants), the fused WebGPU decoder, the
JSON files, an end-to-end check per language-model dtype, the manifest; atomically (a temporary folder renamed).

What is written does not depend on the source chosen, only on the arguments and the model:
- `dtypes` (--dtype): the quantized variants; default none, except LARGE_DEFAULT_DTYPES for a language model over
  LARGE_LANGUAGE_MODEL bytes in fp32 (Janus-Pro-7B: 26 GB), which no browser holds in fp32;
- the fp32 language model (and the fp32 fused decoder) are written when no quantized variant is asked, or with
  `fp32_graphs` (--fp32-graphs); every other graph is always written in fp32 (its variants are made from it).
"""

import sys
from pathlib import Path

import onnx
import onnxruntime
import onnxscript
import torch
import transformers
from tokenizers import Tokenizer

import janusweb
from janusweb import manifest as manifests
from janusweb.atomic import atomic_dir
from janusweb.errors import UserError
from janusweb.export import end_to_end
from janusweb.export.bundle import check_output_dir, graph_entry, runtime_config, write_configs
from janusweb.export.checkpoint import source_config
from janusweb.export.limits import buffer_limits
from janusweb.export.memory import (LANGUAGE_MODEL, budget, fused_fp32_bytes, language_model_bytes, meta_model,
                                    plan)
from janusweb.export.onnx_export import OPSET
from janusweb.export.sources import open_source
from janusweb.export.specs import built_specs, graph_specs
from janusweb.export.stream import BLOCK
from janusweb.export.validate import Check, Report
from janusweb.export.variants import fused_variant, graph_variant
from janusweb.buffers import record as record_buffers
from janusweb.fused import STEM
from janusweb.log import log, step
from janusweb.prompts import SpecialIds

LARGE_LANGUAGE_MODEL = 16e9  # fp32 bytes
LARGE_DEFAULT_DTYPES = ("q4",)
NOT_WRITTEN = ("not written: the export writes the language model at its quantized dtypes only (--fp32-graphs "
               "writes it too: about {gb:.1f} GB)")
NO_E2E = {"off": "not asked (--text-steps 0)", "no-validate": "not run (--no-validate)"}


class MismatchError(RuntimeError):
    """An exported graph or the end-to-end run differs from PyTorch beyond tolerance."""


def tool_versions() -> dict:
    return {"janusweb": janusweb.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "onnx": onnx.__version__, "onnxscript": onnxscript.__version__, "onnxruntime": onnxruntime.__version__}


def outputs(config, dtypes, fp32_graphs: bool | None) -> tuple:
    """(quantized dtypes, whether the fp32 language model is written): the rule of the module docstring."""
    if dtypes is None:
        large = language_model_bytes(meta_model(config)) > LARGE_LANGUAGE_MODEL
        dtypes = LARGE_DEFAULT_DTYPES if large else ()
    if fp32_graphs is False and not dtypes:
        raise UserError("--no-fp32-graphs: the language model would be written at no dtype; add --dtype int8 or q4")
    return tuple(dtypes), bool(fp32_graphs) or not dtypes


def export_bundle(source: str, out: Path, seed: int = 0, allow_mismatch: bool = False, text_steps: int = 32,
                  image_steps: int | None = None, fused: bool = True, validate: bool = True, stream: bool = False,
                  dtypes: list | None = None, quantizers=None, fp32_graphs: bool | None = None) -> Path:
    """fused: also write the WebGPU decoder language_model_gqa (GroupQueryAttention, KV cache bound in place) at
    every dtype its language model is written at. validate=False skips the checks against PyTorch and the
    end-to-end runs (benchmark bundles of random presets; the fused decoder is still compared with the language
    model); the manifest says so. stream: the streamed source even where the whole model fits. dtypes, fp32_graphs:
    see `outputs`; `quantizers(dtypes)` (the CLI's quantize.stream.stream_quantizers: export never imports
    quantize) write the variants."""
    out = Path(out)
    check_output_dir(out)
    config = source_config(source)[0]
    dtypes, fp32_lm = outputs(config, dtypes, fp32_graphs)
    quants = tuple(quantizers(list(dtypes))) if dtypes else ()
    chosen = plan(source, config, stream, image_steps, validate, bits=[q.bits for q in quants], fused=fused)
    log.info("%s", chosen.line)
    with open_source(source, seed, chosen.streamed) as src:
        log.info("✓ opened %s", source)
        _Export(src, quants, fp32_lm, fused, validate, allow_mismatch).write(out, seed, text_steps,
                                                                            chosen.image_steps, chosen)
    log.info("bundle written to %s", out)
    return out


class _Export:
    """One export's writing, from an open weight source into a staging folder."""

    def __init__(self, src, quants: tuple, fp32_lm: bool, fused: bool, validate: bool, allow_mismatch: bool):
        self.src, self.quants, self.fp32_lm, self.fused = src, quants, fp32_lm, fused
        self.validate, self.allow_mismatch = validate, allow_mismatch
        self.report, self.specs = Report(), graph_specs(src.model)
        self.ids = SpecialIds.from_tokenizer(Tokenizer.from_file(str(Path(src.tokenizer_dir) / "tokenizer.json")))

    def stop_on_mismatch(self, name: str) -> None:
        if not self.report.ok and not self.allow_mismatch:
            sys.stdout.write(self.report.table() + "\n")
            raise MismatchError(f"{name} differs from its reference beyond tolerance (see the table); nothing was "
                                "written (--allow-mismatch keeps the bundle anyway)")

    def write(self, out: Path, seed: int, text_steps: int, image_steps: int | None, chosen) -> None:
        src, specs = self.src, self.specs
        written, variants, packed = {}, {q.name: {} for q in self.quants}, {}
        with atomic_dir(out) as tmp:
            onnx_dir = tmp / "onnx"
            onnx_dir.mkdir()
            for k, spec in enumerate(specs, 1):
                where = f"[{k}/{len(specs)}] {spec.name}"
                if spec.name != LANGUAGE_MODEL or self.fp32_lm:
                    written[spec.name] = src.export_graph(spec, onnx_dir, self.report, where, self.validate)
                    self.stop_on_mismatch(spec.name)
                for q in self.quants:
                    variants[q.name][spec.name], names = graph_variant(
                        spec, src, onnx_dir, written.get(spec.name), self.report, BLOCK, q, where, self.validate)
                    packed[q.name] = names or packed.get(q.name)  # the language model's packed weights
                    self.stop_on_mismatch(f"{spec.name}{q.suffix}")
            fused = self.write_fused(onnx_dir, variants) if self.fused else None
            write_configs(tmp, src.config, self.ids, src.tokenizer_dir,
                          {name: len(files) > 1 for name, files in written.items()})
            e2e = self.end_to_end(tmp, seed, text_steps, image_steps, packed, chosen)
            sys.stdout.write(self.report.table() + "\n" + "\n".join(
                f"{d}: {r.summary()}" if r else f"{d}: end to end skipped ({e['skipped']})" for d, (r, e) in e2e.items())
                + ("" if e2e else f"end to end: {NO_E2E['off' if self.validate else 'no-validate']}") + "\n")
            if not self.report.ok and not self.allow_mismatch:
                raise MismatchError("the exported graphs differ from PyTorch beyond tolerance (see the table); "
                                    "nothing was written (--allow-mismatch keeps the bundle anyway)")
            if not all(r.ok for r, _ in e2e.values() if r) and not self.allow_mismatch:
                raise MismatchError("the end-to-end run differs from PyTorch (see above); nothing was written "
                                    "(--allow-mismatch keeps the bundle anyway)")
            self.write_manifest(tmp, written, variants, fused, e2e, chosen, text_steps)

    def write_fused(self, onnx_dir: Path, variants: dict):
        """language_model_gqa at the language model's dtypes: fp32 built from the whole model (BuiltSpec), or layer
        by layer from the streamed source where its fp32 weights fit; each quantized one layer by layer. Its fp32
        entry."""
        src, lm_spec = self.src, next(s for s in self.specs if s.name == LANGUAGE_MODEL)
        config = runtime_config(src.config, self.ids)
        for q in self.quants:
            variants[q.name][STEM] = fused_variant(src.meta, src.store, onnx_dir, src.tokenizer_dir, q, config,
                                                   self.report, lm_spec.tolerance, f"[{STEM}]")
            self.stop_on_mismatch(f"{STEM}{q.suffix}")
        not_written = {"graph": STEM, "dtype": "fp32", "replaces": LANGUAGE_MODEL}
        if not self.fp32_lm:
            return {**not_written, "fp32": f"not written: {STEM} is written at the language model's dtypes"}
        if not src.holds_model:
            need, room = fused_fp32_bytes(src.model), budget()
            if need > room:
                return {**not_written, "fp32": f"not written: the streamed source builds it from about "
                                               f"{need / 1e9:.1f} GB of memory, {room / 1e9:.1f} GB may be used"}
            entry = fused_variant(src.meta, src.store, onnx_dir, src.tokenizer_dir, None, config, self.report,
                                  lm_spec.tolerance, f"[{STEM}]")
            self.stop_on_mismatch(STEM)
            return entry
        spec = built_specs(self.specs)[0]
        with step(f"[{STEM}] build"):
            entry = spec.build(src.model, onnx_dir, src.tokenizer_dir)
        with step(f"[{STEM}] validate against {spec.replaces}.onnx ({spec.tensor}, {spec.calls})"):
            check = spec.compare(onnx_dir / f"{spec.name}.onnx", onnx_dir / f"{spec.replaces}.onnx", config)
        for case, c in check.items():
            self.report.checks.append(Check(spec.name, spec.tensor, f"{case},{spec.calls}", c["max_abs_diff"],
                                            spec.tolerance * max(1.0, c["reference_abs_max"])))
        self.stop_on_mismatch(STEM)
        return {**entry, "replaces": spec.replaces, f"check_vs_{spec.replaces}": check}

    def end_to_end(self, tmp: Path, seed: int, text_steps: int, image_steps: int | None, packed: dict,
                   chosen) -> dict:
        """dtype -> (EndToEnd or None, manifest entry): one run per dtype the language model is written at."""
        if not self.validate or text_steps <= 0:
            return {}
        planned = chosen.line if chosen.image_steps is not None and chosen.image_steps != image_steps else None
        runs = ([(None, None)] if self.fp32_lm else []) + [(q, packed[q.name]) for q in self.quants]
        return {q.name if q else "fp32": end_to_end.check(self.src, self.specs, tmp, seed, q, p, text_steps,
                                                          image_steps, planned if q is None else None)
                for q, p in runs}

    def write_manifest(self, tmp: Path, written: dict, variants: dict, fused: dict | None, e2e: dict, chosen,
                       text_steps: int) -> None:
        files = manifests.file_table(tmp)
        lm_gb = language_model_bytes(self.src.model) / 1e9
        graphs = {}
        for spec in self.specs:
            own = {p.relative_to(tmp).as_posix(): None for p in written.get(spec.name, [])}
            graphs[spec.name] = graph_entry(
                spec, OPSET, {rel: files[rel] for rel in own} if own else None,
                self.report.graph_max_diff(spec.name) if self.validate else None, NOT_WRITTEN.format(gb=lm_gb))
        if fused is not None:
            graphs[STEM] = fused
        skipped = NO_E2E["off" if self.validate else "no-validate"]
        validation = {"graphs_ok": self.report.ok,
                      "skipped": None if self.validate else "the checks against PyTorch (--no-validate); the fused "
                                                            "decoder was still compared with the language model",
                      "end_to_end": end_to_end.summary({d: entry for d, (_, entry) in e2e.items()}, skipped)}
        manifest = manifests.new(self.src.description, tool_versions(), graphs, files, validation)
        config = manifests.read_json(tmp / "config.json", "config.json")
        for q in self.quants:
            config = q.record(tmp, manifest, config, variants[q.name])
        manifests.write_json_atomic(tmp / "config.json", config)
        manifests.add_files(manifest, tmp, ["config.json"])
        manifest["buffers"] = buffer_limits(tmp / "onnx", [p.stem for p in sorted((tmp / "onnx").glob("*.onnx"))])
        record_buffers(manifest, (tmp,))
        manifest["export"] = {"streamed": not self.src.holds_model, "plan": chosen.line,
                              "fp32_language_model": self.fp32_lm, "dtypes": [q.name for q in self.quants],
                              "fused": self.fused, "text_steps": text_steps}
        manifests.write(tmp, manifest)
