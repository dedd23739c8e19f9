"""Write a folder atomically: build it beside its final place, then swap it in with renames.

The temporary folder is named `.NAME.tmp-PID-XXXX`: a run stopped by SIGINT/SIGTERM removes its own (the
signal is an exception, see janusweb/interrupt.py); one killed outright (SIGKILL, power loss) cannot, so the
next run beside the same NAME removes those whose process is gone, and names any it cannot attribute."""

import glob
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from janusweb.log import log


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def remove_orphans(parent: Path, prefix: str) -> None:
    """Remove the `PREFIX<pid>-*` / `PREFIX<pid>` entries of `parent` whose process is gone; name (log) those
    without a pid (an older janusweb's names), which may belong to a run still going."""
    pattern = re.compile(rf"^{re.escape(prefix)}(?:(\d+)(?:-|$))?")
    for p in sorted(Path(parent).glob(f"{glob.escape(prefix)}*")):
        m = pattern.match(p.name)
        if m.group(1) is None:
            log.info("%s was left by an interrupted run (owner unknown); remove it if no janusweb run is using it",
                        p)
        elif int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            log.info("removing %s, left by an interrupted run (process %s is gone)", p, m.group(1))
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def remove_stale(final: Path) -> None:
    """The temporary and old folders beside `final` left by runs that no longer exist."""
    for kind in ("tmp", "old"):
        remove_orphans(Path(final).parent, f".{Path(final).name}.{kind}-")


@contextmanager
def atomic_dir(final: Path):
    """Yield a temporary folder beside `final`; on success it replaces `final` (an earlier one is removed only
    after the new one is in place), on failure it is removed and `final` is left as it was."""
    final = Path(final).resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; bundles and sites are meant to be served
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
    tmp.rename(final)
    if old:
        shutil.rmtree(old)
