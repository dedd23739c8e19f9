"""`janusweb pack BUNDLE --engine NAME --dtype ...`: run one packer (see janusweb.pack) over a bundle, staged and
renamed into place, recorded in the manifest last."""

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

TEMP_PREFIX = ".pack-"


def packer(engine: str):
    if engine not in PACKERS:
        raise UserError(f"unknown engine {engine!r}; packers: {', '.join(PACKERS)}")
    return importlib.import_module(PACKERS[engine].module)


def write_packs(bundle: Path, engine: str, dtypes: list) -> dict:
    """Write `engine`'s packs for `dtypes` into the bundle; returns manifest[engine]."""
    bundle = Path(bundle)
    mod = packer(engine)
    manifest = manifests.read(bundle)
    for dtype in dtypes:
        check_dtype(engine, dtype)
        mod.check(bundle, manifest, dtype)
    staged = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{mod.NAME}-", dir=bundle))
    try:
        rels = []
        for dtype in dtypes:
            paths = mod.paths(dtype)
            for rel in paths.values():
                (staged / rel).parent.mkdir(parents=True, exist_ok=True)
            with step(f"{mod.NAME} pack {dtype}"):
                mod.write(bundle, manifest, dtype, staged)
            manifest.setdefault(mod.NAME, {})[dtype] = paths
            rels += paths.values()
        for rel in rels:
            (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged / rel, bundle / rel)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    manifests.add_files(manifest, bundle, rels)
    record_buffers(manifest, (bundle,), engines=PACKERS)
    manifests.write(bundle, manifest)
    return manifest[mod.NAME]
