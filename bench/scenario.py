"""What a benchmark scenario is: its parameters, its row columns, and how it runs one case.

A scenario declares `params` (each list-valued unless `multi=False`: `--threads 1,2 --dtype int8,q4` runs every
combination, one row each) and `metrics` (its rows' columns: key, unit, what; the definitions live in
janusweb.metrics). `bench/driver.py` turns the command line into cases, runs them in order and writes the
results (bench/results.py); a scenario only says how one case runs:

    class Mine(Scenario):
        name = "mine"
        params = (Param("threads", int, (1,), "WASM threads"), Param("rounds", int, 3, "rounds", multi=False))
        metrics = (Metric("step_ms", "ms", "one step, median over the rounds"),)

        def run(self, ctx, case, session) -> Result:
            return Result({"step_ms": ...}, label={"device": "cpu"})

Hooks, each with a default: `cases` (every combination; a scenario may drop or expand some), `context` (run-wide
state, e.g. a loaded model), `unavailable` (why a case cannot run on this host: a skipped row), `session_key` +
`session` (what consecutive cases with the same key share: a browser), `verdicts` (targets met or not, after
every row). An exception in `session` or `run` makes the case(s) failed rows with the error; `Skipped` makes a
skipped row.
"""

import contextlib
import itertools
from dataclasses import dataclass, field
from typing import Any, Callable


def boolean(value: str) -> bool:
    if value.lower() in ("1", "yes", "true", "on"):
        return True
    if value.lower() in ("0", "no", "false", "off"):
        return False
    raise ValueError(f"{value!r} is not yes or no")


@dataclass(frozen=True)
class Param:
    """One parameter: `--NAME` on the command line (underscores become dashes), `case[NAME]` in `run`."""
    name: str
    type: Callable[[str], Any] = str
    default: Any = None  # a tuple for a list-valued parameter; None: required (list) or unset (single)
    help: str = ""
    multi: bool = True  # comma-separated values, every combination run
    choices: tuple | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, text: str):
        """The command line's (or a suite's) text as this parameter's value(s); ValueError names what is wrong."""
        parts = [p.strip() for p in text.split(",")] if self.multi else [text]
        try:
            values = [self.type(p) for p in parts]
        except (ValueError, TypeError) as e:
            raise ValueError(f"{self.flag}: {e}") from None
        bad = [v for v in values if self.choices is not None and v not in self.choices]
        if bad:
            raise ValueError(f"{self.flag}: {', '.join(map(str, bad))} not among {', '.join(map(str, self.choices))}")
        return tuple(values) if self.multi else values[0]


@dataclass(frozen=True)
class Metric:
    """One column of a scenario's rows. `type`: float, int, bool or str; a row may leave it out (not measured)."""
    key: str
    unit: str
    what: str
    type: type = float


@dataclass
class Result:
    """What `run` returns for one case: its figures (keys among the scenario's metrics), what ran it (device,
    versions, adapter...) and details kept in report.json only (per-step times, tokens)."""
    metrics: dict
    label: dict = field(default_factory=dict)
    detail: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """A target: met (True/False) or not run (None, the row did not run)."""
    key: str
    what: str
    value: Any
    target: str
    met: bool | None
    row: str = ""  # the row it is about (its varying parameters), "" for the whole run


def unique(cases) -> list:
    """The cases in order, each once (after a scenario has left out parameters some cases do not take)."""
    out = []
    for c in cases:
        if c not in out:
            out.append(c)
    return out


class Skipped(Exception):
    """Raised by `run` when a case turns out not to be runnable here (e.g. the page fell back to another backend)."""


class Scenario:
    name: str = ""
    params: tuple = ()
    metrics: tuple = ()

    @property
    def summary(self) -> str:
        return (type(self).__doc__ or "").strip().splitlines()[0]

    def cases(self, values: dict) -> list:
        """Every combination of the list-valued parameters (in their declared order, the first outermost), with
        the single-valued ones as they are."""
        multi = [p.name for p in self.params if p.multi]
        return [{**values, **dict(zip(multi, combo))} for combo in itertools.product(*(values[n] for n in multi))]

    @contextlib.contextmanager
    def context(self, run):
        """Run-wide state shared by every case (`run`: bench.driver.Run: argv, out folder, values)."""
        yield run

    def unavailable(self, ctx, case: dict) -> str | None:
        return None

    def session_key(self, case: dict):
        return None

    @contextlib.contextmanager
    def session(self, ctx, case: dict):
        yield None

    def run(self, ctx, case: dict, session) -> Result:
        raise NotImplementedError

    def verdicts(self, ctx, rows: list) -> list:
        return []
