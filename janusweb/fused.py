"""The fused `language_model` graph (export/fused.py: GroupQueryAttention with a fixed-capacity KV buffer)
behind the interface of OrtGraphs, so that janusweb.generate's loops run on it unchanged.

The fused graph differs from `language_model.onnx` in its inputs; per call the adapter feeds what the page
feeds each step:
- inputs_embeds [B, S, H] as is;
- no position_ids: GroupQueryAttention rotates token s of row b by seqlens_k[b] - S + 1 + s, with seqlens_k =
  (row sum of attention_mask) - 1, i.e. positions past..past+S-1 for unpadded rows (the only rows allowed);
- attention_mask int32 (export/fused.py drops the builder's int64 Cast): with the graph-capture mask subgraph,
  [B, capacity] with ones over the past+S filled positions and zeros after (a static shape); otherwise
  [B, past+S] ones;
- past_key_values.{i}.key/value: one float32 buffer [B, kv_heads, capacity, head_dim] per tensor, bound both as
  the input and as the output present.{i}.* (IOBinding on the same OrtValue), written in place at
  positions past..past+S-1.
The loops keep, as their cache, views of the buffers' first past+S positions; a cache that is not such a view
(another graph's) is copied into the buffers first.
"""

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from janusweb.generate import ModelDims
from janusweb.dtypes import graph_file
from janusweb.graphs import GRAPH_NAMES, OrtGraphs

STEM = "language_model_gqa"  # also its name among the manifest's graphs
ATTENTION_MASK_KEY = {True: "capacity", False: "total"}  # graph_capture -> how attention_mask is sized
DEFAULT_CAPACITY = 2048


def _session(path: Path, providers) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=list(providers))


def mask_spans_capacity(path: Path) -> bool:
    """Whether the graph reads the total length as the mask's largest row sum (the graph-capture subgraph)
    rather than as the mask's width."""
    model = onnx.load(str(path), load_external_data=False)
    return any(n.op_type == "ReduceMax" and n.input[0].startswith("/model/attn_mask_reformat")
               for n in model.graph.node)


class FusedLanguageModel:
    """One session over the fused graph plus its KV buffers; `run` takes and returns language_model.onnx's
    feeds and outputs."""

    def __init__(self, path: Path, dims: ModelDims, capacity: int = DEFAULT_CAPACITY,
                 providers=("CPUExecutionProvider",)):
        self.session = _session(path, providers)
        self.dims, self.capacity = dims, capacity
        self.mask_spans_capacity = mask_spans_capacity(path)
        self.names = [f"{i}.{kind}" for i in range(dims.layers) for kind in ("key", "value")]
        self.buffers: list = []
        self.values: list = []

    def _reset(self, batch: int) -> None:
        shape = (batch, self.dims.kv_heads, self.capacity, self.dims.head_dim)
        if not self.buffers or self.buffers[0].shape != shape:
            self.buffers = [np.zeros(shape, np.float32) for _ in self.names]
            # CPU OrtValues over the numpy buffers (shared memory): the graph writes the views the loops hold
            self.values = [ort.OrtValue.ortvalue_from_numpy(b) for b in self.buffers]

    def _check(self, feeds: dict) -> tuple:
        embeds, mask = feeds["inputs_embeds"], np.asarray(feeds["attention_mask"])
        batch, seq = embeds.shape[:2]
        past = feeds[f"past_key_values.{self.names[0]}"].shape[2]
        if mask.shape != (batch, past + seq) or not (mask == 1).all():
            raise ValueError("the fused language model takes unpadded rows only: attention_mask must be all ones "
                             f"of shape [batch, past + seq] = [{batch}, {past + seq}], got {list(mask.shape)}")
        positions = np.asarray(feeds["position_ids"])
        if not (positions == np.arange(past, past + seq)).all():
            raise ValueError("the fused language model derives positions from the mask: position_ids must be "
                             f"past..past+seq-1 in every row ({past}..{past + seq - 1})")
        if past + seq > self.capacity:
            raise ValueError(f"the KV cache holds {self.capacity} positions; this call needs {past + seq}")
        return embeds, batch, seq, past

    def _adopt(self, feeds: dict, batch: int, past: int) -> None:
        """Start over on an empty cache; copy in a cache that is not a view of the buffers."""
        if past == 0 or not self.buffers or self.buffers[0].shape[0] != batch:
            self._reset(batch)
        for name, buf in zip(self.names, self.buffers):
            fed = feeds[f"past_key_values.{name}"]
            if past and not np.may_share_memory(fed, buf):
                buf[:, :, :past] = fed

    def run(self, feeds: dict) -> list:
        embeds, batch, seq, past = self._check(feeds)
        self._adopt(feeds, batch, past)
        total = past + seq
        width = self.capacity if self.mask_spans_capacity else total
        mask = np.zeros((batch, width), np.int32)
        mask[:, :total] = 1
        binding = self.session.io_binding()
        binding.bind_cpu_input("inputs_embeds", np.ascontiguousarray(embeds, np.float32))
        binding.bind_cpu_input("attention_mask", mask)
        binding.bind_output("hidden_states")  # first: get_outputs() follows the binding order
        for name, value in zip(self.names, self.values):
            binding.bind_ortvalue_input(f"past_key_values.{name}", value)
            binding.bind_ortvalue_output(f"present.{name}", value)
        self.session.run_with_iobinding(binding)
        hidden = binding.get_outputs()[0].numpy()
        return [hidden, *[buf[:, :, :total] for buf in self.buffers]]


