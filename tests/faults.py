"""Faults for the hardening tests: a small or read-only file system (a tmpfs where this process may mount one,
else the test is skipped and says why), the bundle's bytes before and after, and the one-line error check."""

import hashlib
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest


def tree(root: Path) -> dict:
    """Every entry under `root` (hidden ones included) -> sha256 of a file, or "dir"."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(Path(root).rglob("*"))}


def one_line(err: str, *fragments: str) -> str:
    """The single stderr line of a refused command (no traceback), holding every fragment."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and all(f in lines[0] for f in fragments), err
    return lines[0]


def _mount(*args: str) -> bool:
    return shutil.which("mount") is not None and os.geteuid() == 0 and \
        subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextmanager
def tmpfs(where: Path, size: int):
    """A tmpfs of `size` bytes at `where` for the block (skipped where mounting is not allowed)."""
    where.mkdir(parents=True, exist_ok=True)
    if not _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)):
        pytest.skip("mounting a small tmpfs needs root with CAP_SYS_ADMIN")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(where: Path, leave: int) -> None:
    """Take the free space of `where`'s file system down to about `leave` bytes."""
    st = os.statvfs(where)
    free = st.f_bavail * st.f_frsize - leave
    if free > 0:
        with open(where / ".filler", "wb") as f:
            f.truncate(0)
            f.write(b"\0" * free)


@contextmanager
def read_only(where: Path):
    """`where` read-only for the block: a read-only remount of a tmpfs as root, a mode of 0555 otherwise."""
    if os.geteuid() == 0:
        if not _mount("-o", "remount,ro", str(where)):
            pytest.skip("remounting read-only needs a tmpfs of our own")
        try:
            yield
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(where)], check=True)
    else:
        mode = where.stat().st_mode
        where.chmod(0o555)
        try:
            yield
        finally:
            where.chmod(mode)
