"""Writers of one bundle: a second writer (or a reader that must not see it change) is refused in one line naming
the process that holds the bundle, and the first one completes; a pack that fails at any point, the renames into
place included (an error or a signal), leaves the bundle byte for byte as it was; the staging folders of killed
runs are removed by the next run, those of live processes kept; two runs writing one new folder both end whole."""

import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import onnx
import pytest

from faults import one_line, tree
from janusweb import atomic
from janusweb.atomic import atomic_dir, staging
from janusweb.cli import main
from janusweb.integrity import verify_files
from janusweb.interrupt import Interrupted
from janusweb.manifest import file_digest, read_json, write_json_atomic
from janusweb.pack.driver import write_packs

CLI = [sys.executable, "-m", "janusweb", "--quiet"]


@pytest.fixture()
def bundle(tiny_bundle, tmp_path) -> Path:
    out = tmp_path / "b"
    shutil.copytree(tiny_bundle, out)
    return out


def _complete(bundle: Path) -> dict:
    """The bundle's manifest after checking that it lists every file there is (and nothing else), each intact."""
    manifest = read_json(bundle / "manifest.json", "the manifest")
    verify_files(bundle, manifest, manifest["files"])
    on_disk = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    assert on_disk == {*manifest["files"], "manifest.json"}
    return manifest


def test_racing_writers_one_at_a_time(bundle, capsys):
    first = subprocess.Popen([*CLI, "quantize", str(bundle), "--dtype", "int8", "--no-report"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(bundle.glob(".quantize.stage-*")) and first.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert first.poll() is None, "the first quantize ended before the race"
    for argv in (["quantize", str(bundle), "--dtype", "q4", "--no-report"], ["cpu-pack", str(bundle), "--dtype", "fp32"],
                 ["build-web", str(bundle), "--out", str(bundle.parent / "site")]):
        assert main(["--quiet", *argv]) == 2
        one_line(capsys.readouterr().err, f"is in use by PID {first.pid} (janusweb quantize")
    assert first.wait(timeout=300) == 0, first.stderr.read()
    manifest = _complete(bundle)  # the first run's new state, whole; nothing of the refused ones
    assert all("int8" in g["variants"] and "q4" not in g["variants"] for g in manifest["graphs"].values())
    assert "cpu" not in manifest and not (bundle.parent / "site").exists()


def _two_node_lm_head(bundle: Path) -> None:
    """lm_head.onnx with an Identity after its MatMul, and the manifest updated to match: a graph the CPU packer
    refuses only after it has written the decoder's parts."""
    path = bundle / "onnx" / "lm_head.onnx"
    model = onnx.load(str(path))
    out = model.graph.output[0].name
    model.graph.node[0].output[0] = "pre_identity"
    model.graph.node.append(onnx.helper.make_node("Identity", ["pre_identity"], [out]))
    onnx.save(model, str(path))
    manifest = read_json(bundle / "manifest.json", "the manifest")
    manifest["files"]["onnx/lm_head.onnx"] = file_digest(path)
    manifest["graphs"]["lm_head"]["files"]["onnx/lm_head.onnx"] = file_digest(path)
    write_json_atomic(bundle / "manifest.json", manifest)


def _link_out(bundle: Path) -> None:
    (bundle / "onnx" / "lm_head.onnx").unlink()
    os.symlink("/etc/passwd", bundle / "onnx" / "lm_head.onnx")


@pytest.mark.parametrize("damage,argv,fragment", [
    (_two_node_lm_head, ["cpu-pack", "--dtype", "fp32"], "lm_head.onnx: expected one MatMul"),
    (_link_out, ["wgsl-pack", "--dtype", "fp32"], "resolves outside the bundle"),
    (lambda b: (b / "onnx" / "gen_head.onnx").write_bytes(b""), ["wgsl-pack", "--dtype", "fp32"], "0 bytes"),
], ids=["fails-mid-pack", "lm_head-symlinked-out", "empty-gen_head"])
def test_a_failed_pack_leaves_the_bundle_as_it_was(bundle, capsys, damage, argv, fragment):
    damage(bundle)
    before = tree(bundle)
    assert main(["--quiet", argv[0], str(bundle), *argv[1:]]) == 2
    one_line(capsys.readouterr().err, fragment)
    assert tree(bundle) == before


@pytest.mark.parametrize("fault,code", [(OSError(errno.ENOSPC, "No space left on device"), 2),
                                        (Interrupted(signal.SIGTERM), 143)], ids=["no-space", "sigterm"])
def test_a_pack_stopped_while_renaming_into_place_is_undone(bundle, tmp_path, capsys, monkeypatch, fault, code):
    assert main(["--quiet", "cpu-pack", str(bundle), "--dtype", "fp32"]) == 0  # a pack for the next to replace
    pristine = tmp_path / "pristine"
    shutil.copytree(bundle, pristine, symlinks=True)
    before = tree(bundle)
    real_rename, renames = os.rename, []

    def rename(src, dst, fail_at=None):
        renames.append(dst)
        if len(renames) == fail_at:
            raise fault
        return real_rename(src, dst)
    monkeypatch.setattr(atomic.os, "rename", rename)
    assert main(["--quiet", "cpu-pack", str(bundle), "--dtype", "fp32"]) == 0
    total = len(renames)
    assert total >= 6 and tree(bundle) == before  # json, part(s), manifest: each replacing one set aside first
    for at in range(1, total + 1):  # every rename, the manifest's (the last) included
        shutil.rmtree(bundle)
        shutil.copytree(pristine, bundle, symlinks=True)
        renames.clear()
        monkeypatch.setattr(atomic.os, "rename", lambda src, dst, at=at: rename(src, dst, fail_at=at))
        assert main(["--quiet", "cpu-pack", str(bundle), "--dtype", "fp32"]) == code
        one_line(capsys.readouterr().err)
        assert tree(bundle) == before, f"stopped at rename {at} of {total}"


@pytest.mark.parametrize("packed_before", [False, True], ids=["new-pack", "replacing-a-pack"])
def test_a_commit_killed_halfway_is_undone_by_the_next_writer(bundle, tmp_path, packed_before):
    """SIGKILL (here: os._exit in a forked writer) at each rename of a pack's commit: the bundle then lists files
    that are not the ones on disk, until the next writer puts back what the killed one had set aside."""
    if packed_before:
        write_packs(bundle, "cpu", ["fp32"])
    pristine = tmp_path / "pristine"
    shutil.copytree(bundle, pristine, symlinks=True)
    before = tree(bundle)
    at = 0
    while True:
        at += 1
        shutil.rmtree(bundle)
        shutil.copytree(pristine, bundle, symlinks=True)
        pid = os.fork()
        if pid == 0:  # the writer, killed at its at-th rename
            renames = []

            def rename(src, dst, real=os.rename):
                renames.append(dst)
                if len(renames) == at:
                    os._exit(9)
                real(src, dst)
            atomic.os.rename = rename
            write_packs(bundle, "cpu", ["fp32"])
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) == 0:
            break  # no rename left to stop at
        assert len(list(bundle.glob(".pack.stage-*"))) == 1, f"rename {at}: the killed writer's staging folder"
        with staging(bundle, "quantize"):  # what the next writer of any kind does first
            pass
        assert tree(bundle) == before, f"killed before rename {at}"
    assert at > 4  # killed before each rename, the manifest's (the last) included


def test_staging_of_killed_runs_is_removed_and_of_live_ones_kept(bundle, capsys):
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "60"])
    try:
        for name in (f".quantize.stage-{dead.pid}-x1", f".pack.stage-{dead.pid}-x2", f".pack.stage-{live.pid}-x3"):
            (bundle / name / "onnx").mkdir(parents=True)
            (bundle / name / "onnx" / "g.onnx").write_bytes(b"partial")
        assert main(["cpu-pack", str(bundle), "--dtype", "fp32"]) == 0
        assert sorted(p.name for p in bundle.glob(".*")) == [f".pack.stage-{live.pid}-x3"]
        assert "process" in capsys.readouterr().err  # the removal is logged
    finally:
        live.kill()
        live.wait()


