"""The teacher-forced image check of `janusweb export`: rounding that moves one draw across a CDF boundary is a
counted tie (not a failure, and no cascade over later steps); a token that differs far from any boundary, logits
beyond tolerance, or one perturbed gen_head weight fail it."""

import json

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer

from janusweb.export.checkpoint import load_source
from janusweb.export.image_check import compare_steps, image_end_to_end, tie_distance
from janusweb.export.specs import graph_specs
from janusweb.generate import ModelDims
from janusweb.graphs import OrtGraphs, TorchGraphs
from janusweb.prompts import SpecialIds, generation_prompt
from janusweb.sampling import cfg_logits, sample, uniforms

V, T, GUIDANCE = 16384, 576, 5.0  # janus-pro's codebook and image length


def _near_uniform(seed: int):
    """Random-weight-like gen_head logits [T][2, V] (spread 0.05) and a float32-rounding-sized copy of them."""
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal((T, 2, V)) * 0.05).astype(np.float32)
    b = (a.astype(np.float64) * (1 + rng.uniform(-1e-6, 1e-6, a.shape))).astype(np.float32)
    return a, b


def _draw_all(raw, draws):
    return np.stack([sample(cfg_logits(r[:1].astype(np.float64), r[1:].astype(np.float64), GUIDANCE), draws[:, t], 1.0)
                     for t, r in enumerate(raw)], 1)


def _cdf(raw_t):
    z = cfg_logits(raw_t[0].astype(np.float64), raw_t[1].astype(np.float64), GUIDANCE)
    p = np.exp(z - z.max())
    return np.cumsum(p) / p.sum()


def _between_boundaries(raw_a_t, raw_b_t) -> float:
    """A draw between the two sides' CDF boundary of one token: rounding puts it on different sides."""
    ca, cb = _cdf(raw_a_t), _cdf(raw_b_t)
    k = int(np.argmax(np.abs(ca - cb)[: V - 1]))
    return float((ca[k] + cb[k]) / 2)


def test_a_flip_at_a_cdf_boundary_is_a_tie_not_a_failure():
    a, b = _near_uniform(0)
    draws = uniforms(0, T).reshape(1, T)
    for t in (100, 319, 500):
        draws[0, t] = _between_boundaries(a[t], b[t])
    ta, tb = _draw_all(a, draws), _draw_all(b, draws)
    assert not np.array_equal(ta, tb)  # exact equality of sampled tokens would refuse this valid pair
    check = compare_steps(a, b, ta, tb, draws, GUIDANCE, 1.0, 0.0)
    assert check.ok, check.summary()
    assert check.ties == int((ta != tb).sum()) == 3 and check.token_mismatches == 0
    assert check.max_epsilon < 1e-4 and check.logits_failed_steps == 0


def test_a_token_far_from_a_boundary_is_a_mismatch():
    a, _ = _near_uniform(1)
    draws = uniforms(1, T).reshape(1, T)
    ta = _draw_all(a, draws)
    tb = ta.copy()
    tb[0, 200] = (tb[0, 200] + V // 3) % V  # what a wrong step would draw
    check = compare_steps(a, a, ta, tb, draws, GUIDANCE, 1.0, 0.0)
    assert not check.ok and check.token_mismatches == 1 and check.first_failure == 200


def test_logits_beyond_tolerance_fail():
    a, b = _near_uniform(2)
    b = b.copy()
    b[42, 0, 7] += 0.01  # 10x the limit for |logits| < 1
    draws = uniforms(2, T).reshape(1, T)
    check = compare_steps(a, b, _draw_all(a, draws), _draw_all(a, draws), draws, GUIDANCE, 1.0, 0.0)
    assert not check.ok and check.logits_failed_steps == 1 and check.first_failure == 42


def test_tie_distance():
    logits = np.log(np.array([0.25, 0.25, 0.5]))
    assert tie_distance(logits, 0.3, 1, 1.0) == 0.0  # inside [0.25, 0.5)
    assert tie_distance(logits, 0.5, 1, 1.0) == pytest.approx(0.0, abs=1e-12)  # on the upper boundary
    assert tie_distance(logits, 0.9, 0, 1.0) == pytest.approx(0.65)


@pytest.fixture(scope="module")
def tiny(tiny_bundle):
    src = load_source("tiny", 0)  # the weights the session's bundle was exported from
    tok = Tokenizer.from_file(str(tiny_bundle / "tokenizer.json"))
    ids = SpecialIds.from_tokenizer(tok)
    dims = ModelDims.from_bundle_config(json.loads((tiny_bundle / "config.json").read_text())["janusweb"])
    prompt = generation_prompt(tok, ids, "A watercolor painting of mountains at sunset.")
    draws = uniforms(0, dims.num_image_tokens).reshape(1, -1)
    return src.model, OrtGraphs(tiny_bundle), dims, ids, prompt, draws


def test_exported_graphs_pass(tiny):
    model, ort_graphs, dims, ids, prompt, draws = tiny
    check = image_end_to_end(ort_graphs, TorchGraphs(model, graph_specs(model)), dims, ids, prompt, draws)
    assert check.ok, check.summary()
    assert check.steps == dims.num_image_tokens and check.logits_max_abs_diff < 1e-4


def test_one_perturbed_gen_head_weight_fails(tiny):
    model, ort_graphs, dims, ids, prompt, draws = tiny
    weight = next(p for name, p in model.model.generation_head.named_parameters() if name.endswith("weight")
                  and p.dim() == 2)
    saved = weight.detach().clone()
    try:
        with torch.no_grad():
            weight[3, 5] += 0.5  # one weight of the head, after the export: PyTorch no longer matches the graph
        check = image_end_to_end(ort_graphs, TorchGraphs(model, graph_specs(model)), dims, ids, prompt, draws)
    finally:
        with torch.no_grad():
            weight.copy_(saved)
    assert not check.ok and check.logits_failed_steps > 0, check.summary()
