"""What a quantization run records in the bundle's config.json (the manifest's variants go through
janusweb.manifest).

config.json: `transformers.js_config.use_external_data_format` names every variant file
(`language_model_int8.onnx`: false), and `transformers.js_config.dtype` becomes the per-graph default that
transformers.js loads when no dtype is passed: the first dtype of janusweb.dtypes' default preference (int8,
then q4) that every graph has, else fp32 (fp16 is never the default: it needs an adapter with shader-f16).
"""

from janusweb.dtypes import default_preference
from janusweb.graphs import GRAPH_NAMES


def default_dtypes(manifest: dict) -> dict:
    """The per-graph default dtype for transformers.js (see the module docstring)."""
    graphs = manifest["graphs"]
    for dtype in default_preference():
        if all(dtype in graphs[name].get("variants", {}) for name in GRAPH_NAMES):
            return {name: dtype for name in GRAPH_NAMES}
    return {name: "fp32" for name in GRAPH_NAMES}


def update_config(config: dict, manifest: dict, suffix: str, external: dict) -> dict:
    """`external`: graph -> whether its variant keeps weights in <file>_data."""
    tjs = config.setdefault("transformers.js_config", {})
    use = tjs.get("use_external_data_format")
    use = dict(use) if isinstance(use, dict) else {name: bool(use) for name in GRAPH_NAMES}
    for name, ext in external.items():
        use[f"{name}{suffix}.onnx"] = ext
    tjs["use_external_data_format"] = use
    tjs["dtype"] = default_dtypes(manifest)
    return config
