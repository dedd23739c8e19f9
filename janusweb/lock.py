"""One writer per bundle: a command that writes a bundle holds an exclusive flock on the bundle's folder for its
whole run, one that reads it for a while (build-web, bench) a shared one. Nothing is written for it (the lock is the
kernel's, on the folder itself, and goes with the process however it ends); a second writer is refused at once in
one line naming the process that holds the bundle (from /proc/locks)."""

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from janusweb.errors import UserError


def holders(folder: Path) -> list:
    """The pids holding an flock on `folder` (from /proc/locks; empty where it cannot be read)."""
    try:
        st = os.stat(folder)
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids = []
    for line in lines:
        fields = line.split()
        if "FLOCK" in fields and device in fields and "->" not in fields:
            pids.append(int(fields[fields.index(device) - 1]))
    return sorted(set(pids) - {os.getpid()}) or sorted(set(pids))


def _command(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return ""
    words = [os.fsdecode(a) for a in argv if a]
    start = next((i for i, w in enumerate(words) if w.endswith("janusweb")), None)
    return " ".join(["janusweb", *[w for w in words[start + 1:] if not w.startswith("-")][:2]]) \
        if start is not None else ""


def describe(folder: Path) -> str:
    pids = holders(folder)
    if not pids:
        return "another janusweb command"
    return ", ".join(f"PID {pid}" + (f" ({c})" if (c := _command(pid)) else "") for pid in pids)


@contextmanager
def bundle_lock(folder: Path, shared: bool = False):
    """Hold `folder` for the block: exclusive (a writer) or shared (a reader); UserError (exit 2) when another
    process holds it the other way. A folder that does not exist yet (an export's new --out) needs no lock."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        yield
        return
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{folder} is in use by {describe(folder)}, which is writing it; try again when it "
                            "has finished" if shared else
                            f"{folder} is in use by {describe(folder)}; try again when it has finished") from None
        yield
    finally:
        os.close(fd)
