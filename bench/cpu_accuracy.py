"""What the CPU engine's int8 activations cost in accuracy: its integer path (the fused decoder graph and lm_head
with MatMulNBits at accuracy_level 4 on onnxruntime, the kernels' own arithmetic: activations per block of 32 to
int8, integer dot products) against the float path (the same weights at accuracy_level 0: float activations), on
a bundle's quantized graphs: teacher-forced logits over a prompt and the float path's greedy continuation (max
difference, cosine, KL, top-1 agreement), and free-running greedy tokens (agreement, first divergence). The
`cpu-accuracy` scenario runs it."""

import tempfile
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from janusweb import metrics
from janusweb.accuracy_level import accuracy_view
from janusweb.dtypes import graph_file
from janusweb.fused import STEM, FusedGraphs
from janusweb.generate import ModelDims, generate_text, text_logits
from janusweb.graphs import GRAPH_NAMES
from janusweb.log import step

PROMPT = "Describe a red bicycle leaning against a stone wall in the rain."
LEVELS = {"float": 0, "int": 4}


def _text_inputs(ids: list, dims: ModelDims) -> dict:
    S = len(ids)
    return {"input_ids": np.array([ids], np.int64), "images_seq_mask": np.zeros((1, S), bool),
            "images_emb_mask": np.zeros((1, 0, dims.num_image_tokens), bool)}


def compare(bundle: Path, dtype: str = "int8", tokens: int = 32) -> dict:
    bundle = Path(bundle)
    prompt = Tokenizer.from_file(str(bundle / "tokenizer.json")).encode(PROMPT).ids
    greedy, logits = {}, {}
    with tempfile.TemporaryDirectory(prefix="janusweb-cpu-accuracy-") as tmp:
        for path, level in LEVELS.items():
            view = accuracy_view(bundle, Path(tmp) / path, [graph_file(STEM, dtype), graph_file("lm_head", dtype)],
                                 level)
            with step(f"{bundle.name}: {path} path (accuracy_level {level}), {tokens} greedy tokens"):
                # every graph at the bundle's dtype (the int8 page's embeddings; less memory for the 1B)
                graphs = FusedGraphs(view, dtype, {name: dtype for name in GRAPH_NAMES})
                dims = ModelDims.from_bundle_config(graphs.config)
                greedy[path] = generate_text(graphs, dims, _text_inputs(prompt, dims), tokens)
                # teacher-forced over the same sequence for both paths: the prompt + the float path's tokens
                logits[path] = text_logits(graphs, dims, _text_inputs(prompt + greedy["float"], dims)["input_ids"])
            del graphs
    a, b = logits["float"].astype(np.float64), logits["int"].astype(np.float64)
    scale = float(np.abs(a).max())
    return {"bundle": str(bundle), "dtype": dtype, "prompt_tokens": len(prompt), "tokens": tokens,
            "teacher_forced": {"positions": int(a.shape[0]), "logit_max_diff": float(np.abs(a - b).max()),
                               "logit_max_abs": scale, "cosine_min": min(metrics.cosine(x, y) for x, y in zip(a, b)),
                               "kl_mean": float(metrics.kl_divergence(a, b).mean()),
                               "top1_agreement": float((a.argmax(-1) == b.argmax(-1)).mean())},
            "greedy": {"float": greedy["float"], "int": greedy["int"],
                       "agreement": metrics.agreement(greedy["float"], greedy["int"]),
                       "first_divergence": metrics.first_divergence(greedy["float"], greedy["int"])}}
