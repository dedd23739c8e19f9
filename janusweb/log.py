"""Logging and progress for long work: one logger, progress lines on stderr, silenced by --quiet."""

import logging
import sys
import time
from contextlib import contextmanager

log = logging.getLogger("janusweb")


def setup(quiet: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False


@contextmanager
def step(what: str):
    """Log the start and the duration of one step of long work."""
    log.info("… %s", what)
    t0 = time.perf_counter()
    yield
    log.info("✓ %s (%.1f s)", what, time.perf_counter() - t0)
