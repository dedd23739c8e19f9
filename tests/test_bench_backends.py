"""The bench's backend registry and rows: every registered backend loads under its name; a backend that cannot
run here gives `skipped` rows with its reason, one that raises gives `failed` rows with the error (the others still
run), and report.md / report.json / steps.png carry both."""

import contextlib
import json

from janusweb.bench import report
from janusweb.bench.backends import NAMES, Backend, BenchContext, load
from janusweb.bench.driver import run_rows
from janusweb.bench.rows import Row
from janusweb.bench.workload import Workload


def test_every_registered_backend_loads_under_its_name():
    for name in NAMES:
        assert load(name).name == name


class Unavailable(Backend):
    name = "nowhere"

    def unavailable(self, ctx):
        return "no such device here"


class Broken(Backend):
    name = "broken"

    def run(self, ctx, case, session):
        if case.dtype == "int8":
            raise ValueError("the page threw: bad tensor shape\nstack...")
        return Row(case.name, case.dtype, label={"device": "cpu"}, result={"generation": {"1": {"step_ms": [1.0, 2.0]}}})


class NoSession(Backend):
    name = "nosession"

    @contextlib.contextmanager
    def session(self, ctx):
        raise OSError("browser did not start")
        yield


def test_skipped_and_failed_rows_and_their_report(tmp_path):
    ctx = BenchContext(tmp_path, None, Workload(), ["fp32", "int8"])
    rows = run_rows([Unavailable(), Broken(), NoSession()], ctx)
    got = {(r.name, r.dtype): (r.status, r.reason) for r in rows}
    assert got[("nowhere", "fp32")] == ("skipped", "no such device here")
    assert got[("broken", "fp32")] == ("ran", None)
    assert got[("broken", "int8")] == ("failed", "ValueError: the page threw: bad tensor shape")
    assert got[("nosession", "int8")] == ("failed", "OSError: browser did not start")
    rep = {"date": "d", "bundle": {"name": "b"}, "host": {}, "reference": "r", "versions": {},
           "rows": [r.to_dict() for r in rows]}
    report.write(rep, tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    assert "## Skipped (cannot run on this host)\n\n- nowhere fp32: no such device here" in md
    assert "## Failed\n\n- broken int8: ValueError: the page threw: bad tensor shape" in md
    assert "| broken | fp32 |" in md
    saved = json.loads((tmp_path / "r" / "report.json").read_text())["rows"]
    assert [r["status"] for r in saved] == ["skipped", "skipped", "ran", "failed", "failed", "failed"]
    assert saved[3]["failed"].startswith("ValueError") and "result" not in saved[3]
    assert (tmp_path / "r" / "steps.png").stat().st_size > 0
