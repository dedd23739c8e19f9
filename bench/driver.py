"""Runs one scenario: its cases in order (consecutive cases with the same session key share one session), each a
typed row (ran / skipped with the reason / failed with the error, the traceback in the log), then its verdicts;
writes the results folder (bench/results.py) atomically, rows streamed to rows.jsonl as they finish."""

import contextlib
import datetime
import time
from dataclasses import dataclass, field
from pathlib import Path

from janusweb.atomic import atomic_dir
from janusweb.bench import host as hostinfo
from janusweb.bench import results
from janusweb.bench.rows import FAILED, SKIPPED, Row, check_types, error_line
from janusweb.bench.scenario import Scenario, Skipped
from janusweb.env import versions
from janusweb.log import log, step


@dataclass
class Run:
    """One `janusweb bench SCENARIO ...`: what scenarios see as `run` in `context`."""
    scenario: Scenario
    values: dict  # every parameter: a tuple (list-valued) or one value
    argv: list
    out: Path  # the results folder being written (a temporary name until the end): a scenario's extra files
    notes: list = field(default_factory=list)  # lines for report.md's notes, added by the scenario


def title(case: dict, varying: list) -> str:
    return " ".join(f"{k}={case[k]}" for k in varying) or "all"


def varying(scenario: Scenario, cases: list) -> list:
    """The list-valued parameters that take more than one value over the cases."""
    return [p.name for p in scenario.params if p.multi and len({repr(c.get(p.name)) for c in cases}) > 1]


def run_cases(scenario: Scenario, ctx, cases: list, on_row=lambda row: None, names: list = ()) -> list:
    """Every case in order; a session is opened when the key changes and closed before the next one opens."""
    rows, key, session = [], object(), None
    with contextlib.ExitStack() as stack:
        for case in cases:
            what = title(case, names)
            why = scenario.unavailable(ctx, case)
            if why:
                rows.append(Row(case, SKIPPED, why))
                on_row(rows[-1])
                continue
            if scenario.session_key(case) != key:
                stack.close()
                key = scenario.session_key(case)
                try:
                    session = stack.enter_context(scenario.session(ctx, case))
                except Exception as e:  # noqa: BLE001 (recorded: every case of this session fails with it)
                    log.exception("the session for %s could not start", what)
                    session = e
            if isinstance(session, Exception):
                rows.append(Row(case, FAILED, error_line(session)))
            else:
                rows.append(run_one(scenario, ctx, case, session, what))
            on_row(rows[-1])
    return rows


def run_one(scenario: Scenario, ctx, case: dict, session, what: str) -> Row:
    with step(f"{scenario.name} {what}"):
        try:
            result = scenario.run(ctx, case, session)
            row = Row(case, metrics=result.metrics, label=result.label, detail=result.detail)
            check_types(row, scenario.metrics)
            return row
        except Skipped as e:
            return Row(case, SKIPPED, str(e))
        except Exception as e:  # noqa: BLE001 (recorded as a failed row, with the traceback in the log)
            log.exception("%s %s failed", scenario.name, what)
            return Row(case, FAILED, error_line(e))


def bench(scenario: Scenario, values: dict, argv: list, final: Path, label: str = "") -> dict:
    """Run every case of `scenario` for `values` and write the results folder `final`; returns the report."""
    head = {"schema": results.SCHEMA, "scenario": scenario.name, "label": label, "argv": argv,
            "command": results.command(argv), "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "host": hostinfo.host(), "versions": versions(), "load": {"before": hostinfo.load()},
            "params": {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()},
            "metrics": results.columns(scenario.metrics)}
    t0 = time.perf_counter()
    with atomic_dir(final) as out:
        run = Run(scenario, values, argv, out)
        with scenario.context(run) as ctx:
            cases = scenario.cases(values)
            names = varying(scenario, cases)
            rows = run_cases(scenario, ctx, cases, lambda row: results.append_row(out, row), names)
            verdicts = scenario.verdicts(ctx, rows)
        report = {**head, "load": {**head["load"], "after": hostinfo.load()},
                  "seconds": round(time.perf_counter() - t0, 1), "varying": names,
                  "rows": [r.to_dict() for r in rows], "verdicts": [results.verdict_dict(v) for v in verdicts],
                  "notes": run.notes}
        report = results.plain(report)
        results.write(out, report)
    log.info("results written to %s", final)
    return report


def exit_code(report: dict) -> int:
    """1 when a row failed or a verdict is not met (validation failed); 0 otherwise (skipped rows included)."""
    failed = any(r["status"] == FAILED for r in report["rows"])
    return 1 if failed or any(v["met"] is False for v in report["verdicts"]) else 0
