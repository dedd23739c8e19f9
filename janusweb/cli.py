"""The `janusweb` command: one subcommand per job, and the one error boundary every subcommand ends through.

Each subcommand names the path it works on (`target`: its bundle, or its output) and how it holds it (`lock`:
"exclusive" for a writer of the bundle, "shared" for a reader that must not see it change; janusweb.lock). main()
turns whatever ends a command into one line on stderr and the README's exit code: UserError and any
operating-system error (no space left, read-only, permission denied, a name too long...: the path and the cause)
exit 2, a failed validation 1, SIGINT/SIGTERM 130/143, and anything else, a bug, 3 with its traceback written to a
file that the line names."""

import argparse
import os
import sys
import tempfile
import traceback
from contextlib import nullcontext
from pathlib import Path

from janusweb import log as logmod
from janusweb.dtypes import dtype, spellings
from janusweb.errors import UserError, find_os_error, os_error_line
from janusweb.interrupt import Interrupted, exit_outside_work, signals_raise

START_HERE = """start here (the `tiny` preset, random weights, takes about a minute; in a checkout, models/shapes is
the trained embedded default that `make demo` exports the same way):
  janusweb export tiny --out out/tiny             # checkpoint or preset -> validated ONNX bundle
  janusweb quantize out/tiny --dtype int8         # int8 variants + accuracy report
  janusweb serve out/tiny                         # the page, on WebGPU or WASM: http://127.0.0.1:8000/

exit codes: 0 done; 1 validation failed (mismatch); 2 bad input, arguments or file system (no space, read-only...);
3 internal error (a bug: the line names a file with the traceback); 130/143 stopped by SIGINT/SIGTERM"""
INTERNAL_ERROR = 3


def _export(args) -> int:
    """--dtype's quantizers are quantize.stream's, handed to export (which never imports quantize)."""
    from janusweb.export.driver import MismatchError, export_bundle
    from janusweb.quantize.stream import stream_quantizers
    try:
        export_bundle(args.source, Path(args.out), seed=args.seed, allow_mismatch=args.allow_mismatch,
                      text_steps=args.text_steps, image_steps=args.image_steps, fused=not args.no_fused,
                      validate=not args.no_validate, stream=args.stream, dtypes=args.dtype,
                      quantizers=stream_quantizers, fp32_graphs=args.fp32_graphs)
    except MismatchError as e:
        sys.stderr.write(f"janusweb: {e}\n")
        return 1
    return 0


def _end_to_end(args) -> int:
    from janusweb.export.end_to_end import check_bundle
    from janusweb.quantize.stream import stream_quantizers
    quant = None if args.dtype == "fp32" else stream_quantizers([args.dtype])[0]
    entry = check_bundle(Path(args.bundle), quant, args.text_steps, args.image_steps)
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
    from janusweb.bench.cli import main as bench_main
    quiet = getattr(args, "quiet", False) and "--quiet" not in args.rest
    return bench_main(args.rest + (["--quiet"] if quiet else []))


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


def _train(args) -> int:
    # Set before torch loads: OpenMP threads that spin while they wait take the time slices their partner needs
    # when other work shares the cores (a training step measured 10x slower at load 13); sleeping waiters compute
    # the same bytes.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from janusweb.train.train import Config, main
    main(Path(args.out), Config(seed=args.seed))
    return 0


def _generate(args) -> int:
    from janusweb.bundle_run import generate
    generate(Path(args.bundle), args.prompt, Path(args.out), n=args.n, guidance=args.guidance,
             temperature=args.temperature, seed=args.seed, dtype=args.dtype)
    return 0


def _chat(args) -> int:
    from janusweb.bundle_run import chat
    chat(Path(args.bundle), args.text, Path(args.image) if args.image else None, dtype=args.dtype,
         max_new_tokens=args.max_new_tokens)
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


def _count(value: str) -> int:
    n = _whole(value)
    if not 1 <= n <= 16:
        raise argparse.ArgumentTypeError(f"{n} images: choose 1 to 16")
    return n


