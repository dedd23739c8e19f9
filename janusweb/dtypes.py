"""The weight formats (dtypes) of a bundle's graphs: one table every Python part reads, and that the bundle's
manifest.json carries (`dtypes`) for the page.

Each entry: the canonical name (config.json, manifest variants, OrtGraphs' dtypes, `--dtype`), the file suffix
(transformers.js's names: `<graph>_int8.onnx`, `_q4`, `_fp16`), the page's label, the weight bits, the WebGPU
adapter feature it needs, the module under janusweb.quantize that writes it (None: `janusweb export` writes it),
its default block size, and its rank as transformers.js's default dtype (None: never the default).

Adding a weight format is one entry here plus its quantizer module (see quantize/targets.py for what that module
exposes); nothing else names formats.
"""

from dataclasses import dataclass

from janusweb.errors import UserError


@dataclass(frozen=True)
class DType:
    name: str
    suffix: str
    label: str
    bits: int
    requires: str | None = None  # WebGPU adapter feature (GPUAdapter.features)
    quantizer: str | None = None  # module that writes the variant from the fp32 graph
    block_size: int | None = None  # default weights per scale, for block-quantized formats
    default_rank: int | None = None  # transformers.js default preference, lowest first
    aliases: tuple = ()  # other accepted spellings of the name (the CLI)

    def manifest_entry(self) -> dict:
        return {"suffix": self.suffix, "label": self.label, "bits": self.bits, "requires": self.requires}


TABLE = (
    DType("fp32", "", "fp32", 32),
    DType("int8", "_int8", "int8", 8, quantizer="janusweb.quantize.nbits", block_size=32, default_rank=0),
    DType("q4", "_q4", "4-bit", 4, quantizer="janusweb.quantize.nbits", block_size=32, default_rank=1,
          aliases=("int4",)),
    DType("fp16", "_fp16", "fp16", 16, requires="shader-f16", quantizer="janusweb.quantize.fp16"),
)
DTYPES = {d.name: d for d in TABLE}
FP32 = DTYPES["fp32"]
_SPELLINGS = {alias: d for d in TABLE for alias in (d.name, *d.aliases)}


def dtype(name: str) -> DType:
    """The entry for a name or alias; UserError for anything else."""
    if name not in _SPELLINGS:
        raise UserError(f"unknown dtype {name!r}; choose one of: {', '.join(spellings())}")
    return _SPELLINGS[name]


def spellings(quantized: bool = False) -> list:
    """Every accepted name, aliases after their canonical name (only the quantizable ones with `quantized`)."""
    return [s for d in TABLE if d.quantizer or not quantized for s in (d.name, *d.aliases)]


def graph_file(graph: str, name: str) -> str:
    """Bundle-relative path of a graph's variant: onnx/<graph><suffix>.onnx."""
    return f"onnx/{graph}{dtype(name).suffix}.onnx"


def default_preference() -> list:
    """Names in transformers.js default order (the bundle's default is the first every graph has)."""
    return [d.name for d in sorted((d for d in TABLE if d.default_rank is not None), key=lambda d: d.default_rank)]


def manifest_table() -> dict:
    """manifest.json's `dtypes` object: {name: {suffix, label, bits, requires}}."""
    return {d.name: d.manifest_entry() for d in TABLE}
