"""Parity of exported graphs against PyTorch: per graph and tensor (OK / NOT OK with max diff), and end to
end (greedy text tokens against transformers' generate; CFG image tokens and pixels against the PyTorch loop)."""

import copy
from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort
import torch
import transformers



@dataclass
class Check:
    graph: str
    tensor: str
    case: str
    max_abs_diff: float
    limit: float
    shape_ok: bool = True

    @property
    def ok(self) -> bool:
        return self.shape_ok and self.max_abs_diff <= self.limit


@dataclass
class Report:
    checks: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def graph_max_diff(self, graph: str) -> float:
        return max((c.max_abs_diff for c in self.checks if c.graph == graph), default=0.0)

    def table(self) -> str:
        w = max([len(f"{c.graph}:{c.tensor}") for c in self.checks] + [20])
        lines = [f"{'graph:tensor':<{w}}  {'case':<34} {'max abs diff':>12} {'limit':>9}  result"]
        for c in self.checks:
            verdict = "OK" if c.ok else ("NOT OK (shape)" if not c.shape_ok else "NOT OK")
            lines.append(f"{c.graph + ':' + c.tensor:<{w}}  {c.case:<34} {c.max_abs_diff:>12.3e} {c.limit:>9.1e}  "
                         f"{verdict}")
        return "\n".join(lines)


def _case(dims: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in dims.items())


def check_graph(spec, module: torch.nn.Module, onnx_path, report: Report) -> None:
    """Run the graph with onnxruntime on each of the spec's check dims (unlike the export dims) and compare
    every output with the PyTorch module."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    expected = [t.name for t in spec.outputs]
    if names != expected:
        raise RuntimeError(f"{spec.name}: graph outputs {names} differ from the spec's {expected}")
    for i, dims in enumerate(spec.check_dims):
        args = spec.make_inputs(dims, torch.Generator().manual_seed(100 + i))
        with torch.no_grad():
            ref = module(*args)
        ref = ref if isinstance(ref, tuple) else (ref,)
        out = session.run(None, {t.name: a.numpy() for t, a in zip(spec.inputs, args)})
        for t, r, o in zip(spec.outputs, ref, out):
            r = r.numpy()
            shape_ok = r.shape == o.shape
            diff = float(np.abs(r.astype(np.float64) - o).max()) if shape_ok and r.size else 0.0
            limit = spec.tolerance * max(1.0, float(np.abs(r).max()) if r.size else 1.0)
            report.checks.append(Check(spec.name, t.name, _case(dims), diff, limit, shape_ok))


def transformers_greedy(model, inputs: dict, pixel_values: np.ndarray | None, steps: int) -> list:
    """Greedy tokens from transformers' own generate (no stopping at EOS), the independent text reference."""
    gen = copy.deepcopy(model.generation_config)
    gen.update(do_sample=False, max_new_tokens=steps, min_new_tokens=None, eos_token_id=None,
               guidance_scale=None, num_beams=1, max_length=None)
    kwargs = {"input_ids": torch.from_numpy(inputs["input_ids"]),
              "attention_mask": torch.ones_like(torch.from_numpy(inputs["input_ids"]))}
    if pixel_values is not None:
        kwargs["pixel_values"] = torch.from_numpy(pixel_values.reshape(-1, *pixel_values.shape[2:]))
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # Janus's generate warns about its own guidance_scale argument
    try:
        with torch.no_grad():
            out = model.generate(**kwargs, generation_config=gen)
    finally:
        transformers.logging.set_verbosity(verbosity)
    return out[0, inputs["input_ids"].shape[1]:].tolist()


@dataclass
class EndToEnd:
    text_tokens: int
    text_equal: bool
    first_text_divergence: int | None
    image: dict  # export/image_check.py's ImageCheck as a dict, "ok" included

    @property
    def ok(self) -> bool:
        return self.text_equal and self.image["ok"]

    def summary(self) -> str:
        div = "" if self.first_text_divergence is None else f" (first divergence at {self.first_text_divergence})"
        return (f"end to end: greedy text {self.text_tokens} tokens {'identical' if self.text_equal else 'DIFFER'}"
                f"{div}; {self.image['summary']} -> {'OK' if self.ok else 'NOT OK'}")