def _whole(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None


def _at_least(minimum: int, maximum: int | None = None, what: str = ""):
    """An int type for argparse within [minimum, maximum]."""
    def parse(value: str) -> int:
        n = _whole(value)
        if n < minimum or maximum is not None and n > maximum:
            bounds = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
            raise argparse.ArgumentTypeError(f"{n} is out of range: {what + ' is ' if what else 'it must be '}{bounds}")
        return n
    return parse


SEED = _at_least(0, 2**32 - 1, "a 32-bit seed")


def _block_size(value: str) -> int:
    n = _whole(value)
    if n < 16 or n & (n - 1):
        raise argparse.ArgumentTypeError(f"{n} is not a power of two >= 16")
    return n


def _port(value: str) -> int:
    port = _whole(value)
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
    e.add_argument("--seed", type=SEED, default=0, help="seed of preset weights and validation inputs (0..2^32-1)")
    e.add_argument("--allow-mismatch", action="store_true", help="keep the bundle even if validation fails")
    e.add_argument("--text-steps", type=_at_least(0), default=32,
                   help="greedy tokens compared end to end (default 32; 0 skips the text run)")
    e.add_argument("--no-fused", action="store_true",
                   help="skip the WebGPU decoder language_model_gqa (the page then runs language_model everywhere)")
    e.add_argument("--stream", action="store_true",
                   help="export graph by graph from bf16 weights, the language model layer by layer (less memory; the "
                        "end-to-end run makes one decoder layer at a time, shortened, where the whole model does "
                        "not fit); chosen by itself when the whole model does not fit in the memory available")
    e.add_argument("--dtype", type=_quantized_list, default=None,
                   help="comma-separated int8, q4: the quantized variants to write (the language model and its fused "
                        "decoder quantized while streaming; default: none, q4 for a language model over 16 GB in fp32)")
    e.add_argument("--fp32-graphs", action=argparse.BooleanOptionalAction, default=None,
                   help="write the fp32 language model and fused decoder too (default: only when no --dtype is "
                        "given; 7B: about 26 GB, not needed by the page)")
    e.add_argument("--image-steps", type=_at_least(1), default=None,
                   help="image tokens compared end to end (default: all of one image)")
    e.add_argument("--no-validate", action="store_true",
                   help="skip the per-graph checks against PyTorch and the end-to-end runs (benchmark bundles of "
                        "random presets; the fused decoder is still checked against language_model)")
    e.set_defaults(run=_export, target="out", lock="exclusive")

    t = sub.add_parser("end-to-end", help="run a bundle's end-to-end check against its source (text and image "
                                          "steps vs PyTorch) and record it in the manifest")
    t.add_argument("bundle", help="a bundle folder written by `janusweb export` (e.g. with --text-steps 0)")
    t.add_argument("--dtype", default="q4",
                   choices=["fp32", *(s for s in spellings(quantized=True) if dtype(s).block_size)],
                   help="the language model's dtype (default q4)")
    t.add_argument("--text-steps", type=_at_least(0), default=32, help="greedy tokens compared (default 32; shortened "
                                                              "when the decoder layers are made on demand)")
    t.add_argument("--image-steps", type=_at_least(1), default=None, help="image tokens compared (default: all of one "
                                                                 "image; shortened likewise)")
    t.set_defaults(run=_end_to_end, target="bundle", lock="exclusive")

    q = sub.add_parser("quantize", help="write int8 / q4 / fp16 variants of a bundle's graphs, with a report")
    q.add_argument("bundle", help="a bundle folder written by `janusweb export`")
    q.add_argument("--dtype", required=True, choices=spellings(quantized=True),
                   help="int8 (MatMulNBits bits=8), q4 (4 bits; alias int4) or fp16")
    q.add_argument("--block-size", type=_block_size, default=None, help="weights per scale, a power of two >= 16 "
                                                                 "(default 32)")
    q.add_argument("--accuracy-level", type=int, default=None, choices=(0, 1, 2, 3, 4),
                   help="MatMulNBits accuracy_level (4 = int8 activations; default: float activations)")
    q.add_argument("--no-report", action="store_true",
                   help="skip the accuracy measurement (sizes only): for a quick variant, e.g. before benchmarks")
    q.set_defaults(run=_quantize, target="bundle", lock="exclusive")

    from janusweb.pack import PACKERS
    pk = sub.add_parser("pack", help="write a bundle's weights for one of the page's own engines: "
                                     f"{', '.join(PACKERS)}")
    engines = pk.add_subparsers(dest="engine", required=True, parser_class=_Parser, metavar="ENGINE")
    for name, packer in PACKERS.items():
        _pack_parser(engines.add_parser(name, help=packer.summary, parents=[common]), name)
    for name in PACKERS:  # the older spellings `wgsl-pack`, `cpu-pack`: still accepted, not listed
        _pack_parser(_add(f"{name}-pack", parents=[common], prog=f"janusweb pack {name}"), name)

    # every argument after `bench` goes to the benchmark's own parser (janusweb/bench/cli.py: its scenarios
    # and their parameters; `janusweb bench --help` lists them)
    b = sub.add_parser("bench", help="benchmarks: janusweb bench SCENARIO [--PARAM v1,v2 ...] (every combination "
                                     "run; janusweb bench --help lists the scenarios)", add_help=False,
                       prefix_chars="\0")
    b.add_argument("rest", nargs=argparse.REMAINDER)
    b.set_defaults(run=_bench, target=None, lock=None)  # (its scenarios check and hold the bundles they read)

    tr = sub.add_parser("train", help="train the shapes model from scratch (about 30 min on 2 cores): a checkpoint "
                                      "folder in transformers layout with its model card")
    tr.add_argument("--out", required=True, help="checkpoint folder to write (replaced atomically), e.g. models/shapes")
    tr.add_argument("--seed", type=SEED, default=0, help="seed of the data, the held-out pairs and the weights")
    tr.set_defaults(run=_train, target=None, lock=None)  # its output is replaced atomically

    gn = sub.add_parser("generate", help="draw images from a prompt with a bundle on onnxruntime (PNGs + JSON)")
    gn.add_argument("bundle", help="a bundle folder written by `janusweb export`")
    gn.add_argument("--prompt", required=True, help="what to draw, e.g. 'a red circle in the top left'")
    gn.add_argument("--out", required=True, help="folder to write image-N.png and generation.json into (replaced)")
    gn.add_argument("--n", type=_count, default=1, help="images from one prompt (1-16, default 1)")
    gn.add_argument("--guidance", type=float, default=5.0, help="classifier-free guidance scale (default 5)")
    gn.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (0: greedy; default 1)")
    gn.add_argument("--seed", type=SEED, default=0, help="seed of the draws (the page's: same seed, same images)")
    gn.add_argument("--dtype", default="fp32", choices=spellings(), help="the bundle's variant to run (default fp32)")
    gn.set_defaults(run=_generate, target="bundle", lock="shared")

    ch = sub.add_parser("chat", help="answer a question (about an image) with a bundle on onnxruntime, streamed")
    ch.add_argument("bundle", help="a bundle folder written by `janusweb export`")
    ch.add_argument("text", help="the question, e.g. 'What colour is the shape?'")
    ch.add_argument("--image", default=None, help="an image file (PNG, JPEG, ...) the question is about")
    ch.add_argument("--dtype", default="fp32", choices=spellings(), help="the bundle's variant to run (default fp32)")
    ch.add_argument("--max-new-tokens", type=_at_least(1), default=64, help="longest answer in tokens (default 64)")
    ch.set_defaults(run=_chat, target="bundle", lock="shared")

    w = sub.add_parser("build-web", help="write a static site: the page, the bundle under model/, _headers")
    w.add_argument("bundle", help="a bundle folder written by `janusweb export`")
    w.add_argument("--out", required=True, help="site folder to write (replaced atomically)")
    w.set_defaults(run=_build_web, target="bundle", lock="shared")

    s = sub.add_parser("serve", help="serve a bundle (or a built site) with the page, on WebGPU or WASM")
    s.add_argument("path", help="a bundle folder, or a site written by `janusweb build-web`")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0 picks a free one)")
    s.set_defaults(run=_serve, target="path", lock=None)

    v = sub.add_parser("env", help="print versions of the tools janusweb uses")
    v.set_defaults(run=_env, target=None, lock=None)
    sub.metavar = "{" + ",".join(a.dest for a in sub._choices_actions) + "}"  # the listed commands only
    return p


