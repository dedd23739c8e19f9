"""`janusweb bench gpu plan|stage|step1|step2|collect|chain|rehearse` (bench/gpu/README.md)."""

import argparse
import sys
from pathlib import Path

from janusweb import log as logmod
from janusweb.errors import UserError

REPO = Path(__file__).resolve().parents[2]


def main(argv: list) -> int:
    p = argparse.ArgumentParser(prog="janusweb bench gpu", description=__doc__)
    sub = p.add_subparsers(dest="what", required=True)
    sub.add_parser("plan", help="print the calls: command, carry, time limit, expected time")
    s = sub.add_parser("stage", help="here: fill .carry/gpu1 and .carry/gpu2, check each call's size")
    s.add_argument("--pack", default=None, help="pack.sh's output folder (part1/, part2/)")
    s.add_argument("--kit", default=None, help="../shared/gpu-browser (env.sh); default: found beside the repo")
    s.add_argument("--page", default=None, help="a built page (web/build.mjs --bench); default: build one (node)")
    s.add_argument("--wheels", default=None, help="a folder holding the pinned wheels; default: pip download")
    for name in ("step1", "chain"):
        c = sub.add_parser(name, help="on the host: " + ("stage part 1, start the chain" if name == "step1"
                                                         else "export, quantize, pack, kernels, bench"))
        c.add_argument("--model", default="janus-pro-1b")
        c.add_argument("--quick", action="store_true", help="the CI rehearsal's short workload")
        c.add_argument("--carry", default=".carry/gpu1")
    c = sub.add_parser("step2", help="on the host: page + Chromium part 2, then collect")
    c.add_argument("--carry", default=".carry/gpu2")
    c.add_argument("--until", type=int, default=540, help="wait at most until this many s after step1")
    c = sub.add_parser("collect", help="on the host: wait for the chain, copy its results to $OUT")
    c.add_argument("--until", type=int, default=660, help="wait at most until this many s after step1")
    r = sub.add_parser("rehearse", help="here: the same calls from clean folders, on tiny, software WebGPU")
    r.add_argument("--work", required=True, help="an empty folder (the simulated host's /tmp)")
    r.add_argument("--model", default="tiny")
    r.add_argument("--quick", action="store_true")
    r.add_argument("--pack", default=None)
    r.add_argument("--page", default=None)
    r.add_argument("--wheels", default=None)
    args = p.parse_args(argv)
    logmod.setup(quiet=False)
    try:
        return _run(args)
    except UserError as e:
        sys.stderr.write(f"janusweb: error: {e}\n")
        return 2


def _run(args) -> int:
    from janusweb.bench.gpu import host, plan
    if args.what == "plan":
        sys.stdout.write(plan.table() + "\n")
        return 0
    if args.what == "step1":
        return host.step1(args.model, args.quick, Path(args.carry))
    if args.what == "chain":
        from janusweb.bench.gpu.chain import chain
        return chain(args.model, args.quick)
    if args.what == "step2":
        return host.step2(Path(args.carry), args.until)
    if args.what == "collect":
        return host.collect(args.until)
    from janusweb.bench.gpu import rehearse, stage
    kit = Path(args.kit) if getattr(args, "kit", None) else rehearse.find_kit(REPO)
    if args.what == "stage":
        carried = stage.stage(REPO, kit, args.pack and Path(args.pack), args.page and Path(args.page),
                              args.wheels and Path(args.wheels))
        sys.stdout.write("\n".join(stage.check_sizes(REPO, carried, stage.missing_parts(args.pack))) + "\n")
        return 0
    return rehearse.rehearse(REPO, kit, Path(args.work), args.model, args.quick, args.pack and Path(args.pack),
                             args.page and Path(args.page), args.wheels and Path(args.wheels))

