"""ort-cpu and ort-cuda: the reference loop over the bundle's graphs in onnxruntime (Python), one row per
bundle dtype; a session that falls back to another provider fails the row."""

import json
from pathlib import Path

import onnxruntime as ort

from janusweb.bench.backends import Backend, BenchContext
from janusweb.bench.loops import measure
from janusweb.bench.rows import Row
from janusweb.bench.timing import timed
from janusweb.graphs import GRAPH_NAMES, OrtGraphs


def variant_map(bundle: Path, dtype: str) -> dict:
    """graph -> dtype: `dtype` where the bundle has that variant, fp32 elsewhere (as on the page)."""
    graphs = json.loads((bundle / "manifest.json").read_text())["graphs"]
    return {g: dtype for g in GRAPH_NAMES if dtype == "fp32" or dtype in graphs[g].get("variants", {})}


class _Ort(Backend):
    provider = ""
    device = ""

    def unavailable(self, ctx: BenchContext) -> str | None:
        if self.provider in ort.get_available_providers():
            return None
        return f"onnxruntime {ort.__version__} has no {self.provider}"

    def run(self, ctx: BenchContext, case: Row, session) -> Row:
        graphs, load_ms = timed(lambda: OrtGraphs(ctx.bundle, variant_map(ctx.bundle, case.dtype),
                                                  providers=[self.provider]))
        ran = graphs.providers()
        if any(p != self.provider for p in ran.values()):
            raise RuntimeError(f"sessions fell back to other providers: {ran}")
        label = {"device": self.device, "provider": self.provider, "ort": ort.__version__, "dtypes": graphs.dtypes}
        return Row(case.name, case.dtype, label=label, load_s=load_ms / 1000, result=measure(graphs, ctx.inp, ctx.w))


class OrtCpu(_Ort):
    name, provider, device = "ort-cpu", "CPUExecutionProvider", "cpu"


class OrtCuda(_Ort):
    name, provider, device = "ort-cuda", "CUDAExecutionProvider", "cuda"
