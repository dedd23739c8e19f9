"""Outputs staged and renamed into place, so that nothing half-written is ever left where a reader looks.

- A new folder (export's bundle, build-web's site): `atomic_dir` builds it beside its final place, named
  `.NAME.tmp-PID-XXXX`, and swaps it in with renames (two runs writing the same folder take turns at the swap: the
  last one wins, whole).
- New files in an existing bundle (quantize's variants, the packs): `staging` gives a folder inside the bundle,
  `.KIND.stage-PID-XXXX`, and `commit` renames the staged files into place, the manifest last, moving what they
  replace aside first and putting it back if any rename fails (or a signal arrives) before the last one.
- A private folder under $TMPDIR (a preset's tokenizer): `private_temp_dir`, `PREFIXPID-XXXX`.

A run stopped by SIGINT/SIGTERM removes its own temporaries (the signal is an exception, see janusweb/interrupt.py);
one killed outright (SIGKILL, power loss) cannot, so the next run beside the same name removes those whose process
is gone (undoing first a bundle commit that such a run left half done), and names any it cannot attribute.
Temporary names never exceed NAME_MAX (a long NAME is shortened and given a hash), and `check_writable` refuses,
before any work, an output path that no file system could take."""

import errno
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from janusweb.interrupt import raise_if_stopped
from janusweb.log import log

NAME_MAX = 255  # bytes, as Linux limits a file name
SHORT = 180  # bytes of a long NAME kept in its temporary names (+ "~" + 8 hex digits)
TEMP_SEGMENT = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-\d+(?:-[^/]*)?$")
STAGE_SEGMENT = re.compile(r"^\.[\w-]+\.stage-\d+-[^/]*$")
STAGE_KIND = re.compile(r"^\.([\w-]+)\.stage-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def remove_orphans(parent: Path, prefix: str, name_unknown: bool = True, recover=None) -> None:
    """Remove the `PREFIX<pid>-*` / `PREFIX<pid>` entries of `parent` whose process is gone (`recover(entry)`
    first, for a folder); name (log) those without a pid (an older janusweb's names), which may belong to a run
    still going, unless not `name_unknown`."""
    pattern = re.compile(rf"^{re.escape(prefix)}(?:(\d+)(?:-|$))?")
    for p in sorted(Path(parent).glob(f"{glob.escape(prefix)}*")):
        m = pattern.match(p.name)
        if m.group(1) is None:
            if not name_unknown:
                continue
            log.info("%s was left by an interrupted run (owner unknown); remove it if no janusweb run is using it",
                     p)
        elif int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            log.info("removing %s, left by an interrupted run (process %s is gone)", p, m.group(1))
            if recover is not None and p.is_dir():
                recover(p)
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def _short(name: str) -> str:
    """`name`, or for a long one its first SHORT bytes and a hash: what temporary names beside it start with."""
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) <= SHORT:
        return name
    head = raw[:SHORT].decode("utf-8", "ignore")
    return f"{head}~{hashlib.sha256(raw).hexdigest()[:8]}"


def _prefix(final: Path, kind: str) -> str:
    return f".{_short(final.name)}.{kind}-"


def remove_stale(final: Path) -> None:
    """The temporary and old folders beside `final` left by runs that no longer exist."""
    for kind in ("tmp", "old"):
        remove_orphans(Path(final).parent, _prefix(Path(final), kind))


def check_writable(path: Path) -> None:
    """OSError (the CLI's one line) when the entry `path` cannot be created or replaced: a name longer than
    NAME_MAX, a part of the way that is a file, or a folder to write in that is read-only or not this user's."""
    path = Path(os.path.abspath(path))
    for part in path.parts:
        if len(part.encode("utf-8", "surrogateescape")) > NAME_MAX:
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), str(path))
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
    if not os.access(folder, os.W_OK | os.X_OK):
        try:
            read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
        except OSError:
            read_only = False
        code = errno.EROFS if read_only else errno.EACCES
        raise OSError(code, os.strerror(code), str(folder))


def public_path(path: str | None) -> str | None:
    """The path a temporary one will have once renamed into place (`.NAME.tmp-PID-XXXX/f` -> `NAME/f`, a staging
    folder's segment dropped); None where it cannot be told (a shortened NAME)."""
    if path is None:
        return None
    parts = []
    for part in Path(path).parts:
        m = TEMP_SEGMENT.match(part)
        if STAGE_SEGMENT.match(part):
            continue
        if m:
            if "~" in m.group("name"):
                return None
            part = m.group("name")
        parts.append(part)
    return str(Path(*parts)) if parts else path


