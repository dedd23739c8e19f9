"""The `peers` scenario's arithmetic (bench/peer_report.py) on numbers given here: medians over rounds, the
ratios the targets are stated in, and met / not met / not run."""

import pytest

from janusweb.bench import peer_report


def _numbers(**over):
    n = {"read_gbps": [10.0, 12.0],
         "ours": {1: {"text_ms": [500.0], "image_ms": [600.0], "text_bytes": 10**9, "image_bytes": 10**9,
                      "build": "kernels.wasm"},
                  2: {"text_ms": [210.0, 200.0, 190.0], "image_ms": [240.0, 250.0, 400.0],
                      "text_bytes": 1_500_000_000, "image_bytes": 1_440_000_000, "build": "kernels-mt-relaxed.wasm",
                      "prefill_tokens_per_s": [90.0, 100.0, 60.0]}},
         "wllama": {2: {"ms_per_token": [380.0, 400.0, 420.0], "prompt_tokens_per_s": [50.0, 40.0, 45.0]}},
         "ort": {2: {"text_ms": [4000.0], "image_ms": [3000.0]}}}
    n.update(over)
    return n


def _verdicts(numbers):
    return {v["key"]: v for v in peer_report.verdicts(peer_report.measures(numbers))}


def test_every_target_met():
    m = peer_report.measures(_numbers())
    two = m["2"]
    assert two["ours_text_ms"] == {"median": 200.0, "min": 190.0, "max": 210.0, "n": 3}
    assert two["text_vs_wllama"] == pytest.approx(2.0)  # 400 / 200 ms: 2x the tokens/s
    assert two["prefill_vs_wllama"] == pytest.approx(2.0)  # medians 90 / 45 prompt tokens/s
    assert two["ours_image_read_bw_pct"] == pytest.approx(100 * 1.44e9 / 0.25 / 1e9 / 12)  # 5.76 of 12 GB/s
    v = _verdicts(_numbers())
    assert {k: x["met"] for k, x in v.items()} == {"text_vs_wllama": True, "prefill_vs_wllama": True,
                                                     "image_step_ms": True,
                                                     "image_vs_text": True, "image_read_bw_pct": True,
                                                     "image_vs_ort": True}
    assert v["image_vs_text"]["value"] == pytest.approx(1.25) and v["image_vs_ort"]["value"] == pytest.approx(12.0)


def test_targets_not_met_and_not_run():
    slow = _numbers(wllama={2: {"ms_per_token": [250.0], "prompt_tokens_per_s": [80.0]}}, ort={},
                    read_gbps=[20.0, 30.0])
    slow["ours"][2]["image_ms"] = [320.0]
    v = _verdicts(slow)
    assert v["text_vs_wllama"]["met"] is False and v["text_vs_wllama"]["value"] == pytest.approx(1.25)
    assert v["prefill_vs_wllama"]["met"] is False and v["prefill_vs_wllama"]["value"] == pytest.approx(90 / 80)
    assert v["image_step_ms"]["met"] is False and v["image_vs_text"]["met"] is False  # 320 ms, 1.6x the token
    assert v["image_read_bw_pct"]["met"] is False  # 4.5 GB/s of 30
    assert v["image_vs_ort"]["met"] is None and v["image_vs_ort"]["value"] is None  # ORT row did not run


def test_prefill_not_run_is_not_judged():
    """A peer run without the prompt figures (an older results file's numbers) leaves that target unjudged."""
    old = _numbers(wllama={2: {"ms_per_token": [400.0]}})
    v = _verdicts(old)
    assert v["prefill_vs_wllama"]["met"] is None and v["text_vs_wllama"]["met"] is True
