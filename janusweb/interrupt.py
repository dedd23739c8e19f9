"""SIGINT and SIGTERM end a command as an exception, so that every `finally` and atomic_dir cleans up; the CLI
turns it into one line and the shell's exit code (128 + signal number: 130, 143)."""

import signal
from contextlib import contextmanager


class Interrupted(BaseException):
    """Raised by the handler of SIGINT/SIGTERM (a BaseException: `except Exception` blocks let it through)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _raise(signum, _frame) -> None:
    # one signal is enough: later ones are ignored so that the cleanup it starts runs to the end
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)
    raise Interrupted(signum)


@contextmanager
def signals_raise():
    """Within the block, SIGINT and SIGTERM raise Interrupted; the previous handlers come back after it."""
    previous = {s: signal.signal(s, _raise) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
