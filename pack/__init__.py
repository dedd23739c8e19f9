"""Pack: weights of a bundle's graphs rewritten for one of the page's own engines (`janusweb pack BUNDLE
--engine NAME --dtype ...`; `janusweb wgsl-pack` is `--engine wgsl`).

A packer is one module in this folder plus one line in PACKERS. The module exposes:

    NAME: str                  the --engine value, and the manifest key its packs are listed under
                               (manifest[NAME][dtype] = paths(dtype))
    DTYPES: tuple              the dtypes (janusweb.dtypes names) it packs
    paths(dtype) -> dict       bundle-relative paths of the files one pack writes, by role, e.g.
                               {"bin": "wgsl/decoder_int8.bin", "json": "wgsl/decoder_int8.json"}
    check(bundle, manifest, dtype) -> None
                               UserError (one clear line) when the bundle lacks what the pack is made from
    write(bundle, manifest, dtype, staged) -> None
                               write every file of paths(dtype) under `staged` (same relative paths); read the
                               bundle, never write it

pack.driver does the rest for every packer: checks all requested dtypes before writing anything, stages the
files in a temporary folder inside the bundle, renames them into place, and records them in the manifest
(its `files` table and manifest[NAME]) through janusweb.manifest, the manifest last.
"""

# --engine value -> module under janusweb.pack (imported when used)
PACKERS = {
    "wgsl": "janusweb.pack.wgsl",
}
