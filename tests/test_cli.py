"""The command line: global flags on either side of the subcommand, arguments refused by the parser before any
heavy import, and an export stopped by SIGINT/SIGTERM (one line, 130/143, no temporary folder left) or killed
(its leftovers removed by the next run)."""

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from janusweb.atomic import atomic_dir
from janusweb.cli import parser
from janusweb.log import log

CLI = [sys.executable, "-m", "janusweb"]


def run(*args, timeout=60):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("argv", [["export", "tiny", "--out", "X", "--quiet"],
                                  ["--quiet", "export", "tiny", "--out", "X"]])
def test_global_flags_on_either_side(argv):
    assert parser().parse_args(argv).quiet is True
    assert parser().parse_args(["export", "tiny", "--out", "X"]).quiet is False


@pytest.mark.parametrize("command", ["export", "quantize", "wgsl-pack", "bench", "build-web", "serve", "env"])
def test_every_subcommand_lists_the_global_flags(command):
    done = run(command, "--help")
    assert done.returncode == 0 and "--quiet" in done.stdout


def test_help_has_a_start_here_block():
    out = run("--help").stdout
    assert "start here" in out and "janusweb export tiny --out" in out and "exit codes" in out


@pytest.mark.parametrize("argv,word", [
    (["quantize", "B", "--dtype", "int7"], "int7"),
    (["wgsl-pack", "B", "--dtype", "fp32,q2"], "q2"),
    (["serve", "B", "--port", "99999"], "99999"),
    (["serve", "B", "--port", "http"], "http"),
])
def test_bad_arguments_are_refused_by_the_parser(argv, word):
    t0 = time.perf_counter()
    done = run(*argv)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and word in lines[0], done.stderr
    assert time.perf_counter() - t0 < 5  # before torch / onnxruntime are imported (int7 took ~9 s before)


@pytest.mark.parametrize("name", ["q4", "int4", "int8", "fp16"])
def test_quantize_dtype_names(name):
    assert parser().parse_args(["quantize", "B", "--dtype", name]).dtype == name


def _leftovers(parent: Path) -> list:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".term."))


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_export_stopped_by_a_signal_cleans_up(tmp_path, sig, code):
    out = tmp_path / "term"
    proc = subprocess.Popen([*CLI, "export", "tiny", "--out", str(out), "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not _leftovers(tmp_path) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert _leftovers(tmp_path), "export never started its temporary folder"
    time.sleep(3)  # inside the export of the graphs
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and signal.Signals(sig).name in lines[0], err
    assert _leftovers(tmp_path) == [] and not out.exists()


def test_leftovers_of_a_killed_run_are_removed_by_the_next(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / f".term.tmp-{dead.pid}-abcd1234").mkdir()  # the shape of a SIGKILLed run's folder
    (tmp_path / f".term.old-{dead.pid}").mkdir()
    (tmp_path / f".term.tmp-{os.getpid()}-live").mkdir()  # a run still going (this process): kept
    (tmp_path / ".term.tmp-k2x9ab_q").mkdir()  # an older janusweb's name, owner unknown: kept and named
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.INFO)
    try:
        with atomic_dir(tmp_path / "term") as tmp:
            (tmp / "f").write_text("x")
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    assert _leftovers(tmp_path) == sorted([".term.tmp-k2x9ab_q", f".term.tmp-{os.getpid()}-live"])
    assert any(".term.tmp-k2x9ab_q" in r.getMessage() for r in records)
    assert (tmp_path / "term" / "f").read_text() == "x"
