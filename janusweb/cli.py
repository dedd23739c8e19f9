"""The `janusweb` command: export (more subcommands join as they are built)."""

import argparse
import json
import sys
from pathlib import Path

from janusweb import log as logmod
from janusweb.dtypes import STREAM_DEFAULT_DTYPES, dtype, spellings
from janusweb.errors import UserError
from janusweb.interrupt import Interrupted, signals_raise

START_HERE = """start here (the embedded default, `tiny`, takes about a minute):
  janusweb export tiny --out out/tiny             # checkpoint or preset -> validated ONNX bundle
  janusweb quantize out/tiny --dtype int8         # int8 variants + accuracy report
  janusweb serve out/tiny                         # the page, on WebGPU or WASM: http://127.0.0.1:8000/

exit codes: 0 done; 1 validation failed (mismatch); 2 bad input or arguments; 130/143 stopped by SIGINT/SIGTERM"""


def _export(args) -> int:
    """--dtype: a streamed export quantizes while streaming (quantize.stream's quantizers, handed to export);
    a whole-model export runs `janusweb quantize` per dtype on the bundle it wrote."""
    from janusweb.export.driver import MismatchError, export_bundle
    from janusweb.quantize.stream import stream_quantizers
    try:
        out = export_bundle(args.source, Path(args.out), seed=args.seed, allow_mismatch=args.allow_mismatch,
                            text_steps=args.text_steps, image_steps=args.image_steps, fused=not args.no_fused,
                            validate=not args.no_validate, stream=args.stream, dtypes=args.dtype,
                            quantizers=stream_quantizers, fp32_graphs=args.fp32_graphs)
    except MismatchError as e:
        sys.stderr.write(f"janusweb: {e}\n")
        return 1
    if args.dtype and not json.loads((out / "manifest.json").read_text()).get("export", {}).get("streamed"):
        from janusweb.quantize.driver import quantize_bundle
        for name in args.dtype:
            quantize_bundle(out, name)
    return 0


def _end_to_end(args) -> int:
    from janusweb.export.end_to_end import check_bundle
    from janusweb.quantize.stream import stream_quantizers
    entry = check_bundle(Path(args.bundle), stream_quantizers([args.dtype])[0], args.text_steps, args.image_steps)
    image = entry["image"]
    sys.stdout.write(f"end to end ({entry['weights']}{'; ' + entry['shortened'] if entry['shortened'] else ''}): "
                     f"{entry['text_tokens']} text tokens {'equal' if entry['text_equal'] else 'DIFFER'}; "
                     f"{image['summary']}\n")
    return 0 if entry["ok"] else 1


def _quantize(args) -> int:
    from janusweb.quantize.driver import quantize_bundle
    quantize_bundle(Path(args.bundle), args.dtype, block_size=args.block_size, accuracy_level=args.accuracy_level,
                    report=not args.no_report)
    return 0


def _pack(args) -> int:
    from janusweb.pack.driver import write_packs
    write_packs(Path(args.bundle), args.engine, args.dtype)
    return 0


def _bench(args) -> int:
    from janusweb.bench.driver import run_bench
    from janusweb.bench.workload import Workload
    w = Workload(text_tokens=args.text_tokens, image_steps=args.image_steps, repeats=args.repeats,
                 image_counts=tuple(int(n) for n in args.images.split(",")))
    run_bench(Path(args.bundle), args.backends.split(","), Path(args.out), w, browser=args.browser,
              headed=args.headed, dtypes=args.dtypes.split(",") if args.dtypes else None,
              page=Path(args.page) if args.page else None, kv_cache=args.kv_cache, driver=args.driver)
    return 0


def _bench_kernels(args) -> int:
    from janusweb.bench.kernels import report_md, run_kernels
    m, k, n = (int(v) for v in args.shape.split("x"))
    rep = run_kernels(Path(args.out), args.backends.split(","), m, k, n, repeats=args.repeats,
                      executable=args.browser, page=Path(args.page) if args.page else None, driver=args.driver)
    sys.stdout.write(report_md(rep))
    return 0


def _build_web(args) -> int:
    from janusweb.site.page import build_site
    out = build_site(Path(args.bundle), Path(args.out))
    sys.stdout.write(f"site written to {out}\n")
    return 0


def _serve(args) -> int:
    from janusweb.site.serve import serve
    serve(Path(args.path), args.host, args.port)
    return 0


def _env(args) -> int:
    from janusweb.env import versions
    for name, version in versions().items():
        sys.stdout.write(f"{name:<14} {version}\n")
    return 0


def _pack_dtypes(engine: str):
    """--dtype's type for one packer: a comma-separated list, each checked by janusweb.pack.check_dtype (which
    the pack driver also runs), without importing the packer."""
    from janusweb.pack import check_dtype

    def parse(value: str) -> list:
        names = value.split(",")
        try:
            for name in names:
                check_dtype(engine, name)
        except UserError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return names
    return parse


