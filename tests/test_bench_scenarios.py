"""The benchmark tool's frame, without a model: the scenario registry and `janusweb bench --help`, list-valued
parameters (every combination, one row each), typed rows (ran / skipped / failed), sessions shared by consecutive
cases, verdicts and the exit code, the results folder's name and its files in the one schema, the suites."""

import contextlib
import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from janusweb.bench import cli, driver, scenarios
from janusweb.bench.scenario import Metric, Param, Result, Scenario, Skipped, Verdict


def test_every_scenario_loads_under_its_name_without_heavy_imports():
    code = ("import sys; from janusweb.bench import scenarios; "
            "names = [scenarios.load(n).name for n in scenarios.NAMES]; "
            "assert names == list(scenarios.NAMES), names; "
            "heavy = [m for m in ('torch', 'onnxruntime', 'onnx', 'transformers') if m in sys.modules]; "
            "assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_help_lists_every_scenario_and_suite():
    done = subprocess.run([sys.executable, "-m", "janusweb", "bench", "--help"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for name in scenarios.NAMES:
        assert re.search(rf"^    {name}\s", out, re.M), name
    for name in cli.suites():
        assert f"  {name} " in out, name
    assert "--quiet" in out


def test_every_suite_parses_against_its_scenario():
    for name, suite in cli.suites().items():
        s = scenarios.load(suite["scenario"])
        args = cli.parser().parse_args([s.name, "--bundle", "B"] if any(p.name == "bundle" for p in s.params)
                                       else [s.name])
        values = cli.values(s, args, suite["params"])
        assert set(suite["params"]) <= set(values), name


class Toy(Scenario):
    """A scenario for these tests."""
    name = "toy"
    params = (Param("a", int, (1,), "a"), Param("b", str, ("x",), "b", choices=("x", "y", "z")),
              Param("scale", float, 1.0, "scale", multi=False))
    metrics = (Metric("value", "", "a times scale"), Metric("count", "", "a count", int))

    def __init__(self):
        self.sessions = []

    def unavailable(self, ctx, case):
        return "no z here" if case["b"] == "z" else None

    def session_key(self, case):
        return case["a"]

    @contextlib.contextmanager
    def session(self, ctx, case):
        if case["a"] == 3:
            raise OSError("cannot start")
        self.sessions.append(case["a"])
        yield f"session {case['a']}"

    def run(self, ctx, case, session):
        if case["a"] == 2 and case["b"] == "y":
            raise ValueError("broken\nmore lines")
        if case["a"] == 4:
            raise Skipped("turned out not to run here")
        if case["a"] == 5:
            return Result({"count": 1.5})  # not the declared type
        return Result({"value": case["a"] * case["scale"], "count": case["a"]}, {"session": session})

    def verdicts(self, ctx, rows):
        return [Verdict("small", "value at most 1", r.metrics["value"], "<= 1", r.metrics["value"] <= 1,
                        f"a={r.case['a']}") for r in rows if r.ran]


def test_params_parse_lists_and_refuse_bad_values():
    a, b, scale = Toy.params
    assert a.parse("1,2, 3") == (1, 2, 3) and scale.parse("2.5") == 2.5
    with pytest.raises(ValueError, match="--a"):
        a.parse("1,two")
    with pytest.raises(ValueError, match="w not among x, y, z"):
        b.parse("x,w")


def test_every_combination_in_order_with_typed_rows(tmp_path):
    toy = Toy()
    values = {"a": (1, 2, 3, 4, 5), "b": ("x", "y", "z"), "scale": 0.5}
    report = driver.bench(toy, values, ["toy", "--a", "1,2,3,4,5"], tmp_path / "out")
    got = [(r["params"]["a"], r["params"]["b"], r["status"], r.get("reason")) for r in report["rows"]]
    assert got[:6] == [(1, "x", "ran", None), (1, "y", "ran", None), (1, "z", "skipped", "no z here"),
                       (2, "x", "ran", None), (2, "y", "failed", "ValueError: broken"),
                       (2, "z", "skipped", "no z here")]
    assert got[6:8] == [(3, "x", "failed", "OSError: cannot start"), (3, "y", "failed", "OSError: cannot start")]
    assert [g[2] for g in got[9:11]] == ["skipped", "skipped"] and got[9][3] == "turned out not to run here"
    assert got[12][2] == "failed" and "count is float" in got[12][3]
    assert toy.sessions == [1, 2, 4, 5]  # one session per key, opened when the key changes
    assert report["rows"][3]["metrics"] == {"value": 1.0, "count": 2}
    assert report["rows"][3]["label"] == {"session": "session 2"}
    assert report["varying"] == ["a", "b"] and report["params"]["scale"] == 0.5
    assert [(v["row"], v["met"]) for v in report["verdicts"]] == [("a=1", True), ("a=1", True), ("a=2", True)]
    assert driver.exit_code(report) == 1  # a row failed


def test_results_files_share_one_schema(tmp_path):
    toy = Toy()
    report = driver.bench(toy, {"a": (1, 2), "b": ("x",), "scale": 1.0}, ["toy"], tmp_path / "out", label="t")
    assert driver.exit_code(report) == 1  # a=2: value 2 > 1, a verdict not met
    out = tmp_path / "out"
    saved = json.loads((out / "report.json").read_text())
    assert saved == report
    for key in ("schema", "scenario", "argv", "command", "host", "versions", "load", "params", "metrics", "rows",
                "verdicts", "date", "label"):
        assert key in saved, key
    assert saved["load"]["before"] and saved["load"]["after"] and saved["host"]["cores"]
    assert saved["metrics"][1] == {"key": "count", "unit": "", "what": "a count", "type": "int"}
    lines = [json.loads(x) for x in (out / "rows.jsonl").read_text().splitlines()]
    assert lines == saved["rows"]
    table = list(csv.DictReader((out / "rows.csv").open()))
    assert [(r["a"], r["b"], r["status"], r["value"], r["count"]) for r in table] == [
        ("1", "x", "ran", "1.0", "1"), ("2", "x", "ran", "2.0", "2")]
    md = (out / "report.md").read_text()
    assert "# janusweb bench toy — t" in md and "| a | value | count |" in md and "| 2 | 2 | 2 |" in md
    assert "| a=2 | value at most 1 | 2 | <= 1 | **not met** |" in md
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.md", "rows.csv", "rows.jsonl"]


def test_results_folder_name(tmp_path):
    from janusweb.bench import results
    assert results.folder(tmp_path, "2026-12-07", "cpu-2core", "run", "cpu-page-1b") == \
        tmp_path / "2026-12-07-cpu-2core-run-cpu-page-1b"
    from janusweb.bench.host import slug
    assert slug({"cores": 2, "gpus": []}) == "cpu-2core"
    assert slug({"cores": 16, "gpus": [{"name": "NVIDIA H100 80GB HBM3"}]}) == "h100"


@pytest.mark.parametrize("argv,word", [
    (["bench", "nosuch"], "nosuch"),
    (["bench", "run", "--bundle", "B", "--backend", "webgpu,quantum"], "quantum"),
    (["bench", "run", "--bundle", "B", "--threads", "two"], "--threads"),
    (["bench", "run"], "--bundle is required"),
    (["bench", "run", "--bundle", "B", "--suite", "page-7c"], "page-7c"),
    (["bench", "run", "--bundle", "B", "--targets", "ttft_ms<15"], "ttft_ms<15"),
    (["bench", "run", "--bundle", "B", "--targets", "speed>=1"], "speed>=1"),
])
def test_bad_arguments_are_one_line(argv, word, tmp_path):
    done = subprocess.run([sys.executable, "-m", "janusweb", *argv], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and word in lines[0], done.stderr
    assert not (Path(tmp_path) / "bench").exists()  # nothing written


def test_run_cases_give_each_backend_its_own_parameters(tmp_path):
    """native backends run the source at their own dtypes and take no engine or threads; the page takes all."""
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "manifest.json").write_text(json.dumps({"graphs": {"language_model": {"variants": {"int8": {}}}}}))
    run = scenarios.load("run")
    args = cli.parser().parse_args(["run", "--bundle", str(bundle), "--backend", "wasm,native-cuda,ort-cpu",
                                    "--engine", "cpu,ort-grow", "--threads", "1,2"])
    cases = run.cases(cli.values(run, args, {}))
    got = [(c["backend"], c["dtype"], c["engine"], c["threads"]) for c in cases]
    assert got == [(b, d, e, t) for b in ["wasm"] for d in ["fp32", "int8"] for e in ["cpu", "ort-grow"]
                   for t in [1, 2]] + [("native-cuda", "fp32", None, None), ("native-cuda", "bf16", None, None),
                                       ("ort-cpu", "fp32", None, None), ("ort-cpu", "int8", None, None)]


def test_every_run_backend_loads_under_its_name():
    from janusweb.bench.backends import NAMES, load
    for name in NAMES:
        assert load(name).name == name
