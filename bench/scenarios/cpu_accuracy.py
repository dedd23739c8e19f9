"""What the CPU engine's int8 activations cost in accuracy, on a bundle's quantized graphs.

Its integer path (the fused decoder graph and lm_head with MatMulNBits at accuracy_level 4 on onnxruntime: the
kernels' own arithmetic, activations per block of 32 to int8, integer dot products) against the float path (the
same weights at accuracy_level 0): teacher-forced logits over a prompt and the float path's greedy continuation
(max difference, cosine, KL, top-1 agreement) and free-running greedy tokens (agreement, first divergence).
"""

from pathlib import Path

from janusweb.bench.scenario import Metric, Param, Result, Scenario


class CpuAccuracy(Scenario):
    """The CPU engine's integer arithmetic against float activations (onnxruntime, accuracy_level 4 vs 0)."""
    name = "cpu-accuracy"
    params = (Param("bundle", Path, None, "bundles with quantized graphs"),
              Param("dtype", str, ("int8",), "the decoder's and lm_head's variant", choices=("int8", "q4")),
              Param("tokens", int, 32, "greedy tokens", multi=False))
    metrics = (
        Metric("positions", "", "teacher-forced positions", int),
        Metric("logit_max_diff", "", "largest logit difference"),
        Metric("logit_max_abs", "", "largest logit (the scale)"),
        Metric("cosine_min", "", "smallest cosine of a position's logits"),
        Metric("kl_mean", "nats", "mean KL(float || int) per position"),
        Metric("top1_agreement_pct", "%", "positions whose top token agrees"),
        Metric("greedy_agreement_pct", "%", "free-running greedy tokens that agree"),
        Metric("greedy_first_divergence", "", "first greedy token that differs (none: all equal)", int),
    )

    def run(self, ctx, case: dict, session) -> Result:
        from janusweb.bench.cpu_accuracy import compare
        r = compare(case["bundle"], case["dtype"], case["tokens"])
        t, g = r["teacher_forced"], r["greedy"]
        figures = {"positions": t["positions"], "logit_max_diff": t["logit_max_diff"],
                   "logit_max_abs": t["logit_max_abs"], "cosine_min": t["cosine_min"], "kl_mean": t["kl_mean"],
                   "top1_agreement_pct": 100 * t["top1_agreement"], "greedy_agreement_pct": 100 * g["agreement"],
                   "greedy_first_divergence": g["first_divergence"]}
        return Result({k: v for k, v in figures.items() if v is not None}, {"runner": "onnxruntime CPU EP"},
                      {"greedy": g, "prompt_tokens": r["prompt_tokens"]})
