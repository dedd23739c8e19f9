"""SIGINT and SIGTERM end a command as an exception, so that every `finally` and atomic_dir cleans up; the CLI
turns it into one line and the shell's exit code (128 + signal number: 130, 143).

A native layer can swallow the exception: torch's dispatcher, interrupted inside C++, turns it into a
RuntimeError of its own, which a caller may handle and go on. So the first signal also stays recorded in the
process's signal disposition itself (the handler that ignores later signals carries its number), and
`raise_if_stopped` raises it again where work is about to be made final (atomic.atomic_dir's swap,
atomic.commit's renames) and when the block ends. From the first signal until the block ends, logging is off:
what libraries log while unwinding from it (torch's export logs the guard it was building, with a stack) would
bury the one line."""

import functools
import logging
import os
import signal
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """Raised by the handler of SIGINT/SIGTERM (a BaseException: `except Exception` blocks let it through)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _after_first(first: int, _signum, _frame) -> None:
    """Later signals are ignored, so that the cleanup the first one started runs to the end."""


def _raise(signum, _frame) -> None:
    for s in SIGNALS:
        signal.signal(s, functools.partial(_after_first, signum))
    # what the libraries log while they unwind from it (torch's export logs the guard it was building as an error,
    # with a stack) is not an error of theirs: the stop is reported in the CLI's one line
    logging.disable(logging.CRITICAL)
    raise Interrupted(signum)


def raise_if_stopped() -> None:
    """Raise Interrupted if a signal arrived inside `signals_raise` (even if its exception was swallowed)."""
    handler = signal.getsignal(signal.SIGTERM)
    if isinstance(handler, functools.partial) and handler.func is _after_first:
        raise Interrupted(handler.args[0])


@contextmanager
def signals_raise():
    """Within the block, SIGINT and SIGTERM raise Interrupted; the previous handlers come back after it."""
    previous = {s: signal.signal(s, _raise) for s in SIGNALS}
    try:
        yield
    except Exception:
        raise_if_stopped()  # an error a swallowed signal turned into is that signal
        raise
    else:
        raise_if_stopped()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        logging.disable(logging.NOTSET)


def _exit_at_once(signum, _frame) -> None:
    name = signal.Signals(signum).name
    os.write(2, f"janusweb: stopped by {name} outside the command's work (nothing was left half-written)\n".encode())
    os._exit(128 + signum)


def exit_outside_work() -> None:
    """Before `signals_raise` starts and after it ends (the interpreter's start-up, the exit), SIGINT and SIGTERM end
    the process at once with one line and the shell's code (130, 143) instead of the default silent kill."""
    for s in SIGNALS:
        signal.signal(s, _exit_at_once)
