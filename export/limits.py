"""The largest buffer each graph needs on a WebGPU adapter: its largest initializer, against the limits that
every adapter grants without asking (WebGPU's defaults) and the ones a page asks for on larger adapters.

An initializer becomes one GPU buffer, bound whole to a kernel: it must fit maxBufferSize and, as a storage
binding, maxStorageBufferBindingSize. The manifest records the largest one so that a page can compare it with
`adapter.limits` before downloading anything (janusweb/buffers.py adds the variants and packs).
"""

from pathlib import Path

from janusweb.buffers import largest_initializer
from janusweb.log import log

WEBGPU_DEFAULT_LIMITS = {"maxStorageBufferBindingSize": 128 * 1024**2, "maxBufferSize": 256 * 1024**2}


def largest_initializers(graphs: dict) -> dict:
    """{graph: {"tensor", "bytes"}} for graph name -> .onnx path (structure read only, no weights)."""
    return {name: largest_initializer(Path(path)) for name, path in graphs.items()}


def buffer_limits(onnx_dir: Path, names) -> dict:
    """The manifest's `buffers` entry for the graphs `names` in onnx_dir, with a warning line per graph whose
    largest buffer is over WebGPU's default limits."""
    per_graph = largest_initializers({name: Path(onnx_dir) / f"{name}.onnx" for name in names})
    largest = max(per_graph, key=lambda g: per_graph[g]["bytes"])
    over = {}
    for graph, entry in per_graph.items():
        limits = [k for k, v in WEBGPU_DEFAULT_LIMITS.items() if entry["bytes"] > v]
        if limits:
            over[graph] = limits
            log.info("%s: buffer %s (%.0f MiB) is over WebGPU's default %s: the page must request a larger limit",
                     graph, entry["tensor"], entry["bytes"] / 1024**2, " and ".join(limits))
    return {"largest": {"graph": largest, **per_graph[largest]}, "per_graph": per_graph,
            "webgpu_default_limits": WEBGPU_DEFAULT_LIMITS, "over_default_limits": over}
