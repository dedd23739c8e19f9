"""Operating-system errors end every writing command in one line naming the path and the cause, exit 2, with the
bundle byte for byte as it was (or no output at all) and nothing left behind: a full disk (a small tmpfs; a file
size limit where mounting is not allowed), a read-only folder, a name too long, a file on the way."""

import errno
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from faults import fill, one_line, read_only, tmpfs, tree
from janusweb.atomic import atomic_dir
from janusweb.cli import main
from janusweb.errors import find_os_error, os_error_line

NEEDS_NODE = pytest.mark.skipif(shutil.which("node") is None or
                                not (Path(__file__).parent.parent / "node_modules" / "esbuild").is_dir(),
                                reason="building the page needs node and the npm packages (npm ci)")
# each writer of a bundle (b) or a new folder (out), on the tiny bundle as export writes it
ARGV = {
    "export": lambda b, out: ["export", "tiny", "--out", str(out), "--text-steps", "1", "--image-steps", "1"],
    "quantize": lambda b, out: ["quantize", str(b), "--dtype", "int8", "--no-report"],
    "cpu-pack": lambda b, out: ["cpu-pack", str(b), "--dtype", "fp32"],
    "wgsl-pack": lambda b, out: ["wgsl-pack", str(b), "--dtype", "fp32"],
    "build-web": lambda b, out: ["build-web", str(b), "--out", str(out)],
}
WRITERS = [pytest.param(argv, id=name, marks=NEEDS_NODE if name == "build-web" else ()) for name, argv in ARGV.items()]
MB = 2**20


def _size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("argv", WRITERS)
def test_disk_full(tiny_bundle, tmp_path, capsys, argv):
    with tmpfs(tmp_path / "fs", _size(tiny_bundle) + 2 * MB) as fs:
        shutil.copytree(tiny_bundle, fs / "b")
        fill(fs, 256 * 1024)
        before = tree(fs)
        assert main(["--quiet", *argv(fs / "b", fs / "out")]) == 2
        one_line(capsys.readouterr().err, "no space left on the device", str(fs))
        assert tree(fs) == before  # the bundle as it was, no output, no temporary file


def test_disk_full_without_mounting(tiny_bundle, tmp_path):
    """The same fault where no file system can be mounted: a file size limit (EFBIG) on quantize's process."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    shutil.copytree(tiny_bundle, tmp_path / "b")
    before = tree(tmp_path)
    done = subprocess.run([sys.executable, "-m", "janusweb", "--quiet", *ARGV["quantize"](tmp_path / "b", None)],
                          capture_output=True, text=True, timeout=300, preexec_fn=limit)
    assert done.returncode == 2
    one_line(done.stderr, "file too large", str(tmp_path / "b"))
    assert tree(tmp_path) == before


@pytest.mark.parametrize("argv", WRITERS)
def test_read_only_folder(tiny_bundle, tmp_path, capsys, argv):
    with tmpfs(tmp_path / "fs", _size(tiny_bundle) + 2 * MB) as fs:
        shutil.copytree(tiny_bundle, fs / "b")
        before = tree(fs)
        with read_only(fs):
            assert main(["--quiet", *argv(fs / "b", fs / "out")]) == 2
        one_line(capsys.readouterr().err, "read-only", str(fs))
        assert tree(fs) == before


@pytest.mark.parametrize("command", ["export", pytest.param("build-web", marks=NEEDS_NODE)])
def test_name_too_long_or_a_file_on_the_way(tiny_bundle, tmp_path, capsys, command):
    argv = ARGV[command]
    (tmp_path / "file").write_text("x")
    for out, cause in ((tmp_path / ("n" * 256), "too long"), (tmp_path / "file" / "out", "is a file, not a folder")):
        assert main(["--quiet", *argv(tiny_bundle, out)]) == 2
        one_line(capsys.readouterr().err, cause)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@NEEDS_NODE
def test_the_longest_name_is_written_whole(tiny_bundle, tmp_path, capsys):
    """A 255-byte --out: its temporary names (.NAME.tmp-PID-XXXX) are shortened, the site is renamed into place."""
    out = tmp_path / ("s" * 255)
    assert main(["--quiet", "build-web", str(tiny_bundle), "--out", str(out)]) == 0
    assert (out / "index.html").is_file() and [p.name for p in tmp_path.iterdir()] == [out.name]
    assert main(["--quiet", "build-web", str(tiny_bundle), "--out", str(out)]) == 0  # replaced: temp and old names
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_atomic_dir_keeps_the_old_folder_when_the_swap_fails(tmp_path, monkeypatch):
    final = tmp_path / ("f" * 255)
    with atomic_dir(final) as tmp:
        (tmp / "a").write_text("old")
    real_rename = Path.rename

    def failing(self, target):  # the new folder cannot take the final name (the old one can come back)
        if Path(target) == final and ".tmp-" in self.name:
            raise OSError(errno.EIO, "injected", str(target))
        return real_rename(self, target)
    monkeypatch.setattr(Path, "rename", failing)
    with pytest.raises(OSError):
        with atomic_dir(final) as tmp:
            (tmp / "a").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == [final.name] and (final / "a").read_text() == "old"


@pytest.mark.parametrize("error,code", [
    (OSError(errno.ENOSPC, "No space left on device", "/x/.b.tmp-12-abcd/onnx/g.onnx"), errno.ENOSPC),
    (RuntimeError("failed to write: No space left on device (os error 28)"), errno.ENOSPC),
    (RuntimeError("web/build.mjs failed: Error: EROFS: read-only file system, open 'x'"), errno.EROFS),
    (ValueError("protobuf: [Errno 36] File name too long"), errno.ENAMETOOLONG),
])
def test_os_errors_are_found_however_they_are_wrapped(error, code):
    wrapped = RuntimeError("save failed")
    wrapped.__cause__ = error
    assert find_os_error(wrapped)[0] == code
    assert find_os_error(RuntimeError("unrelated")) is None


def test_an_os_error_line_names_the_path_and_the_cause():
    assert os_error_line(errno.ENOSPC, "/m/b/onnx/g.onnx", "/m/b") == "/m/b/onnx/g.onnx: no space left on the device"
    assert os_error_line(errno.EROFS, None, "/m/b") == "/m/b: the file system is read-only"