@contextmanager
def _locked(folder: Path):
    """An exclusive flock on `folder` (blocking): the few renames of a swap, one run at a time."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextmanager
def atomic_dir(final: Path):
    """Yield a temporary folder beside `final`; on success it replaces `final` (an earlier one is removed only
    after the new one is in place), on failure it is removed and `final` is left as it was."""
    final = Path(final).resolve()
    check_writable(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(final)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_prefix(final, 'tmp')}{os.getpid()}-", dir=final.parent))
    old = final.with_name(f"{_prefix(final, 'old')}{os.getpid()}")
    moved = False
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; bundles and sites are meant to be served
        yield tmp
        raise_if_stopped()  # a signal whose exception a native layer swallowed: nothing is made final
        with _locked(final.parent):
            if final.exists():
                final.rename(old)
                moved = True
            tmp.rename(final)
    except BaseException:
        if moved and not final.exists():
            old.rename(final)
            moved = False
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if moved:
        shutil.rmtree(old)


@contextmanager
def staging(bundle: Path, kind: str):
    """A temporary folder inside `bundle` for one run's new files (`commit` moves them in); removed on every way
    out, and those of killed runs of any kind are removed first."""
    bundle = Path(bundle)
    for other in sorted({m.group(1) for p in bundle.glob(".*.stage-*") if (m := STAGE_KIND.match(p.name))}):
        remove_orphans(bundle, f".{other}.stage-", recover=lambda staged: _undo(bundle, staged))
    staged = Path(tempfile.mkdtemp(prefix=f".{kind}.stage-{os.getpid()}-", dir=bundle))
    try:
        yield staged
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def commit(bundle: Path, staged: Path, rels: list, remove=()) -> None:
    """Move `staged/rel` to `bundle/rel` for each of `rels`, in order (put the manifest last), and take the
    `remove` files out of the bundle. What a rename replaces or removes is moved aside into `staged` first; if
    anything fails (a signal included) before the last rename, every step is undone and the bundle is as it was."""
    bundle, staged = Path(bundle), Path(staged)
    aside = staged / ".replaced"
    done, made = [], []  # (rel, had an old file) in order; folders created in the bundle

    def set_aside(rel: str) -> bool:
        if not (bundle / rel).exists():
            return False
        (aside / rel).parent.mkdir(parents=True, exist_ok=True)
        os.rename(bundle / rel, aside / rel)
        return True

    try:
        raise_if_stopped()
        for rel in remove:
            done.append((rel, set_aside(rel), False))
        for rel in rels:
            parent = (bundle / rel).parent
            missing = [p for p in (parent, *parent.parents) if not p.exists() and p.is_relative_to(bundle)]
            for p in reversed(missing):
                p.mkdir()
                made.append(p)
            had = set_aside(rel)
            done.append((rel, had, True))
            os.rename(staged / rel, bundle / rel)
    except BaseException:
        for rel, had, placed in reversed(done):
            if placed and (bundle / rel).exists() and not (staged / rel).exists():
                os.rename(bundle / rel, staged / rel)
            if had:
                os.rename(aside / rel, bundle / rel)
        for p in reversed(made):
            p.rmdir()
        raise


def _undo(bundle: Path, staged: Path) -> None:
    """Undo the commit a killed run left half done: while its manifest is still staged (the last rename not made),
    put back what it had set aside and take out the files it had moved in that the bundle's manifest does not
    list."""
    if not (staged / "manifest.json").is_file():
        return  # committed whole (or never started): nothing of the bundle is in the staging folder
    aside, restored = staged / ".replaced", set()
    for old in sorted(p for p in aside.rglob("*") if p.is_file()) if aside.is_dir() else []:
        restored.add(old.relative_to(aside).as_posix())
        os.replace(old, bundle / old.relative_to(aside))
    listed = json.loads((bundle / "manifest.json").read_text()).get("files", {})
    for rel in json.loads((staged / "manifest.json").read_text()).get("files", {}):
        if rel in listed or rel in restored:
            continue
        if not (staged / rel).exists() and (bundle / rel).is_file():
            (bundle / rel).unlink()
        for folder in (bundle / rel).parents:  # the folders the commit made for it, now empty
            if folder == bundle or not folder.is_dir() or any(folder.iterdir()):
                break
            folder.rmdir()
    log.info("undid the unfinished commit of %s", staged.name)


def private_temp_dir(prefix: str) -> Path:
    """A new private folder `$TMPDIR/PREFIXPID-XXXX` (the caller removes it); those of killed runs go first."""
    parent = Path(tempfile.gettempdir())
    remove_orphans(parent, prefix, name_unknown=False)  # $TMPDIR is shared: only our own names are ours to judge
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))
