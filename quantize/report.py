"""The accuracy report of a quantized variant against the fp32 graphs, with janusweb's reference loops.

Per graph: every quantized graph runs alone on the exact inputs the fp32 graph saw during the end-to-end runs
below (real activations, not noise); max abs diff and cosine similarity over its outputs.
End to end (every graph quantized): greedy text after an image prompt (token agreement, first divergence);
teacher-forced next-token logits over a fixed text (top-1 agreement, mean KL(fp32 || quantized)); CFG image
tokens from the same uniform draws (agreement, first divergence); and the quantized image_decode alone on the
fp32 image tokens (PSNR against the fp32 decode). To weigh shipping 8-bit convolution weights, also the fp32
image_decode with its convolution weights rounded to 8 bits per output channel (PSNR; not shipped).

The fp32 pass runs first and its sessions are dropped before the quantized ones load, so a 1B bundle needs the
memory of one set of graphs at a time.
"""

import gc
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from janusweb.generate import ModelDims
from janusweb.graphs import GRAPH_NAMES, OrtGraphs
from janusweb.log import step
from janusweb.metrics import agreement, first_divergence, kl_divergence, psnr
from janusweb.prompts import SpecialIds
from janusweb.quantize.conv_rounding import conv_rounding_psnr
from janusweb.quantize.per_graph import Recorder, compare
from janusweb.quantize.workload import Settings, gen_step_feeds, run_pass
from janusweb.sampling import uniforms

RANDOM_WEIGHTS_NOTE = ("random weights (a preset): quantization error on random Gaussian weights is a weak proxy for "
                       "real checkpoints, whose outlier weights and peaked logits behave differently; rerun on a real "
                       "checkpoint's bundle before trusting these numbers")




def _sequences(a, b) -> dict:
    """Two token sequences of equal length: agreement (a fraction) and first divergence."""
    return {"steps": int(np.asarray(a).size), "agreement": agreement(a, b),
            "first_divergence": first_divergence(np.asarray(a).ravel(), np.asarray(b).ravel())}


def _teacher(a: np.ndarray, b: np.ndarray) -> dict:
    kl = kl_divergence(a, b)
    return {"positions": int(a.shape[0]), "top1_agreement": agreement(a.argmax(-1), b.argmax(-1)),
            "mean_kl": float(kl.mean()), "max_kl": float(kl.max())}


def measure(bundle: Path, staged: Path, dtype: str, settings: Settings | None = None) -> dict:
    """Compare the `dtype` graphs under staged/onnx with the fp32 graphs of `bundle`."""
    s = settings or Settings()
    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    ids = SpecialIds.from_tokenizer(tok)
    rec = Recorder(OrtGraphs(bundle), s.calls_per_graph)
    dims = ModelDims.from_bundle_config(rec.graphs.config)
    all_draws = uniforms(s.seed, dims.num_image_tokens).reshape(1, -1)
    draws = all_draws[:, :min(s.image_steps, dims.num_image_tokens)]
    ref = run_pass(rec, dims, tok, ids, s, draws, "fp32")
    if "gen_step" in GRAPH_NAMES:
        for feeds in gen_step_feeds(rec.calls["gen_head"], all_draws, ref.image_tokens):
            rec.run("gen_step", feeds)
    calls = rec.calls
    del rec
    gc.collect()

    quant_graphs = OrtGraphs(staged, dtypes={name: dtype for name in GRAPH_NAMES})
    with step(f"{dtype}: each graph alone on the fp32 graphs' inputs"):
        graphs = {}
        for name in GRAPH_NAMES:
            names = [o.name for o in quant_graphs.sessions[name].get_outputs()]
            graphs[name] = compare(calls[name], names, lambda feeds, n=name: quant_graphs.run(n, feeds))
    quant = run_pass(quant_graphs, dims, tok, ids, s, draws, dtype)
    full = np.zeros((1, dims.num_image_tokens), np.int64)
    full[:, :ref.image_tokens.shape[1]] = ref.image_tokens
    decoded = quant_graphs.run("image_decode", {"generated_tokens": full})[0]
    del quant_graphs
    with step("image_decode with 8-bit convolution weights (simulated, not shipped)"):
        conv = conv_rounding_psnr(bundle / "onnx" / "image_decode.onnx", full, ref.image)
    return {
        "graphs": graphs,
        "end_to_end": {
            "text": _sequences(ref.text, quant.text),
            "teacher_forced": _teacher(ref.logits, quant.logits),
            "image": _sequences(ref.image_tokens, quant.image_tokens),
            "image_decode_psnr_db": psnr(ref.image, decoded),
            "conv_int8_simulated": conv,
        },
        "settings": s.__dict__,
    }
