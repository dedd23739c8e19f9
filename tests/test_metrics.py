"""janusweb.metrics against values worked out by hand (the expected numbers are written here, not computed by
the functions under test)."""

import math

import numpy as np
import pytest

from janusweb import metrics
from janusweb.bench.measures import counters_per_step, parity, speed
from janusweb.metrics import agreement, cosine, first_divergence, kl_divergence, psnr


def test_psnr_uses_the_full_range_of_minus_one_to_one_as_peak():
    a = np.zeros((1, 3, 2, 2), np.float32)
    b = a.copy()
    b[0, 0, 0, 0] = 0.5  # mse = 0.25 / 12 -> 10 log10(4 * 12 / 0.25) = 10 log10(192) = 22.833 dB
    assert psnr(a, b) == pytest.approx(22.833012287035, abs=1e-9)
    assert psnr(b, b) is None
    assert psnr(np.full(4, -1.0), np.full(4, 1.0)) == pytest.approx(0.0)  # the worst image: 0 dB


def test_agreement_is_a_fraction_over_the_shorter_sequence():
    assert agreement([1, 2, 3, 4], [1, 0, 3, 4]) == 0.75
    assert agreement([5, 6, 7], [5, 6]) == 1.0
    assert agreement([[1, 2], [3, 4]], [[1, 2], [0, 0]]) == 0.5
    assert agreement([], []) == 1.0 and agreement([1], []) == 0.0


def test_first_divergence():
    assert first_divergence([1, 2, 3], [1, 2, 4]) == 2
    assert first_divergence([7, 8], [1, 8]) == 0
    assert first_divergence([1, 2], [1, 2, 3]) == 2
    assert first_divergence(np.array([4, 5]), [4, 5]) is None


def test_kl_divergence_per_position():
    # p = softmax([0, 0]) = (1/2, 1/2); q = softmax([ln 3, 0]) = (3/4, 1/4)
    # KL(p || q) = 1/2 ln(2/3) + 1/2 ln(2) = 1/2 ln(4/3)
    p = np.array([[0.0, 0.0], [2.0, -1.0]])
    q = np.array([[math.log(3), 0.0], [2.0, -1.0]])
    np.testing.assert_allclose(kl_divergence(p, q), [0.5 * math.log(4 / 3), 0.0], atol=1e-12)


def test_cosine():
    assert cosine([1, 0], [1, 1]) == pytest.approx(1 / math.sqrt(2))
    assert cosine([[1, 2]], [2, 4]) == pytest.approx(1.0)
    assert cosine([0, 0], [0, 0]) == 1.0 and cosine([0, 0], [1, 0]) == 0.0


def test_bench_parity_reports_the_shared_metrics_as_percentages():
    image = np.zeros((1, 3, 2, 2))
    other = image.copy()
    other[0, 0, 0, 0] = 0.6
    run = {"text": [{"tokens": [1, 2, 3, 9]}], "image": [{"tokens": [[4, 4]], "images": other}]}
    ref = {"text": [{"tokens": [1, 2, 3, 4]}], "image": [{"tokens": [[4, 5]], "images": image}]}
    out = parity(run, ref)
    assert out["text_token_agreement_pct"] == 75.0 and out["text_first_divergence"] == 3
    assert out["image_token_agreement_pct"] == 50.0 and out["image_psnr_db"] == pytest.approx(21.25, abs=0.01)
    assert out["pixels_max_abs_diff"] == pytest.approx(0.6)


def test_speed_definitions():
    # tokens arrive at 100, 130, 150, 190 ms: first token 100 ms, then 3 decode steps in 90 ms = 30 ms each
    times = [100.0, 130.0, 150.0, 190.0]
    assert metrics.ttft_ms(times) == 100.0 and metrics.decode_ms_per_token(times) == 30.0
    assert metrics.decode_tokens_per_s(times) == pytest.approx(1000 / 30)
    assert metrics.decode_ms_per_token([5.0]) is None and metrics.ttft_ms([]) is None
    # image steps reported at 500 (prefill + step 1), 520, 560; first image at 900; request done at 1000, 2 images
    steps = [500.0, 520.0, 560.0]
    assert metrics.image_prefill_ms(steps) == 500.0 and metrics.image_step_ms(steps) == 30.0
    assert metrics.vq_decode_ms(steps, 900.0) == 340.0 and metrics.s_per_image(1000.0, 2) == 0.5
    assert metrics.median([3.0, None, 1.0, 2.0]) == 2.0 and metrics.median([None]) is None
    assert metrics.spread([4.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 4.0, "n": 3}
    # phases: the image's encoding starts at 2 ms, the prompt's prefill at 62 ms, the first token arrives at 100 ms
    phases = [{"name": "encoding the image", "ms": 2.0}, {"name": "reading the prompt", "ms": 62.0},
              {"name": "writing the answer", "ms": 100.5}]
    assert metrics.ttft_parts(times, phases) == {"image_encode_ms": 60.0, "prompt_prefill_ms": 38.0}
    assert metrics.ttft_parts(times, phases[1:]) == {"prompt_prefill_ms": 38.0}  # a text-only question
    assert metrics.ttft_parts(times, None) == {}


def test_a_row_is_the_median_of_its_runs():
    m = {"text": [{"token_times_ms": [10.0, 20.0, 30.0]}, {"token_times_ms": [50.0, 90.0, 130.0]},
                  {"token_times_ms": [20.0, 40.0, 60.0], "gpu": {"dispatches": 30, "submits": 6, "reads": 3,
                                                                "readBytes": 1200}}],
         "image": [{"step_times_ms": [100.0, 110.0, 120.0], "first_image_ms": 150.0, "total_ms": 160.0}],
         "load_s": 2.0}
    out = speed(m, images=1)
    assert out["ttft_ms"] == 20.0 and out["decode_ms_per_token"] == 20.0 and out["decode_tokens_per_s"] == 50.0
    # counters: the last run's totals over its 3 tokens (per-step counters absent)
    assert (out["dispatches_per_token"], out["submits_per_token"], out["reads_per_token"],
            out["read_bytes_per_token"]) == (10.0, 2.0, 1.0, 400.0)
    assert out["image_step_ms"] == 10.0 and out["vq_decode_ms"] == 30.0 and out["s_per_image"] == 0.16
    # per-step counters: the median over the steps after the first (which holds the prefill)
    per = counters_per_step({"gpu_per_token": [{"dispatches": 90, "submits": 9, "reads": 1, "read_bytes": 8},
                                               {"dispatches": 24, "submits": 1, "reads": 1, "read_bytes": 8},
                                               {"dispatches": 26, "submits": 1, "reads": 0, "read_bytes": 0},
                                               {"dispatches": 24, "submits": 1, "reads": 1, "read_bytes": 8}]}, 4)
    assert per == {"dispatches": 24.0, "submits": 1.0, "reads": 1.0, "read_bytes": 8.0}
    assert counters_per_step({"gpu_reads": 6}, 3)["reads"] == 2.0  # the page's count before per-step counters
