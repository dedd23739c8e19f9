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
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from tokenizers import Tokenizer

from janusweb.generate import ModelDims, generate_images, generate_text, text_logits
from janusweb.graphs import GRAPH_NAMES, OrtGraphs
from janusweb.log import step
from janusweb.quantize import graph_io
from janusweb.prompts import SpecialIds, generation_prompt, understanding_inputs
from janusweb.sampling import uniforms

QUESTION = "Describe this image in detail."
IMAGE_PROMPT = "A watercolor painting of mountains at sunset."
TEACHER_TEXT = ("Janus is a unified model that understands images and generates them from text. A photo of a cat "
                "sitting on a windowsill in the morning sun, next to a blue cup on a wooden table. ")
# gen_step's float32 token ids (exact integers): compared as ids, not as floats.
ID_FLOAT_OUTPUTS = frozenset({"tokens_out"})
RANDOM_WEIGHTS_NOTE = ("random weights (a preset): quantization error on random Gaussian weights is a weak proxy for "
                       "real checkpoints, whose outlier weights and peaked logits behave differently; rerun on a real "
                       "checkpoint's bundle before trusting these numbers")


@dataclass
class Settings:
    seed: int = 0
    text_steps: int = 64
    teacher_positions: int = 256
    image_steps: int = 576
    calls_per_graph: int = 2  # recorded inputs per graph for the per-graph comparison


class Recorder:
    """Graphs that keep the first `keep` feeds and outputs of each graph."""

    def __init__(self, graphs, keep: int):
        self.graphs, self.keep = graphs, keep
        self.calls = {name: [] for name in GRAPH_NAMES}

    def run(self, name: str, feeds: dict) -> list:
        out = self.graphs.run(name, feeds)
        if len(self.calls[name]) < self.keep:
            self.calls[name].append((dict(feeds), [np.array(o) for o in out]))
        return out

    def to_numpy(self, x):
        return self.graphs.to_numpy(x)


@dataclass
class Pass:
    text: list = field(default_factory=list)
    logits: np.ndarray | None = None
    image_tokens: np.ndarray | None = None
    image: np.ndarray | None = None


def sample_image(size: int) -> np.ndarray:
    """A fixed smooth colour picture (gradients and rings), pixel_values [1, 1, 3, size, size] in [-1, 1]."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    r = np.sqrt((x - 0.5) ** 2 + (y - 0.4) ** 2)
    rgb = np.stack([x, 0.5 + 0.5 * np.sin(12 * r), 1 - y * (r < 0.3)])
    return (rgb * 2 - 1)[None, None].astype(np.float32)


def teacher_ids(tok: Tokenizer, positions: int) -> np.ndarray:
    ids = tok.encode(TEACHER_TEXT, add_special_tokens=True).ids
    body = tok.encode(TEACHER_TEXT, add_special_tokens=False).ids
    while len(ids) < positions:
        ids += body
    return np.array([ids[:positions]], np.int64)


def _run_pass(graphs, dims: ModelDims, tok: Tokenizer, ids: SpecialIds, s: Settings, draws: np.ndarray,
              label: str) -> Pass:
    p = Pass()
    inputs = understanding_inputs(tok, ids, QUESTION, dims.num_image_tokens)
    with step(f"{label}: greedy text, {s.text_steps} tokens after an image prompt"):
        p.text = generate_text(graphs, dims, inputs, s.text_steps, pixel_values=sample_image(dims.image_size))
    with step(f"{label}: teacher-forced logits, {s.teacher_positions} positions"):
        p.logits = text_logits(graphs, dims, teacher_ids(tok, s.teacher_positions)).astype(np.float64)
    with step(f"{label}: CFG image, {draws.shape[1]} tokens"):
        result = generate_images(graphs, dims, ids, generation_prompt(tok, ids, IMAGE_PROMPT), draws)
    p.image_tokens, p.image = result.tokens, result.images
    return p


def gen_step_feeds(gen_head_calls: list, draws: np.ndarray, tokens: np.ndarray, guidance: float = 5.0) -> list:
    """Inputs of the page's fused gen_step graph for the image steps whose gen_head inputs were recorded: the
    same hidden states ([2n,1,H] -> [2,n,1,H]), all draws [n,T], and the fp32 run's tokens before that step."""
    feeds = []
    n, T = draws.shape
    for k, (head_feeds, _) in enumerate(gen_head_calls):
        hidden = head_feeds["hidden_states"]
        before = np.zeros((n, T), np.float32)
        before[:, :k] = tokens[:, :k]
        feeds.append({"hidden_states": hidden.reshape(2, n, *hidden.shape[1:]), "draws": draws.astype(np.float32),
                      "guidance": np.array([guidance], np.float32), "temperature": np.array([1.0], np.float32),
                      "tokens": before, "step": np.array([float(k)], np.float32)})
    return feeds