def _quantized_list(value: str) -> list:
    names = value.split(",")
    blocked = [s for s in spellings(quantized=True) if dtype(s).block_size]
    bad = [n for n in names if n not in blocked]
    if bad:
        raise argparse.ArgumentTypeError(f"{', '.join(bad)}: export writes the variants {', '.join(blocked)}")
    return names


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (0..65535; 0 picks a free one)")
    return port


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line on stderr, as every other error (argparse's adds the usage)
        command = self.prog.removeprefix("janusweb").strip()
        self.exit(2, f"janusweb: error: {command + ': ' if command else ''}{message} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    # global flags, accepted before or after the subcommand (SUPPRESS: a subcommand that does not see the flag
    # leaves the value set before it alone)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress output")
    p = _Parser(prog="janusweb", description="Janus-Pro to validated ONNX and a WebGPU page.", epilog=START_HERE,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quiet", action="store_true", help="no progress output")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add = sub.add_parser
    sub.add_parser = lambda *a, **k: _add(*a, parents=[common], **k)  # every subcommand lists the global flags

    e = sub.add_parser("export", help="export a checkpoint or preset to a validated ONNX bundle")
    e.add_argument("source", help="a local checkpoint folder (transformers or DeepSeek layout) or a preset: "
                                  "tiny, janus-pro-1b, janus-pro-7b")
    e.add_argument("--out", required=True, help="bundle folder to write (replaced atomically)")
    e.add_argument("--seed", type=int, default=0, help="seed of preset weights and validation inputs")
    e.add_argument("--allow-mismatch", action="store_true", help="keep the bundle even if validation fails")
    e.add_argument("--text-steps", type=int, default=32, help="greedy tokens compared end to end (default 32)")
    e.add_argument("--no-fused", action="store_true",
                   help="skip the WebGPU decoder language_model_gqa (the page then runs language_model everywhere)")
    e.add_argument("--stream", action="store_true",
                   help="export graph by graph from bf16 weights, the language model layer by layer (less memory; the "
                        "end-to-end run makes one decoder layer at a time, shortened, where the whole model does "
                        "not fit); chosen by itself when the model does not fit")
    e.add_argument("--dtype", type=_quantized_list, default=None,
                   help="comma-separated int8, q4: the variants to write (streamed: quantized while streaming, "
                        f"default {','.join(STREAM_DEFAULT_DTYPES)}; whole-model: `janusweb quantize` after the export)")
    e.add_argument("--fp32-graphs", action="store_true",
                   help="streamed: also write the fp32 language_model.onnx (7B: about 26 GB; not needed by the page)")
    e.add_argument("--image-steps", type=int, default=None,
                   help="image tokens compared end to end (default: all of one image)")
    e.add_argument("--no-validate", action="store_true",
                   help="skip the per-graph checks against PyTorch and the end-to-end runs (benchmark bundles of "
                        "random presets; the fused decoder is still checked against language_model)")
    e.set_defaults(run=_export)

    t = sub.add_parser("end-to-end", help="run a streamed bundle's end-to-end check against its source (text "
                                          "and image steps vs PyTorch) and record it in the manifest")
    t.add_argument("bundle", help="a bundle folder written by `janusweb export --stream`")
    t.add_argument("--dtype", default="q4", choices=[s for s in spellings(quantized=True) if dtype(s).block_size],
                   help="the language model variant (default q4)")
    t.add_argument("--text-steps", type=int, default=32, help="greedy tokens compared (default 32; shortened "
                                                              "when the decoder layers are made on demand)")
    t.add_argument("--image-steps", type=int, default=None, help="image tokens compared (default: all of one "
                                                                 "image; shortened likewise)")
    t.set_defaults(run=_end_to_end)

    q = sub.add_parser("quantize", help="write int8 / q4 / fp16 variants of a bundle's graphs, with a report")
    q.add_argument("bundle", help="a bundle folder written by `janusweb export`")
    q.add_argument("--dtype", required=True, choices=spellings(quantized=True),
                   help="int8 (MatMulNBits bits=8), q4 (4 bits; alias int4) or fp16")
    q.add_argument("--block-size", type=int, default=None, help="weights per scale, a power of two >= 16 "
                                                                 "(default 32)")
    q.add_argument("--accuracy-level", type=int, default=None,
                   help="MatMulNBits accuracy_level (4 = int8 activations; default: float activations)")
    q.add_argument("--no-report", action="store_true",
                   help="skip the accuracy measurement (sizes only): for a quick variant, e.g. before benchmarks")
    q.set_defaults(run=_quantize)

    g = sub.add_parser("wgsl-pack", help="write the decoder's weights for the page's WGSL kernels (?engine=wgsl)")
    g.add_argument("bundle", help="a bundle folder with language_model_gqa (and its int8 variant for int8)")
    g.add_argument("--dtype", type=_pack_dtypes("wgsl"), default=["int8"],
                   help="comma-separated: fp32, int8, q4 (default int8)")
    g.set_defaults(run=_pack, engine="wgsl")

    from janusweb.pack import PACKERS
    pk = sub.add_parser("pack", help="write a bundle's weights for one of the page's own engines")
    pk.add_argument("bundle", help="a bundle folder written by `janusweb export` (and `janusweb quantize`)")
    pk.add_argument("--engine", required=True, choices=tuple(PACKERS), help="the packer")
    pk.add_argument("--dtype", type=lambda v: v.split(","), default=["int8"],
                    help="comma-separated dtypes (default int8), checked against the engine's by the pack driver")
    pk.set_defaults(run=_pack)

    c = sub.add_parser("cpu-pack", help="write the decoder's and lm_head's weights for the page's CPU engine (WASM)")
    c.add_argument("bundle", help="a bundle folder with language_model_gqa and lm_head (and their variants)")
    c.add_argument("--dtype", type=_pack_dtypes("cpu"), default=["int8"],
                   help="comma-separated: fp32, int8, q4 (default int8)")
    c.set_defaults(run=_pack, engine="cpu")

    b = sub.add_parser("bench", help="run one workload on several backends; write report.json/.md and plots")
    b.add_argument("bundle", help="a bundle folder written by `janusweb export`")
    b.add_argument("--backends", default="webgpu,wasm,native-cuda,native-cpu,ort-cpu",
                   help="comma-separated: webgpu, wasm, native-cuda, native-cpu, ort-cpu, ort-cuda, and "
                        "transformers.js on the same bundle: tjs-webgpu, tjs-wasm")
    b.add_argument("--out", required=True, help="report folder")
    b.add_argument("--text-tokens", type=int, default=128, help="greedy tokens after the image prompt")
    b.add_argument("--image-steps", type=int, default=None, help="image tokens per image (default: all)")
    b.add_argument("--images", default="1,4", help="image counts to generate (default 1,4)")
    b.add_argument("--repeats", type=int, default=3, help="timed runs after warm-up; medians are reported")
    b.add_argument("--browser", default=None, help="Chromium/Chrome executable (default: Debian's chromium)")
    b.add_argument("--headed", action="store_true", help="show the browser window")
    b.add_argument("--dtypes", default=None, help="bundle variants to run, e.g. int8 (default: all it has)")
    b.add_argument("--page", default=None, help="an already built page (web/build.mjs --bench --outdir DIR), "
                                                "for hosts without node")
    b.add_argument("--kv-cache", default="auto",
                   help="WebGPU: the page's decoder engine(s), comma-separated to compare several in one run: auto "
                        "(the page's choice), ort-gqa (the fused language_model_gqa, KV cache bound in place), "
                        "ort-grow or grow (language_model, cache grown per step: the before of before/after), wgsl "
                        "(the page's own WGSL kernels; needs `janusweb wgsl-pack`)")
    b.add_argument("--driver", choices=("auto", "playwright", "http"), default="auto",
                   help="how Chromium is driven: playwright, or http (Chromium on the page's URL, results POSTed "
                        "to a local server; for hosts without Playwright); auto: playwright where installed")
    b.set_defaults(run=_bench)

    k = sub.add_parser("bench-kernels", help="time one 1B-sized MatMul in every weight format, per backend")
    k.add_argument("--out", required=True, help="report folder (replaced atomically)")
    k.add_argument("--backends", default="ort-cpu,wasm,webgpu", help="comma-separated: ort-cpu, wasm, webgpu")
    k.add_argument("--shape", default="2x2048x5632", help="MxKxN (default 2x2048x5632: one 1B MLP projection)")
    k.add_argument("--repeats", type=int, default=20, help="timed calls after 3 warm-up calls")
    k.add_argument("--browser", default=None, help="Chromium/Chrome executable (default: Debian's chromium)")
    k.add_argument("--page", default=None, help="an already built page (web/build.mjs --bench --outdir DIR), "
                                                "for hosts without node")
    k.add_argument("--driver", choices=("auto", "playwright", "http"), default="auto",
                   help="how Chromium is driven (as for bench)")
    k.set_defaults(run=_bench_kernels)

    w = sub.add_parser("build-web", help="write a static site: the page, the bundle under model/, _headers")
    w.add_argument("bundle", help="a bundle folder written by `janusweb export`")
    w.add_argument("--out", required=True, help="site folder to write (replaced atomically)")
    w.set_defaults(run=_build_web)

    s = sub.add_parser("serve", help="serve a bundle (or a built site) with the page, on WebGPU or WASM")
    s.add_argument("path", help="a bundle folder, or a site written by `janusweb build-web`")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0 picks a free one)")
    s.set_defaults(run=_serve)

    v = sub.add_parser("env", help="print versions of the tools janusweb uses")
    v.set_defaults(run=_env)
    return p


def main(argv=None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a refused argument (2, its line already written)
        return e.code
    logmod.setup(quiet=args.quiet)
    try:
        with signals_raise():
            return args.run(args)
    except UserError as e:
        sys.stderr.write(f"janusweb: error: {e}\n")
        return e.exit_code
    except Interrupted as e:
        sys.stderr.write(f"janusweb: {args.command} stopped by {e} (temporary files removed)\n")
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
