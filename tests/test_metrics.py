"""janusweb.metrics against values worked out by hand (the expected numbers are written here, not computed by
the functions under test)."""

import math

import numpy as np
import pytest

from janusweb.bench.parity import parity
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
    run = {"understanding": {"tokens": [1, 2, 3, 9]}, "generation": {"1": {"tokens": [4, 4], "images": other}}}
    ref = {"understanding": {"tokens": [1, 2, 3, 4]}, "generation": {"1": {"tokens": [4, 5], "images": image}}}
    out = parity(run, ref)
    assert out["text_token_agreement_pct"] == 75.0 and out["text_first_divergence"] == 3
    assert out["image_token_agreement_pct_1"] == 50.0 and out["image_psnr_db_1"] == 21.25
