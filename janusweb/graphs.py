"""The six Janus graphs behind one small interface, run by onnxruntime (a bundle) or by PyTorch (the
transformers model through the export wrappers). Inputs and outputs are numpy arrays."""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from janusweb.dtypes import graph_file

GRAPH_NAMES = ("prepare_inputs_embeds", "language_model", "lm_head", "gen_head", "gen_img_embeds", "image_decode",
               "gen_step")


class OrtGraphs:
    """onnxruntime sessions over a bundle's graphs; `dtypes` picks a variant per graph (default fp32)."""

    def __init__(self, bundle: Path, dtypes: dict | None = None, providers=("CPUExecutionProvider",)):
        self.bundle = Path(bundle)
        self.config = json.loads((self.bundle / "config.json").read_text())["janusweb"]
        self.dtypes = {name: (dtypes or {}).get(name, "fp32") for name in GRAPH_NAMES}
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.sessions = {
            name: ort.InferenceSession(str(self.bundle / graph_file(name, d)), opts,
                                       providers=list(providers))
            for name, d in self.dtypes.items()
        }

    def run(self, name: str, feeds: dict) -> list:
        return self.sessions[name].run(None, feeds)

    @staticmethod
    def to_numpy(x) -> np.ndarray:
        return x

    def providers(self) -> dict:
        return {name: s.get_providers()[0] for name, s in self.sessions.items()}


class TorchGraphs:
    """The same interface over the PyTorch wrappers of a transformers model (the export's reference).

    Outputs stay torch tensors on the model's device (the KV cache never leaves it); the loops read only
    what they need on the host through `to_numpy`."""

    def __init__(self, model, specs):
        self.modules = {s.name: s.wrapper(model).eval() for s in specs}
        self.input_names = {s.name: [t.name for t in s.inputs] for s in specs}
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype

    def _arg(self, x):
        x = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
        return x.to(self.device, self.dtype if x.is_floating_point() else None)

    @torch.no_grad()
    def run(self, name: str, feeds: dict) -> list:
        out = self.modules[name](*[self._arg(feeds[n]) for n in self.input_names[name]])
        return list(out) if isinstance(out, tuple) else [out]

    @staticmethod
    def to_numpy(x) -> np.ndarray:
        return x.float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


class ImagePromptGraphs:
    """`graphs`, except prepare_inputs_embeds for a prompt with an image (pixel_values with images), which runs the
    graph file `image_graph`: the page's CPU engine embeds token rows itself, from its pack's table (the graph at
    the pack's dtype), and sends a prompt with an image through its ORT session (at that session's dtype)."""

    def __init__(self, graphs, image_graph: Path, providers=("CPUExecutionProvider",)):
        self.graphs, self.config, self.to_numpy = graphs, graphs.config, graphs.to_numpy
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.image_session = ort.InferenceSession(str(image_graph), opts, providers=list(providers))

    def run(self, name: str, feeds: dict) -> list:
        if name == "prepare_inputs_embeds" and feeds["pixel_values"].shape[1]:
            return self.image_session.run(None, feeds)
        return self.graphs.run(name, feeds)
