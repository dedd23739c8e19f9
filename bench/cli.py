"""`janusweb bench SCENARIO [--PARAM v1,v2 ...]`: the benchmark's own parser (janusweb/cli.py hands it every
argument after `bench`). Every scenario's parameters become options; a list-valued one takes comma-separated
values and every combination runs. `--suite NAME` takes a named parameter set from bench/suites.json (what the
command line gives wins). `janusweb bench gpu ...` is the GPU-host kit (bench/gpu/README.md)."""

import argparse
import datetime
import json
import sys
import textwrap
from pathlib import Path

from janusweb import log as logmod
from janusweb.bench import scenarios
from janusweb.cli import _Parser
from janusweb.errors import UserError

SUITES = Path(__file__).with_name("suites.json")
RESULTS_ROOT = Path("bench/results")


def suites() -> dict:
    return json.loads(SUITES.read_text())


def epilog() -> str:
    lines = ["named suites (janusweb bench SCENARIO --suite NAME ...):"]
    for name, s in suites().items():
        lines += textwrap.wrap(f"{s['scenario']}: {s['about']}", 104, initial_indent=f"  {name:<14} ",
                               subsequent_indent=" " * 17)
    lines += ["", "results: bench/results/<date>-<host>-<scenario>[-<label>]/ (report.md, report.json, rows.csv, "
              "rows.jsonl); exit 1 when a row failed or a verdict is not met",
              "the GPU-host kit: janusweb bench gpu plan|stage|rehearse|step1|step2|collect|chain (bench/gpu/README.md)"]
    return "\n".join(lines)


def choices(prm) -> str:
    return f"; one of {', '.join(map(str, prm.choices))}" if prm.choices else ""


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="janusweb bench", description="Benchmarks: one command, list-valued parameters, every "
                "combination run, one results schema.", epilog=epilog(),
                formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, max_help_position=20,
                                                                                  width=110))
    p.add_argument("--quiet", action="store_true", help="no progress output")
    sub = p.add_subparsers(dest="scenario", required=True, parser_class=_Parser, metavar="SCENARIO")
    for name in scenarios.NAMES:
        s = scenarios.load(name)
        sp = sub.add_parser(name, help=s.summary, description=(type(s).__doc__ or "").strip(),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        for prm in s.params:
            default = ",".join(map(str, prm.default)) if isinstance(prm.default, tuple) else prm.default
            sp.add_argument(prm.flag, dest=prm.name, default=None, metavar="V[,V...]" if prm.multi else "V",
                            help=f"{prm.help}{choices(prm)} (default: "
                                 f"{'required' if default is None and prm.multi else default})")
        sp.add_argument("--suite", default=None, help="a named parameter set from bench/suites.json")
        sp.add_argument("--out", default=None, help="results folder (default: --results/<date>-<host>-<scenario>"
                                                    "[-<label>]; replaced atomically)")
        sp.add_argument("--results", default=str(RESULTS_ROOT), help="where results folders go (default "
                                                                      "bench/results)")
        sp.add_argument("--label", default="", help="a word for the results folder's name and the report's title")
        sp.add_argument("--quiet", action="store_true", help="no progress output")
        sp.set_defaults(load=name)
    sub.add_parser("gpu", help="the GPU-host kit (bench/gpu/README.md): plan, stage, rehearse, step1, step2, "
                               "collect, chain", add_help=False, prefix_chars="\0").add_argument(
        "rest", nargs=argparse.REMAINDER)
    return p


def values(scenario, args, suite: dict) -> dict:
    """Every parameter's value(s): the command line's, else the suite's, else the default."""
    out = {}
    for prm in scenario.params:
        given = getattr(args, prm.name)
        if given is None and prm.name in suite:
            given = suite[prm.name]
            given = ",".join(map(str, given)) if isinstance(given, list) else str(given)
        if given is None:
            if prm.default is None and prm.multi:
                raise ValueError(f"{prm.flag} is required")
            out[prm.name] = prm.default
        else:
            out[prm.name] = prm.parse(given)
    return out


def main(argv: list) -> int:
    p = parser()
    try:
        args = p.parse_args(argv)
    except SystemExit as e:  # --help (0) or a refused argument (2, its line already written)
        return e.code
    if args.scenario == "gpu":
        from janusweb.bench.gpu.cli import main as gpu_main
        return gpu_main(args.rest)
    if args.quiet:
        logmod.setup(quiet=True)
    scenario = scenarios.load(args.load)
    suite = {}
    if args.suite:
        known = suites()
        if args.suite not in known or known[args.suite]["scenario"] != scenario.name:
            ours = [n for n, s in known.items() if s["scenario"] == scenario.name]
            raise UserError(f"no suite {args.suite!r} for {scenario.name}; its suites: {', '.join(ours) or 'none'}")
        suite = known[args.suite]["params"]
    try:
        vals = values(scenario, args, suite)
    except ValueError as e:
        sys.stderr.write(f"janusweb: error: bench {scenario.name}: {e} (see janusweb bench {scenario.name} --help)\n")
        return 2
    from janusweb.bench import driver, host, results
    label = args.label or (args.suite or "")
    out = Path(args.out) if args.out else results.folder(
        Path(args.results), datetime.date.today().isoformat(), host.slug(host.host()), scenario.name, label)
    report = driver.bench(scenario, vals, argv, out, label)
    if not args.quiet:
        sys.stdout.write(results.markdown(report))
    return driver.exit_code(report)
