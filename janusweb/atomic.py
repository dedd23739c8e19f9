"""Write a folder atomically: build it beside its final place, then swap it in with renames."""

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_dir(final: Path):
    """Yield a temporary folder beside `final`; on success it replaces `final` (an earlier one is removed only
    after the new one is in place), on failure it is removed and `final` is left as it was."""
    final = Path(final).resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
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
