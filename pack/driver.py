"""`janusweb pack BUNDLE --engine NAME --dtype ...`: run one packer (see janusweb.pack) over a bundle, staged and
renamed into place, recorded in the manifest last (each part of a pack with its size and sha256)."""

import importlib
import os
import shutil
import tempfile
from pathlib import Path

from janusweb import manifest as manifests
from janusweb.buffers import record as record_buffers
from janusweb.errors import UserError
from janusweb.log import step
from janusweb.pack import PACKERS, check_dtype
from janusweb.pack.parts import PART_BYTES

TEMP_PREFIX = ".pack-"


def packer(engine: str):
    if engine not in PACKERS:
        raise UserError(f"unknown engine {engine!r}; packers: {', '.join(PACKERS)}")
    return importlib.import_module(PACKERS[engine].module)


def write_packs(bundle: Path, engine: str, dtypes: list, part_bytes: int = PART_BYTES) -> dict:
    """Write `engine`'s packs for `dtypes` into the bundle, in parts of at most `part_bytes` (pack/parts.py);
    returns manifest[engine]."""
    bundle = Path(bundle)
    mod = packer(engine)
    manifest = manifests.read(bundle)
    for dtype in dtypes:
        check_dtype(engine, dtype)
        mod.check(bundle, manifest, dtype)
    staged = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{mod.NAME}-", dir=bundle))
    try:
        rels, stale = [], []
        for dtype in dtypes:
            (staged / mod.stem(dtype)).parent.mkdir(parents=True, exist_ok=True)
            with step(f"{mod.NAME} pack {dtype}"):
                entry = mod.write(bundle, manifest, dtype, staged, part_bytes)
            old = manifest.setdefault(mod.NAME, {}).get(dtype) or {}
            stale += [*old.get("parts", []), *([old["bin"]] if "bin" in old else [])]  # (one .bin before parts)
            manifest[mod.NAME][dtype] = entry
            rels += [entry["json"], *entry["parts"]]
        for rel in rels:
            (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged / rel, bundle / rel)
        for rel in set(stale) - set(rels):  # an earlier pack's parts that this one does not have
            (bundle / rel).unlink(missing_ok=True)
            manifest["files"].pop(rel, None)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    manifests.add_files(manifest, bundle, rels)
    record_buffers(manifest, (bundle,), engines=PACKERS)
    manifests.write(bundle, manifest)
    return manifest[mod.NAME]
