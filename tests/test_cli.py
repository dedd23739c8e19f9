"""The command line: global flags on either side of the subcommand, arguments refused by the parser before any
heavy import, and an export stopped by SIGINT/SIGTERM (one line, 130/143, no temporary folder left) or killed
(its leftovers removed by the next run)."""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from janusweb.atomic import atomic_dir
from janusweb.bundle_check import check_bundle
from janusweb.cli import main, parser
from janusweb.export.checkpoint import load_source
from janusweb.integrity import verify_files
from janusweb.log import log

CLI = [sys.executable, "-m", "janusweb"]


def run(*args, timeout=60):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("argv", [["export", "tiny", "--out", "X", "--quiet"],
                                  ["--quiet", "export", "tiny", "--out", "X"]])
def test_global_flags_on_either_side(argv):
    assert parser().parse_args(argv).quiet is True
    assert parser().parse_args(["export", "tiny", "--out", "X"]).quiet is False


@pytest.mark.parametrize("command", [["export"], ["quantize"], ["pack", "wgsl"], ["pack", "cpu"], ["wgsl-pack"],
                                     ["bench"], ["build-web"], ["serve"], ["env"]])
def test_every_subcommand_lists_the_global_flags(command):
    done = run(*command, "--help")
    assert done.returncode == 0 and "--quiet" in done.stdout


def test_pack_subcommands_come_from_the_packers():
    """`janusweb pack ENGINE` for every packer of PACKERS, its dtypes in its help; the older `wgsl-pack` and
    `cpu-pack` still parse to the same command but are not listed."""
    from janusweb.pack import PACKERS

    listed = run("pack", "--help").stdout
    for engine, packer in PACKERS.items():
        assert engine in listed
        assert ", ".join(packer.dtypes) in run("pack", engine, "--help").stdout
        for argv in (["pack", engine, "B"], [f"{engine}-pack", "B"]):
            args = parser().parse_args([*argv, "--dtype", "int8,q4"])
            assert (args.engine, args.bundle, args.dtype) == (engine, "B", ["int8", "q4"])
    assert "wgsl-pack" not in run("--help").stdout and "cpu-pack" not in run("--help").stdout


def test_help_has_a_start_here_block():
    out = run("--help").stdout
    assert "start here" in out and "janusweb export tiny --out" in out and "exit codes" in out


@pytest.mark.parametrize("argv,word", [
    (["quantize", "B", "--dtype", "int7"], "int7"),
    (["wgsl-pack", "B", "--dtype", "fp32,q2"], "q2"),
    (["pack", "wgsl", "B", "--dtype", "fp32,q2"], "q2"),
    (["pack", "cpu", "B", "--dtype", "fp16"], "fp16"),
    (["pack", "webgpu", "B"], "webgpu"),
    (["serve", "B", "--port", "99999"], "99999"),
    (["serve", "B", "--port", "http"], "http"),
    (["export", "tiny", "--out", "X", "--seed", "99999999999999999999"], "99999999999999999999"),
    (["export", "tiny", "--out", "X", "--seed", "-1"], "-1"),
    (["export", "tiny", "--out", "X", "--image-steps", "-1"], "-1"),
    (["export", "tiny", "--out", "X", "--text-steps", "-5"], "-5"),
    (["end-to-end", "B", "--text-steps", "-5"], "-5"),
    (["quantize", "B", "--dtype", "int8", "--block-size", "24"], "24"),
    (["quantize", "B", "--dtype", "int8", "--accuracy-level", "7"], "7"),
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


def test_what_libraries_log_while_unwinding_from_a_signal_is_not_shown(caplog):
    """torch's export, stopped inside a guard, logs that guard as an error with its stack while the signal's exception
    passes through it (seen under load: 32 lines before the CLI's one). From the signal until signals_raise ends,
    nothing is logged; after it, logging works again."""
    from janusweb.interrupt import Interrupted, signals_raise
    torch_like = logging.getLogger("janusweb-test.torch._guards")
    with caplog.at_level(logging.INFO):
        with pytest.raises(Interrupted):
            with signals_raise():
                torch_like.error("before the signal")
                try:
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(5)
                except Interrupted:
                    torch_like.error("Error while creating guard")  # as torch does in its except block
                    raise
        torch_like.error("after the block")
    assert [r.getMessage() for r in caplog.records if r.name == torch_like.name] == ["before the signal",
                                                                                      "after the block"]


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


def test_an_internal_error_is_one_line_exit_3_with_its_traceback_in_a_file(monkeypatch, capsys):
    def broken(args):
        raise KeyError("janusweb-missing-key")
    monkeypatch.setattr("janusweb.cli._env", broken)
    assert main(["env"]) == 3
    line = capsys.readouterr().err.strip()
    assert len(line.splitlines()) == 1 and "internal error in env: KeyError" in line, line
    report = Path(line.split("the traceback is in ")[1].rstrip(")"))
    try:
        assert "Traceback" in report.read_text() and "janusweb-missing-key" in report.read_text()
    finally:
        report.unlink()


def test_a_killed_exports_tokenizer_folder_is_removed_by_the_next(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([*CLI, "--quiet", "export", "tiny", "--out", str(tmp_path / "b")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(tmp_path.glob("janusweb-tokenizer-*")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    left = list(tmp_path.glob("janusweb-tokenizer-*"))
    assert left and all(f"-{proc.pid}-" in p.name for p in left)  # SIGKILL: nothing could clean up
    tempfile.tempdir = str(tmp_path)
    try:
        source = load_source("tiny")
        shutil.rmtree(source.tokenizer_dir)
    finally:
        tempfile.tempdir = None
    assert list(tmp_path.glob("janusweb-tokenizer-*")) == []


def test_sigterm_after_the_bundle_is_written(tmp_path):
    """The few moments between "bundle written" and the exit: the bundle stands complete, and the command either
    finished (0) or says in one line that it was stopped (143), never a silent kill (the interpreter's teardown of
    torch took seconds, without the handlers: Popen's returncode -15)."""
    out = tmp_path / "b"
    proc = subprocess.Popen([*CLI, "export", "tiny", "--out", str(out), "--no-validate", "--no-fused"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    said = []
    for line in proc.stderr:
        said.append(line)
        if "bundle written" in line:
            proc.send_signal(signal.SIGTERM)
            break
    said += proc.stderr.readlines()
    assert proc.wait(timeout=60) in (0, 143), said
    if proc.returncode == 143:
        assert "stopped by SIGTERM" in said[-1] and "Traceback" not in "".join(said)
    check_bundle(out)
    manifest = json.loads((out / "manifest.json").read_text())
    verify_files(out, manifest, manifest["files"])
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_after_the_work_ends_is_one_line(sig, code):
    """The window the test above hits only by chance, made certain: a signal after main() returned (signals_raise has
    given the handlers back) ends the process with the shell's code and one line, not a silent kill."""
    script = ("import os, signal, time\n"
              "from janusweb.interrupt import exit_outside_work, signals_raise\n"
              "exit_outside_work()\n"
              "with signals_raise():\n"
              "    pass\n"
              f"os.kill(os.getpid(), {int(sig)})\n"
              "time.sleep(30)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == code, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"janusweb: stopped by {sig.name} outside the command's work (nothing was left half-written)"]
