"""What a quantization run records in the bundle's manifest.json and config.json.

manifest.json: each graph gains `variants.<dtype>` (files with sha256/SRI/bytes, what was quantized, the
report's numbers), `quantization.<dtype>` holds the run's options and total size, and the `files` table lists
the new files. config.json: `transformers.js_config.use_external_data_format` names every variant file
(`language_model_int8.onnx`: false), and `transformers.js_config.dtype` becomes the per-graph default that
transformers.js loads when no dtype is passed: int8 when every graph has it, else q4, else fp32 (fp16 is never
the default: it needs an adapter with shader-f16).
"""

import json
import os
from pathlib import Path

from janusweb.export.bundle import file_digest
from janusweb.graphs import GRAPH_NAMES

DEFAULT_PREFERENCE = ("int8", "q4")


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def default_dtypes(manifest: dict) -> dict:
    """The per-graph default dtype for transformers.js (see the module docstring)."""
    graphs = manifest["graphs"]
    for dtype in DEFAULT_PREFERENCE:
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


def add_variants(manifest: dict, root: Path, dtype: str, variants: dict, run: dict) -> dict:
    """`variants`: graph -> {"files": [paths relative to root], other entry fields}. Files are hashed where
    they lie now (the staging folder); their relative paths are those they will have in the bundle."""
    total = 0
    table = manifest.setdefault("files", {})
    for name, entry in variants.items():
        entry = dict(entry)
        files = {rel: file_digest(root / rel) for rel in entry.pop("files")}
        table.update(files)
        size = sum(f["bytes"] for f in files.values())
        total += size
        manifest["graphs"][name].setdefault("variants", {})[dtype] = {"dtype": dtype, "files": files,
                                                                       "bytes": size, **entry}
    manifest.setdefault("quantization", {})[dtype] = {**run, "bytes": total}
    return add_files(manifest, root, [])


def add_files(manifest: dict, root: Path, rels: list) -> dict:
    """(Re)hash `rels` (relative to root) into the manifest's `files` table, kept sorted."""
    table = manifest.setdefault("files", {})
    for rel in rels:
        table[rel] = file_digest(root / rel)
    manifest["files"] = dict(sorted(table.items()))
    return manifest