def test_two_runs_writing_one_new_folder_both_end_whole(tmp_path, monkeypatch):
    """Both look for the folder before either has renamed its own into place (a slow rename makes sure): the
    second then replaces the first's, whole, instead of failing on a folder that appeared meanwhile."""
    final, errors = tmp_path / "out", []
    real_rename = Path.rename

    def slow_rename(self, target):
        if ".tmp-" in self.name:
            time.sleep(0.3)
        return real_rename(self, target)
    monkeypatch.setattr(Path, "rename", slow_rename)

    def write(tag: str) -> None:
        try:
            with atomic_dir(final) as tmp:
                for i in range(50):
                    (tmp / f"{i}.txt").write_text(tag)
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)
    threads = [threading.Thread(target=write, args=(tag,)) for tag in "ab"]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []
    assert len({p.read_text() for p in final.iterdir()}) == 1 and len(list(final.iterdir())) == 50
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def _swallowed_signal(sig) -> None:
    """A signal whose exception a native layer turns into its own error, which the caller handles (as torch's
    dispatcher does when SIGTERM lands inside C++)."""
    try:
        os.kill(os.getpid(), sig)
        time.sleep(1)  # the handler runs at the next bytecode
    except BaseException:
        pass


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_swallowed_signal_still_stops_the_run_before_anything_is_made_final(tmp_path, sig, code):
    from janusweb.interrupt import signals_raise
    final = tmp_path / "out"
    before = signal.getsignal(sig)  # SIG_IGN where the suite runs in the background, else Python's own
    with pytest.raises(Interrupted) as stopped:
        with signals_raise():
            with atomic_dir(final) as tmp:
                (tmp / "half.onnx").write_bytes(b"\0")
                _swallowed_signal(sig)
    assert stopped.value.exit_code == code
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no output and no temporary folder
    assert signal.getsignal(sig) == before  # the handlers the block found come back


def test_a_signal_turned_into_another_error_ends_as_the_signal():
    from janusweb.interrupt import signals_raise
    with pytest.raises(Interrupted):
        with signals_raise():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)
            except BaseException as e:
                raise RuntimeError("aten::as_strided() ... Python error details: Interrupted: SIGTERM") from e
