"""The one check of a bundle's shape, run first by every command that reads a bundle (quantize, the packs,
end-to-end, build-web, serve): anything wrong is one line naming the file (UserError, exit 2) before any
work starts.

It reads only what is small: manifest.json (its shape and format version, janusweb/formats.py: graphs, a file table of sizes and sha256, packs),
config.json (a janusweb bundle's: model type `multi_modality` and its `janusweb` numbers), tokenizer.json, and the
first bytes of every graph file. Every listed file must be a regular file inside the bundle (symlinks are followed
and must stay inside), of the manifest's size; a graph file must begin as an ONNX model does. Contents are hashed
where a command reads them (janusweb.integrity.verify_files)."""

import json
import re
from pathlib import Path

from janusweb import formats
from janusweb.errors import UserError

FORMAT_PREFIX = "janusweb-bundle/"
SHA256 = re.compile(r"^[0-9a-f]{64}$")
# config.json's janusweb numbers that size everything the page and the runtime allocate
POSITIVE = ("hidden_size", "vocab_size", "num_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
            "image_size", "num_image_tokens", "codebook_size")
# an ONNX ModelProto begins with field 1, ir_version (a varint: tag 0x08, then a small number)
ONNX_HEAD = re.compile(rb"^\x08[\x01-\x7f]")


def _json(path: Path):
    try:
        data = json.loads(path.read_bytes())
    except ValueError as e:
        raise UserError(f"{path} is not valid JSON ({e.__class__.__name__}: {str(e).splitlines()[0]})") from e
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a JSON object")
    return data


def safe_rel(rel) -> bool:
    """A bundle-relative path that names a file inside the bundle: relative, no `..`, no hidden segment."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\0" in rel or rel.startswith("/"):
        return False
    return all(seg and not seg.startswith(".") for seg in rel.split("/"))


def _manifest(bundle: Path) -> dict:
    path = bundle / "manifest.json"
    if not path.is_file():
        raise UserError(f"{bundle} has no manifest.json: not a janusweb bundle (write one with `janusweb export`)")
    m = _json(path)
    fmt = m.get("format")
    if not isinstance(fmt, str) or not fmt.startswith(FORMAT_PREFIX):
        found = f"format {fmt!r}" if "format" in m else "no format"
        raise UserError(f"{path}: not a janusweb manifest ({found}, expected {FORMAT_PREFIX}N); export the bundle "
                        "again")
    formats.check_manifest(m, path)  # a janusweb manifest, of a version this janusweb reads
    files, graphs = m.get("files"), m.get("graphs")
    if not isinstance(files, dict) or not isinstance(graphs, dict) or not graphs:
        raise UserError(f"{path}: not a janusweb manifest (no files / graphs table); export the bundle again")
    for rel, entry in files.items():
        if not safe_rel(rel):
            raise UserError(f"{path} lists {rel!r}, which is not a path inside the bundle")
        if not (isinstance(entry, dict) and isinstance(entry.get("bytes"), int) and entry["bytes"] >= 0
                and isinstance(entry.get("sha256"), str) and SHA256.match(entry["sha256"])):
            raise UserError(f"{path}: the entry of {rel} has no valid bytes / sha256")
    for rel in _listed(m, path):
        if rel not in files:
            raise UserError(f"{path} names {rel!r}, which its file table does not list")
    return m


def _listed(m: dict, path: Path) -> list:
    """Every file the graphs (fp32 and variants) and the engine packs (any top-level table of {dtype: {"json",
    "parts"}}, as janusweb.pack's packers record them) name, checked for shape."""
    out = []
    for name, g in m["graphs"].items():
        variants = g.get("variants", {}) if isinstance(g, dict) else None
        if not isinstance(variants, dict):
            raise UserError(f"{path}: graph {name!r} is not an object with a variants table")
        tables = [g.get("files", {})] + [v.get("files") if isinstance(v, dict) else None for v in variants.values()]
        if not all(isinstance(t, (dict, list)) for t in tables):
            raise UserError(f"{path}: graph {name!r} has a malformed file list")
        out += [rel for t in tables for rel in t]
    for engine, packs in m.items():
        if not (isinstance(packs, dict) and packs and all(isinstance(e, dict) and "json" in e for e in packs.values())):
            continue
        for dtype, entry in packs.items():
            parts = entry.get("parts", [entry.get("bin")])  # (one .bin before parts)
            if not (isinstance(parts, list) and isinstance(entry["json"], str) and all(isinstance(p, str) for p in parts)):
                raise UserError(f"{path}: the {engine} pack {dtype!r} has no json / parts")
            out += [entry["json"], *parts]
    return out


def _check_file(bundle: Path, root: Path, rel: str, entry: dict) -> None:
    path = bundle / rel
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise UserError(f"{path}: missing (the manifest lists it); write it again (export, or the quantize or pack "
                        "that made it)") from None
    if not real.is_relative_to(root):
        raise UserError(f"{path} resolves outside the bundle ({real}); refusing to read it")
    if not real.is_file():
        raise UserError(f"{path} is not a regular file (the manifest lists it as one)")
    size = real.stat().st_size
    if size != entry["bytes"]:
        raise UserError(f"{path}: {size} bytes, the manifest says {entry['bytes']} (truncated or modified); write "
                        "it again (export, or the quantize or pack that made it)")
    if rel.endswith(".onnx"):
        with open(real, "rb") as f:
            head = f.read(2)
        if not ONNX_HEAD.match(head):
            raise UserError(f"{path} is not an ONNX model (its first bytes are not a model's); export the bundle again")


def _config(bundle: Path) -> dict:
    path = bundle / "config.json"
    if not path.is_file():
        raise UserError(f"{bundle} has no config.json: not a janusweb bundle (write one with `janusweb export`)")
    config = _json(path)
    if config.get("model_type") != "multi_modality" or not isinstance(config.get("janusweb"), dict):
        raise UserError(f"{path}: model_type {config.get('model_type')!r} with no janusweb block is not a janusweb "
                        "bundle's config (expected 'multi_modality', as `janusweb export` writes it)")
    for key in POSITIVE:
        value = config["janusweb"].get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise UserError(f"{path}: janusweb.{key} is {value!r}, not a positive whole number")
    return config


def check_bundle(bundle: Path, graphs=()) -> dict:
    """The manifest of a well-formed bundle that has `graphs`; UserError (one line, exit 2) for anything else."""
    bundle = Path(bundle)
    if not bundle.exists():
        raise UserError(f"no such folder: {bundle}")
    if not bundle.is_dir():
        raise UserError(f"{bundle} is not a folder")
    m = _manifest(bundle)
    _config(bundle)
    for name in ("config.json", "tokenizer.json"):
        if name not in m["files"]:
            raise UserError(f"{bundle} has no {name} in its manifest (the page and the reference loop need it); "
                            "export the bundle again")
    missing = [g for g in graphs if g not in m["graphs"]]
    if missing:
        raise UserError(f"{bundle} lacks the graphs {', '.join(missing)}; export it again")
    root = bundle.resolve()
    for rel, entry in m["files"].items():
        _check_file(bundle, root, rel, entry)
    _json(bundle / "tokenizer.json")
    return formats.check_bundle(bundle, m)  # and every engine pack's format version