def _agreement(a, b) -> dict:
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    diff = np.flatnonzero(a != b)
    return {"steps": int(a.size), "agreement": float((a == b).mean()) if a.size else 1.0,
            "first_divergence": int(diff[0]) if diff.size else None}


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _teacher(a: np.ndarray, b: np.ndarray) -> dict:
    la, lb = _log_softmax(a), _log_softmax(b)
    kl = (np.exp(la) * (la - lb)).sum(-1)
    return {"positions": int(a.shape[0]), "top1_agreement": float((a.argmax(-1) == b.argmax(-1)).mean()),
            "mean_kl": float(kl.mean()), "max_kl": float(kl.max())}


def psnr(a: np.ndarray, b: np.ndarray) -> float | None:
    """PSNR in dB of two images in [-1, 1] (peak = the full range); None when they are identical."""
    mse = float(np.mean(((a.astype(np.float64) - b) / 2) ** 2))
    return None if mse == 0 else 10 * math.log10(1 / mse)


def _is_ids(name: str, value: np.ndarray) -> bool:
    return not np.issubdtype(value.dtype, np.floating) or name in ID_FLOAT_OUTPUTS


def _compare(calls: list, names: list, session_run) -> dict:
    """Worst max abs diff and cosine over the float outputs, and the share of equal ids over the id outputs
    (gen_step's sampled tokens). A call whose ids differ feeds different tokens to the float outputs that
    follow them (gen_step's next embeddings): its floats are left out, and counted in float_calls."""
    worst_diff, worst_cos, ref_max, same, total, float_calls = 0.0, 1.0, 0.0, 0, 0, 0
    for feeds, ref in calls:
        out = session_run(feeds)
        id_pairs = [(r, q) for n, r, q in zip(names, ref, out) if _is_ids(n, r)]
        same += sum(int((r == q).sum()) for r, q in id_pairs)
        total += sum(r.size for r, _ in id_pairs)
        if any(not np.array_equal(r, q) for r, q in id_pairs):
            continue
        float_calls += 1
        for name, r, q in zip(names, ref, out):
            if _is_ids(name, r) or not r.size:
                continue
            r, q = r.astype(np.float64).ravel(), np.asarray(q, np.float64).ravel()
            worst_diff = max(worst_diff, float(np.abs(r - q).max()))
            ref_max = max(ref_max, float(np.abs(r).max()))
            denom = np.linalg.norm(r) * np.linalg.norm(q)
            worst_cos = min(worst_cos, float(r @ q / denom) if denom else float(np.array_equal(r, q)))
    result = {"calls": len(calls), "float_calls": float_calls, "max_abs_fp32": ref_max,
              "max_abs_diff": worst_diff if float_calls else None, "cosine": worst_cos if float_calls else None}
    if total:
        result["ids_agreement"] = same / total
    return result


def round_conv_weights(model: onnx.ModelProto, bits: int = 8) -> int:
    """Round every Conv weight to `bits` bits per output channel (symmetric), kept in float: what shipping
    quantized convolution weights would cost in accuracy. Returns the number of convolutions rounded."""
    inits = {t.name: t for t in model.graph.initializer}
    levels = 2 ** (bits - 1) - 1
    done = 0
    for node in model.graph.node:
        if node.op_type == "Conv" and node.input[1] in inits:
            t = inits[node.input[1]]
            w = numpy_helper.to_array(t)
            scale = np.abs(w).reshape(w.shape[0], -1).max(1).reshape(-1, *[1] * (w.ndim - 1)) / levels
            scale = np.where(scale > 0, scale, 1).astype(np.float32)
            t.CopyFrom(numpy_helper.from_array((np.round(w / scale) * scale).astype(np.float32), t.name))
            done += 1
    return done


