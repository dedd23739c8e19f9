"""manifest.json, the bundle's table of contents, and its one writer (export, quantize and pack use it).

The manifest holds `format`, `source`, `tools`, `graphs` (name -> fp32 entry with its `variants.<dtype>`),
`files` (bundle-relative path -> bytes, sha256, SRI; every file but the manifest), `dtypes` (janusweb.dtypes'
table, for the page), `quantization.<dtype>` (a quantize run's options), one key per packer
(janusweb.pack: `wgsl.<dtype>` -> its files) and `validation`. JSON goes to disk through a temporary file and a
rename, so a reader never sees half a file.
"""

import base64
import hashlib
import json
import os
from pathlib import Path

from janusweb import dtypes, formats
from janusweb.errors import UserError

FORMAT = formats.MANIFEST
NAME = "manifest.json"


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot read {what} ({e.__class__.__name__})") from e


def read(bundle: Path) -> dict:
    """The manifest of a bundle folder; UserError when it is not one, BundleFormatError when its format version is
    not the one this janusweb reads."""
    bundle = Path(bundle)
    if not (bundle / NAME).is_file():
        raise UserError(f"{bundle} has no manifest.json: not a janusweb bundle (write one with `janusweb export`)")
    manifest = read_json(bundle / NAME, "the manifest")
    if not isinstance(manifest, dict):
        raise UserError(f"{bundle / NAME}: not a janusweb manifest (not a JSON object)")
    return formats.check_manifest(manifest, bundle / NAME)


def write(bundle: Path, manifest: dict) -> None:
    """Write the manifest (with the current dtype table) into `bundle`, atomically."""
    manifest["dtypes"] = dtypes.manifest_table()
    write_json_atomic(Path(bundle) / NAME, manifest)


def new(source: dict, tools: dict, graphs: dict, files: dict, validation: dict) -> dict:
    return {"format": FORMAT, "source": source, "tools": tools, "graphs": graphs, "files": files,
            "dtypes": dtypes.manifest_table(), "validation": validation}


def file_digest(path: Path) -> dict:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest(),
            "sri": "sha256-" + base64.b64encode(h.digest()).decode()}


def file_table(root: Path, known: dict | None = None) -> dict:
    """sha256, SRI and size of every file of the bundle but the manifest itself; `known` digests (path ->
    digest, of files just written) are taken as they are rather than hashed again."""
    known = known or {}
    return {rel: known.get(rel) or file_digest(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != NAME for rel in (p.relative_to(root).as_posix(),)}


def add_files(manifest: dict, root: Path, rels: list) -> dict:
    """(Re)hash `rels` (relative to root) into the manifest's `files` table, kept sorted."""
    table = manifest.setdefault("files", {})
    for rel in rels:
        table[rel] = file_digest(root / rel)
    manifest["files"] = dict(sorted(table.items()))
    return manifest


def add_variants(manifest: dict, root: Path, dtype: str, variants: dict, run: dict) -> dict:
    """`variants`: graph -> {"files": [paths relative to root], other entry fields}. Files are hashed where
    they lie now (a staging folder); their relative paths are those they will have in the bundle."""
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
