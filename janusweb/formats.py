"""The bundle's format versions: manifest.json's and each engine pack's (pack/: `<engine>/decoder<suffix>.json`),
the contract between the writers (export, quantize, pack) and every reader (the commands here; the page:
web/lib/formats.js holds the same table).

A writer stamps its current version; a reader accepts only the version it knows and refuses any other in one
line (BundleFormatError), naming what to do, rather than guessing from shapes. A file without a `format` field is
read as the version below (every janusweb writer stamped one; the first versions are the strings they stamped). A change that a reader of the old
version would misread bumps the version here and in the page's table (tests/test_formats.py holds them equal).
"""

import json
from pathlib import Path

from janusweb.errors import BundleFormatError

MANIFEST = "janusweb-bundle/1"
# engine -> its pack's version (2: the CPU pack's per-token heads; 3: packs in parts, pack/parts.py; 4: the CPU
# pack's vision tower and VQ decoder)
PACKS = {"wgsl": "janusweb-wgsl/1", "cpu": "janusweb-cpu/4"}


def _refusal(where, what: str, found, known: str, again: str) -> str:
    name, _, number = known.rpartition("/")
    newer = isinstance(found, str) and found.startswith(f"{name}/") and found[len(name) + 1:].isdigit() \
        and int(found[len(name) + 1:]) > int(number)
    fix = "update janusweb to read it" if newer else again
    return f"{where}: {what} format {found!r}, this janusweb reads {known}; {fix}"


def check_manifest(manifest: dict, where) -> dict:
    """The manifest, if its `format` is MANIFEST; BundleFormatError otherwise."""
    found = manifest.get("format", MANIFEST)
    if found != MANIFEST:
        raise BundleFormatError(_refusal(where, "manifest", found, MANIFEST, "export the bundle again"))
    return manifest


def check_pack(engine: str, desc: dict, where, dtype: str = "DTYPE") -> dict:
    """A pack's JSON, if its `format` is the engine's; BundleFormatError otherwise."""
    found = desc.get("format", PACKS[engine]) if isinstance(desc, dict) else None
    if found != PACKS[engine]:
        raise BundleFormatError(_refusal(where, f"{engine} pack", found, PACKS[engine],
                                         f"write it again: janusweb pack {engine} BUNDLE --dtype {dtype}"))
    return desc


def read_pack(bundle: Path, engine: str, dtype: str, entry: dict) -> dict:
    """The JSON of the pack the manifest lists as manifest[engine][dtype] = entry, format checked."""
    path = Path(bundle) / entry["json"]
    try:
        desc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BundleFormatError(f"{path}: cannot read the {engine} pack ({e.__class__.__name__}); write it again: "
                                f"janusweb pack {engine} BUNDLE --dtype {dtype}") from e
    return check_pack(engine, desc, path, dtype)


def check_bundle(bundle: Path, manifest: dict) -> dict:
    """The manifest's format and that of every pack it lists (their JSON files are read); returns the manifest."""
    check_manifest(manifest, Path(bundle) / "manifest.json")
    for engine in PACKS:
        for dtype, entry in (manifest.get(engine) or {}).items():
            read_pack(bundle, engine, dtype, entry)
    return manifest
