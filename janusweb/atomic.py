"""Write a folder atomically: build it beside its final place, then swap it in with renames.

The temporary folder is named `.NAME.tmp-PID-XXXX`: a run stopped by SIGINT/SIGTERM removes its own (the
signal is an exception, see janusweb/interrupt.py); one killed outright (SIGKILL, power loss) cannot, so the
next run beside the same NAME removes those whose process is gone, and names any it cannot attribute."""

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


def remove_stale(final: Path) -> None:
    """Remove `.NAME.tmp-PID-*` / `.NAME.old-PID` folders beside `final` left by runs that no longer exist."""
    final = Path(final)
    pattern = re.compile(rf"^\.{re.escape(final.name)}\.(tmp|old)-(?:(\d+)(?:-|$))?")
    for p in sorted(final.parent.glob(f".{final.name}.*")):
        m = pattern.match(p.name)
        if not m:
            continue
        if m.group(2) is None:
            log.warning("%s was left by an interrupted run (owner unknown); remove it when no run is writing %s",
                        p, final.name)
        elif int(m.group(2)) != os.getpid() and not _alive(int(m.group(2))):
            log.info("removing %s, left by an interrupted run (process %s is gone)", p.name, m.group(2))
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


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
