"""Each graph alone: the fp32 graphs' recorded calls (real activations from the end-to-end pass) replayed on
the quantized graph, compared output by output."""

import numpy as np

from janusweb.graphs import GRAPH_NAMES
from janusweb.metrics import cosine

# gen_step's float32 token ids (exact integers): compared as ids, not as floats.
ID_FLOAT_OUTPUTS = frozenset({"tokens_out"})

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


def _is_ids(name: str, value: np.ndarray) -> bool:
    return not np.issubdtype(value.dtype, np.floating) or name in ID_FLOAT_OUTPUTS


def compare(calls: list, names: list, session_run) -> dict:
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
            worst_cos = min(worst_cos, cosine(r, q))
    result = {"calls": len(calls), "float_calls": float_calls, "max_abs_fp32": ref_max,
              "max_abs_diff": worst_diff if float_calls else None, "cosine": worst_cos if float_calls else None}
    if total:
        result["ids_agreement"] = same / total
    return result
