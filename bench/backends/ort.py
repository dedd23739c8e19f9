"""ort-cpu and ort-cuda: the reference loops over the bundle's graphs in onnxruntime (Python), one row per
bundle dtype; a session that falls back to another provider fails the row."""

import json
from pathlib import Path

from janusweb.bench.backends import Backend


def variant_map(bundle: Path, dtype: str) -> dict:
    """graph -> dtype: `dtype` where the bundle has that variant, fp32 elsewhere (as on the page)."""
    from janusweb.graphs import GRAPH_NAMES
    graphs = json.loads((Path(bundle) / "manifest.json").read_text())["graphs"]
    return {g: dtype for g in GRAPH_NAMES if dtype == "fp32" or dtype in graphs[g].get("variants", {})}


class _Ort(Backend):
    provider = ""
    device = ""

    def unavailable(self, ctx) -> str | None:
        import onnxruntime as ort
        if self.provider in ort.get_available_providers():
            return None
        return f"onnxruntime {ort.__version__} has no {self.provider}"

    def run(self, ctx, case: dict, work, session) -> dict:
        import onnxruntime as ort

        from janusweb.bench.loops import Clock, measure
        from janusweb.graphs import OrtGraphs
        clock = Clock()
        graphs = OrtGraphs(work.bundle, variant_map(work.bundle, case["dtype"]), providers=[self.provider])
        load_s = clock.now() / 1000
        ran = graphs.providers()
        if any(p != self.provider for p in ran.values()):
            raise RuntimeError(f"sessions fell back to other providers: {ran}")
        label = {"device": self.device, "provider": self.provider, "ort": ort.__version__}
        return {**measure(graphs, work.inputs, work.workload), "load_s": load_s, "label": label,
                "dtypes": graphs.dtypes, "extra": {"dtypes": graphs.dtypes}}


class OrtCpu(_Ort):
    name, provider, device = "ort-cpu", "CPUExecutionProvider", "cpu"


class OrtCuda(_Ort):
    name, provider, device = "ort-cuda", "CUDAExecutionProvider", "cuda"
