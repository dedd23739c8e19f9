"""Bundle files checked against manifest.json before anything reads them: size first (a truncated or grown file
is caught without hashing it), then sha256. A mismatch is one line naming the file (UserError, exit 2).

`check_bundle` is the one check of a bundle's shape that every command reading a bundle runs first (quantize,
the packs, end-to-end, build-web, serve; janusweb/bundle_check.py)."""

import hashlib
from pathlib import Path

from janusweb.bundle_check import check_bundle
from janusweb.errors import UserError
from janusweb.log import step

CHUNK = 1 << 22


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_file(bundle: Path, rel: str, entry: dict) -> None:
    """`rel` (a path relative to `bundle`) against its manifest entry {bytes, sha256}; UserError if it differs."""
    path = Path(bundle) / rel
    if not path.is_file():
        raise UserError(f"{path}: missing (the manifest lists it); export the bundle again")
    size = path.stat().st_size
    if "bytes" in entry and size != entry["bytes"]:
        raise UserError(f"{path}: {size} bytes, the manifest says {entry['bytes']} (truncated or modified); "
                        "export the bundle again")
    if "sha256" in entry and sha256_of(path) != entry["sha256"]:
        raise UserError(f"{path}: sha256 differs from the manifest's (the file is corrupt or was modified); "
                        "export the bundle again")


def verify_files(bundle: Path, manifest: dict, rels) -> None:
    """Every path of `rels` against manifest['files'] (a path the manifest does not list is an error too)."""
    table = manifest.get("files", {})
    rels = sorted(set(rels))
    with step(f"verify {len(rels)} files against manifest.json (size, sha256)"):
        for rel in rels:
            if rel not in table:
                raise UserError(f"{Path(bundle) / rel}: not in the manifest's file table; export the bundle again")
            verify_file(bundle, rel, table[rel])


def graph_files(manifest: dict, graphs, dtype: str = "fp32") -> list:
    """The files (.onnx and external data) of `graphs` at `dtype` as the manifest lists them."""
    out = []
    for name in graphs:
        entry = manifest["graphs"][name]
        files = entry.get("files", {}) if dtype == "fp32" else entry.get("variants", {}).get(dtype, {}).get("files", {})
        out += list(files)
    return out


def read_manifest(bundle: Path) -> dict:
    """The manifest of a bundle that passes check_bundle."""
    return check_bundle(bundle)


def verify_bundle(bundle: Path, graphs=None, dtype: str = "fp32", others=("config.json", "tokenizer.json")) -> dict:
    """Check the files a step is about to read: `graphs` (default: every graph of the manifest) at `dtype`, and
    `others` where the manifest lists them. Returns the manifest."""
    manifest = read_manifest(bundle)
    names = list(manifest["graphs"]) if graphs is None else [g for g in graphs if g in manifest["graphs"]]
    rels = graph_files(manifest, names, dtype) + [rel for rel in others if rel in manifest["files"]]
    verify_files(bundle, manifest, rels)
    return manifest
