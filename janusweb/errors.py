"""How a command ends when something goes wrong: one line on stderr and an exit code (README's table).

UserError is bad input (exit 2). An operating-system error (no space left, read-only, permission denied, a name
too long...) is bad input too: `os_error_line` turns it, wherever it was raised and however it was wrapped
(a C or Rust library's "(os error 28)" included), into one sentence naming the path and the cause."""

import errno
import os
import re


class UserError(Exception):
    """Bad input from the user (missing file, wrong model type, hub id...). Printed as one line, exit 2."""

    exit_code = 2


# the cause of each errno, as a sentence ends (the path comes before it)
CAUSES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large (for the file system, or over this process's file size limit)",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENAMETOOLONG: "a name in this path is too long (at most 255 bytes a name)",
    errno.ENOTDIR: "a part of this path is a file, not a folder",
    errno.EISDIR: "this is a folder, not a file",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "it already exists",
    errno.ENOTEMPTY: "the folder is not empty",
    errno.EMFILE: "too many open files",
    errno.ENFILE: "too many open files on this machine",
    errno.EIO: "input/output error (a failing disk or network file system)",
    errno.ELOOP: "too many levels of symbolic links",
    errno.ENOMEM: "out of memory",
    errno.EXDEV: "it lies on another file system",
    errno.EBUSY: "the device or file is busy",
}
# how other runtimes say it: Rust "(os error 28)", Python "[Errno 28]", Node "ENOSPC:", C "No space left on device"
OS_ERROR_IN_TEXT = re.compile(r"\(os error (\d+)\)|\[Errno (\d+)\]|\b(E[A-Z]{3,})\b")
STRERROR_IN_TEXT = {os.strerror(code).lower(): code for code in CAUSES}


def _errno_of(error: BaseException) -> int | None:
    if isinstance(error, OSError) and error.errno:
        return error.errno
    text = str(error)
    for m in OS_ERROR_IN_TEXT.finditer(text):
        if m.group(3) is None:
            return int(m.group(1) or m.group(2))
        if getattr(errno, m.group(3), None) in CAUSES:
            return getattr(errno, m.group(3))
    return next((code for message, code in STRERROR_IN_TEXT.items() if message in text.lower()), None)


def find_os_error(error: BaseException) -> tuple | None:
    """(errno, path or None) of the operating-system error that `error` is or wraps (`raise ... from`: its
    __cause__ chain; not __context__, which is any error handled nearby), or None when it is not one."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        code = _errno_of(error)
        if code is not None:
            path = getattr(error, "filename", None) if isinstance(error, OSError) else None
            return code, os.fsdecode(path) if path is not None else None
        error = error.__cause__
    return None


def os_error_line(code: int, path: str | None, fallback: str) -> str:
    """One sentence: the path (`fallback`, the command's own input or output, when the error names none) and the
    cause."""
    cause = CAUSES.get(code) or os.strerror(code).lower()
    return f"{path or fallback}: {cause}"


class BundleFormatError(UserError):
    """A manifest or pack whose format version this janusweb does not read (one line, exit 2)."""
