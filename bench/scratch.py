"""A scratch copy of a bundle that gets fresh packs for the page's own engines (`run --fresh-pack cpu`), so that
a run measures the pack format of the code under test on a bundle written earlier. The bundle is never written:
its graphs are hard-linked (read only; a re-pack writes new files), its other files copied, and the engine's
old packs left out (their files and their manifest entries, a pack in parts included)."""

import json
import os
import shutil
from pathlib import Path


def pack_files(entry: dict) -> list:
    """The bundle-relative files of one pack entry: {json, parts: [...]} (or an older {json, bin})."""
    return [entry["json"], *entry.get("parts", []), *([entry["bin"]] if "bin" in entry else [])]


def scratch_bundle(src: Path, dst: Path, engine: str) -> Path:
    """dst: src's graphs hard-linked, its other files copied, without `engine`'s packs (folder `engine`/)."""
    src, dst = Path(src), Path(dst)
    for path in src.rglob("*"):
        rel = path.relative_to(src)
        if path.is_dir() or rel.parts[0] == engine:
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.parts[0] == "onnx":
            try:
                os.link(path, dst / rel)
            except OSError:  # another file system
                (dst / rel).symlink_to(path.resolve())
        else:
            shutil.copy2(path, dst / rel)
    manifest = json.loads((dst / "manifest.json").read_text())
    for entry in manifest.pop(engine, {}).values():
        for rel in pack_files(entry):
            manifest["files"].pop(rel, None)
    (dst / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return dst


def fresh_packs(src: Path, work: Path, engine: str, dtypes: list) -> Path:
    """A scratch copy of `src` under `work` with `engine`'s packs written by this checkout for `dtypes`."""
    from janusweb.pack.driver import write_packs
    copy = scratch_bundle(src, Path(work) / f"{Path(src).name}-{engine}", engine)
    write_packs(copy, engine, dtypes)
    return copy