class FusedGraphs(OrtGraphs):
    """OrtGraphs whose `language_model` is the fused graph of `lm_dtype` (the others as `dtypes` picks)."""

    def __init__(self, bundle: Path, lm_dtype: str = "fp32", dtypes: dict | None = None,
                 capacity: int = DEFAULT_CAPACITY, providers=("CPUExecutionProvider",)):
        # OrtGraphs' constructor would open language_model.onnx too: open the other graphs only
        self.bundle = Path(bundle)
        self.config = json.loads((self.bundle / "config.json").read_text())["janusweb"]
        self.dtypes = {name: (dtypes or {}).get(name, "fp32") for name in GRAPH_NAMES if name != "language_model"}
        self.sessions = {name: _session(self.bundle / graph_file(name, d), providers)
                         for name, d in self.dtypes.items()}
        path = self.bundle / graph_file(STEM, lm_dtype)
        if not path.is_file():
            raise FileNotFoundError(f"{path} (`janusweb export` writes it; `janusweb quantize` its variants)")
        self.dtypes["language_model"] = f"gqa-{lm_dtype}"
        self.language_model = FusedLanguageModel(path, ModelDims.from_bundle_config(self.config), capacity,
                                                 providers)

    def run(self, name: str, feeds: dict) -> list:
        if name == "language_model":
            return self.language_model.run(feeds)
        return super().run(name, feeds)

    def providers(self) -> dict:
        return super().providers() | {"language_model": self.language_model.session.get_providers()[0]}


def hidden_state_diff(fused: Path, reference: Path, config: dict, batches=(1, 2), prompt: int = 7, steps: int = 4,
                      seed: int = 0) -> dict:
    """Hidden states of the fused graph `fused` against those of a language_model graph `reference` on the same
    random embeddings: a prefill of `prompt` positions, then `steps` one-position steps, per batch size.
    config: config.json's janusweb block. Returns {"batch=B": {"max_abs_diff": ..., "reference_abs_max": ...}}."""
    dims = ModelDims.from_bundle_config(config)
    reference_graph = _session(reference, ("CPUExecutionProvider",))
    lm = FusedLanguageModel(fused, dims, capacity=prompt + steps)
    names = [f"past_key_values.{i // 2}.{('key', 'value')[i % 2]}" for i in range(2 * dims.layers)]
    rng = np.random.default_rng(seed)
    result = {}
    for batch in batches:
        empty = np.zeros((batch, dims.kv_heads, 0, dims.head_dim), np.float32)
        ref_cache = ours_cache = [empty] * len(names)
        worst, scale, past = 0.0, 0.0, 0
        for seq in [prompt] + [1] * steps:
            embeds = rng.standard_normal((batch, seq, config["hidden_size"])).astype(np.float32)
            feeds = {"inputs_embeds": embeds, "attention_mask": np.ones((batch, past + seq), np.int64),
                     "position_ids": np.tile(np.arange(past, past + seq), (batch, 1))}
            ref = reference_graph.run(None, feeds | dict(zip(names, ref_cache)))
            ours = lm.run(feeds | dict(zip(names, ours_cache)))
            worst = max(worst, float(np.abs(ref[0] - ours[0]).max()))
            scale = max(scale, float(np.abs(ref[0]).max()))
            ref_cache, ours_cache, past = ref[1:], ours[1:], past + seq
        result[f"batch={batch}"] = {"max_abs_diff": worst, "reference_abs_max": scale}
    return result


# Graphs that stand in for another (other inputs, same role): name -> how their outputs are compared with the
# replaced graph's ONNX file (export validates the fp32 graph with it, quantize measures each variant)
REPLACEMENTS = {STEM: hidden_state_diff}
