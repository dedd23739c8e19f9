"""Pack: weights of a bundle's graphs rewritten for one of the page's own engines (`janusweb pack NAME BUNDLE
--dtype ...`).

A packer is one module in this folder plus one line in PACKERS (its module, the dtypes (janusweb.dtypes names) it
packs, which the CLI's parser and the driver both check against without importing the module, and the line
`janusweb pack --help` shows), plus its pack format version in janusweb.formats.PACKS. The module exposes:

    NAME: str                  the `janusweb pack` subcommand, and the manifest key its packs are listed under
                               (manifest[NAME][dtype] = what write returns)
    DTYPES: tuple              PACKERS[NAME].dtypes
    stem(dtype) -> str         bundle-relative path of the pack's files without their endings, e.g.
                               "wgsl/decoder_int8" (-> decoder_int8.json, decoder_int8.0.bin, ...)
    check(bundle, manifest, dtype) -> None
                               UserError (one clear line) when the bundle lacks what the pack is made from
    write(bundle, manifest, dtype, staged, part_bytes) -> dict
                               write the pack's JSON and its .bin parts (pack.parts.PartWriter, at most
                               part_bytes each) under `staged` (same relative paths); read the bundle, never
                               write it; returns {"json": rel, "parts": [rel, ...]}

pack.driver does the rest for every packer: checks all requested dtypes before writing anything, stages the
files in a temporary folder inside the bundle, renames them into place, and records them in the manifest
(its `files` table and manifest[NAME]) through janusweb.manifest, the manifest last.
"""

from typing import NamedTuple

from janusweb.errors import UserError


class Packer(NamedTuple):
    module: str  # under janusweb.pack, imported when used
    dtypes: tuple
    summary: str  # its line in `janusweb pack --help`


# `janusweb pack` subcommand (the page's engine) -> its packer
PACKERS = {
    "wgsl": Packer("janusweb.pack.wgsl", ("fp32", "int8", "q4"),
                   "the decoder's weights for the page's WGSL kernels (?engine=wgsl)"),
    "cpu": Packer("janusweb.pack.cpu", ("fp32", "int8", "q4"),
                  "the decoder's, lm_head's and the per-token heads' weights for the page's CPU engine (WASM)"),
}


def check_dtype(engine: str, dtype: str) -> None:
    """UserError (one line) for a dtype that `engine`'s packer does not make."""
    if dtype not in PACKERS[engine].dtypes:
        raise UserError(f"{dtype}: {engine.upper()} packs are made for {', '.join(PACKERS[engine].dtypes)}")