def _held(args):
    """The subcommand's lock on its target (janusweb.lock), for its whole run."""
    if not args.lock:
        return nullcontext()
    from janusweb.lock import bundle_lock
    return bundle_lock(Path(getattr(args, args.target)), shared=args.lock == "shared")


def _internal_error(args, error: Exception) -> int:
    """A bug: one line, and the traceback in a file for the report."""
    first = (str(error).strip().splitlines() or [""])[0]
    try:
        fd, path = tempfile.mkstemp(prefix=f"janusweb-traceback-{os.getpid()}-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            f.write(f"janusweb {' '.join(sys.argv[1:])}\n")
            traceback.print_exception(error, file=f)
        where = f"; the traceback is in {path}"
    except OSError:
        where = ""
    sys.stderr.write(f"janusweb: internal error in {args.command}: {type(error).__name__}: {first} (a bug in "
                     f"janusweb{where})\n")
    return INTERNAL_ERROR


def _pack_parser(parser: argparse.ArgumentParser, engine: str) -> None:
    from janusweb.pack import PACKERS
    parser.add_argument("bundle", help="a bundle folder written by `janusweb export` (with the graphs the pack is "
                                       "made from at each dtype)")
    parser.add_argument("--dtype", type=_pack_dtypes(engine), default=["int8"],
                        help=f"comma-separated: {', '.join(PACKERS[engine].dtypes)} (default int8)")
    parser.set_defaults(run=_pack, engine=engine, target="bundle", lock="exclusive")


def main(argv=None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a refused argument (2, its line already written)
        return e.code
    logmod.setup(quiet=args.quiet)
    try:
        with signals_raise(), _held(args):
            return args.run(args)
    except UserError as e:
        sys.stderr.write(f"janusweb: error: {e}\n")
        return e.exit_code
    except Interrupted as e:
        sys.stderr.write(f"janusweb: {args.command} stopped by {e} (temporary files removed; what it had already "
                         "renamed into place is whole)\n")
        return e.exit_code
    except MemoryError:
        sys.stderr.write(f"janusweb: error: {args.command} ran out of memory\n")
        return UserError.exit_code
    except Exception as e:  # noqa: BLE001 (the boundary: every other error becomes one line)
        found = find_os_error(e)
        if found is None:
            return _internal_error(args, e)
        from janusweb.atomic import public_path
        code, path = found
        target = getattr(args, "out", None) or (getattr(args, args.target) if args.target else args.command)
        sys.stderr.write(f"janusweb: error: {os_error_line(code, public_path(path), target)}\n")
        return UserError.exit_code


def entry() -> None:
    """The console script: main(), then out at once (the interpreter's teardown of torch and onnxruntime takes
    seconds, during which a signal would end the process without a word)."""
    exit_outside_work()
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:  # a closed pipe: nothing more can be said
            pass
    os._exit(code)


if __name__ == "__main__":
    entry()