def conv_rounding_psnr(decoder: Path, tokens: np.ndarray, reference: np.ndarray) -> dict:
    """PSNR of image_decode with 8-bit rounded convolution weights against the fp32 decode."""
    model = graph_io.load(decoder)
    count = round_conv_weights(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return {"convolutions": count, "psnr_db": psnr(reference, session.run(None, {"generated_tokens": tokens})[0])}


def measure(bundle: Path, staged: Path, dtype: str, settings: Settings | None = None) -> dict:
    """Compare the `dtype` graphs under staged/onnx with the fp32 graphs of `bundle`."""
    s = settings or Settings()
    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    ids = SpecialIds.from_tokenizer(tok)
    rec = Recorder(OrtGraphs(bundle), s.calls_per_graph)
    dims = ModelDims.from_bundle_config(rec.graphs.config)
    all_draws = uniforms(s.seed, dims.num_image_tokens).reshape(1, -1)
    draws = all_draws[:, :min(s.image_steps, dims.num_image_tokens)]
    ref = _run_pass(rec, dims, tok, ids, s, draws, "fp32")
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
            graphs[name] = _compare(calls[name], names, lambda feeds, n=name: quant_graphs.run(n, feeds))
    quant = _run_pass(quant_graphs, dims, tok, ids, s, draws, dtype)
    full = np.zeros((1, dims.num_image_tokens), np.int64)
    full[:, :ref.image_tokens.shape[1]] = ref.image_tokens
    decoded = quant_graphs.run("image_decode", {"generated_tokens": full})[0]
    del quant_graphs
    with step("image_decode with 8-bit convolution weights (simulated, not shipped)"):
        conv = conv_rounding_psnr(bundle / "onnx" / "image_decode.onnx", full, ref.image)
    return {
        "graphs": graphs,
        "end_to_end": {
            "text": _agreement(ref.text, quant.text),
            "teacher_forced": _teacher(ref.logits, quant.logits),
            "image": _agreement(ref.image_tokens, quant.image_tokens),
            "image_decode_psnr_db": psnr(ref.image, decoded),
            "conv_int8_simulated": conv,
        },
        "settings": s.__dict__,
    }


def table(report: dict) -> str:
    """The report as a plain-text table (what `janusweb quantize` prints)."""
    lines = [f"{report['dtype']} vs fp32 ({report['weights_note']})",
             f"{'graph':<22} {'bytes':>13} {'fp32 bytes':>13} {'max abs diff':>13} {'cosine':>10} {'ids':>7}  "
             "quantized"]
    for name, g in report["graphs"].items():
        ids = f"{g['ids_agreement']:.1%}" if "ids_agreement" in g else "-"
        diff, cos = g.get("max_abs_diff"), g.get("cosine")
        diff = "-" if diff is None else f"{diff:.3e}"
        cos = "-" if cos is None else f"{cos:.6f}"
        lines.append(f"{name:<22} {g['bytes']:>13,} {g['fp32_bytes']:>13,} {diff:>13} {cos:>10} {ids:>7}  "
                     f"{g['quantized']}")
    lines.append(f"{'total':<22} {report['bytes']:>13,} {report['fp32_bytes']:>13,}")
    e = report.get("end_to_end")
    if e:
        t, f, i = e["text"], e["teacher_forced"], e["image"]
        p = e["image_decode_psnr_db"]
        lines += [
            f"greedy text after an image prompt: {t['agreement']:.1%} of {t['steps']} tokens agree, "
            f"first divergence {t['first_divergence']}",
            f"teacher-forced, {f['positions']} positions: top-1 agreement {f['top1_agreement']:.1%}, "
            f"mean KL {f['mean_kl']:.3e} (max {f['max_kl']:.3e})",
            f"CFG image tokens: {i['agreement']:.1%} of {i['steps']} agree, first divergence {i['first_divergence']}",
            f"image_decode alone, PSNR vs fp32 decode: {'identical' if p is None else f'{p:.1f} dB'}",
        ]
        c = e.get("conv_int8_simulated")
        if c:
            lines.append(f"(not shipped) VQ decoder's {c['convolutions']} convolutions with 8-bit per-channel weights: "
                         f"PSNR {c['psnr_db']:.1f} dB vs fp32")
    return "\n".join(lines)
