"""The cpu-kernels scenario's cases and its arithmetic on given rows (no browser): the 7B rows only at q4 on the
Memory64 build, Memory64's price against the 32-bit build in the notes, and the 7B speed goal's verdict (the 7B
step within 1.3x of its weight bytes / (read bandwidth x the 1B int8 step's fraction of it)), by hand."""

import pytest

from janusweb.bench import host
from janusweb.bench.rows import FAILED, Row
from janusweb.bench.scenarios import load

BASE = {"simd": "relaxed", "repeats": 5, "layers": None, "past": 600, "prefill": 256}


def row(model, dtype, width, threads, rnd, text_ms, step_ms, nbytes, status="ran"):
    case = {**BASE, "round": rnd, "model": model, "dtype": dtype, "width": width, "threads": threads}
    metrics = {"text_token_ms": text_ms, "image_step_ms": step_ms, "image_step_bytes": nbytes}
    return Row(case, status, None if status == "ran" else "Error: x", metrics if status == "ran" else {})


def test_cases_take_7b_at_q4_on_memory64_only():
    s = load("cpu-kernels")
    cases = s.cases({**BASE, "round": (1,), "model": ("1b", "7b"), "dtype": ("int8", "q4"), "width": (32, 64),
                     "threads": (2,)})
    got = {(c["model"], c["dtype"], c["width"]) for c in cases}
    assert got == {("1b", "int8", 32), ("1b", "int8", 64), ("1b", "q4", 32), ("1b", "q4", 64), ("7b", "q4", 64)}


@pytest.mark.parametrize("seven_ms,met", [(650.0, True), (720.0, False)])
def test_price_notes_and_the_7b_goal(monkeypatch, seven_ms, met):
    monkeypatch.setattr(host, "read_bandwidth_gbps", lambda: 8.0)
    rows = [row("1b", "int8", 32, 2, r, t, s, 1_430_000_000) for r, t, s in ((1, 180, 190), (2, 175, 200), (3, 300, 260))]
    rows += [row("1b", "int8", 64, 2, r, t, s, 1_430_000_000) for r, t, s in ((1, 189, 240), (2, 200, 230), (3, 150, 250))]
    rows += [row("7b", "q4", 64, 2, 1, 900, seven_ms, 3_850_000_000), row("7b", "q4", 64, 2, 2, 0, 0, 0, FAILED)]
    ctx = {"bandwidth": [10.0], "notes": []}
    verdicts = load("cpu-kernels").verdicts(ctx, rows)
    # medians: 32-bit text 180, step 200; 64-bit text 189, step 240
    assert ctx["notes"] == ["price of 64-bit addresses, 1b int8, 2 threads: text token 180 -> 189 ms (+5 %), "
                            "CFG image step 200 -> 240 ms (+20 %)"]
    # read bandwidth: the better of 10 (before) and 8 (now); the 1B step reads 1.43 GB in 200 ms: 7.15 GB/s, 71.5 %
    # of it; the 7B step's 3.85 GB at 71.5 % of 10 GB/s: 538 ms, 1.3x that: 700 ms
    (v,) = verdicts
    assert v.key == "cpu_7b_step" and v.row == "model=7b threads=2"
    assert v.value == seven_ms and v.target == "<= 700 ms" and v.met is met
    assert "3.85 GB" in v.what and "10.0 GB/s" in v.what and "72 %" in v.what and "538 ms" in v.what


def test_no_7b_row_no_verdict_and_one_width_no_price():
    rows = [row("1b", "q4", 32, 1, 1, 100, 120, 790_000_000)]
    ctx = {"bandwidth": [10.0], "notes": []}
    assert load("cpu-kernels").verdicts(ctx, rows) == [] and ctx["notes"] == []
