"""`janusweb pack BUNDLE --engine NAME --dtype ...`: run one packer (see janusweb.pack) over a bundle, staged and
renamed into place with the manifest last (each part of a pack with its size and sha256), as export and quantize
write: a pack that fails at any point leaves the bundle as it was."""

import importlib
from pathlib import Path

from janusweb import manifest as manifests
from janusweb.atomic import check_writable, commit, staging
from janusweb.buffers import record as record_buffers
from janusweb.bundle_check import check_bundle
from janusweb.errors import UserError
from janusweb.log import step
from janusweb.pack import PACKERS, check_dtype
from janusweb.pack.parts import PART_BYTES

STAGE = "pack"


def packer(engine: str):
    if engine not in PACKERS:
        raise UserError(f"unknown engine {engine!r}; packers: {', '.join(PACKERS)}")
    return importlib.import_module(PACKERS[engine].module)


def write_packs(bundle: Path, engine: str, dtypes: list, part_bytes: int = PART_BYTES) -> dict:
    """Write `engine`'s packs for `dtypes` (each once) into the bundle, in parts of at most `part_bytes`
    (pack/parts.py); returns manifest[engine]. Everything, the manifest and the buffer record included, is made in
    a staging folder first; then janusweb.atomic.commit renames it into place."""
    bundle = Path(bundle)
    mod = packer(engine)
    dtypes = list(dict.fromkeys(dtypes))
    manifest = check_bundle(bundle)
    for dtype in dtypes:
        check_dtype(engine, dtype)
        mod.check(bundle, manifest, dtype)
    check_writable(bundle / manifests.NAME)
    with staging(bundle, STAGE) as staged:
        rels, stale = [], []
        for dtype in dtypes:
            (staged / mod.stem(dtype)).parent.mkdir(parents=True, exist_ok=True)
            with step(f"{mod.NAME} pack {dtype}"):
                entry = mod.write(bundle, manifest, dtype, staged, part_bytes)
            old = manifest.setdefault(mod.NAME, {}).get(dtype) or {}
            stale += [*old.get("parts", []), *([old["bin"]] if "bin" in old else [])]  # (one .bin before parts)
            manifest[mod.NAME][dtype] = entry
            rels += [entry["json"], *entry["parts"]]
        stale = sorted(set(stale) - set(rels))  # an earlier pack's parts that this one does not have
        for rel in stale:
            manifest["files"].pop(rel, None)
        manifests.add_files(manifest, staged, rels)
        record_buffers(manifest, (staged, bundle), engines=PACKERS)
        manifests.write(staged, manifest)
        commit(bundle, staged, [*rels, manifests.NAME], remove=stale)
    return manifest[mod.NAME]
