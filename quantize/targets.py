"""The quantization targets `janusweb quantize --dtype` accepts, named as transformers.js names them."""

from dataclasses import dataclass

from janusweb.errors import UserError
from janusweb.graphs import DTYPE_SUFFIX


@dataclass(frozen=True)
class Target:
    cli: str  # the --dtype value
    dtype: str  # transformers.js's dtype name (config.json, manifest, OrtGraphs dtypes)
    bits: int | None  # weight bits; None for fp16 (a float conversion, no block quantization)
    block_size: int | None  # default block size (a power of two >= 16), measured: see README

    @property
    def suffix(self) -> str:
        return DTYPE_SUFFIX[self.dtype]


TARGETS = {
    "int8": Target("int8", "int8", 8, 32),
    "int4": Target("int4", "q4", 4, 32),
    "fp16": Target("fp16", "fp16", None, None),
}


def target(name: str) -> Target:
    if name not in TARGETS:
        raise UserError(f"unknown dtype {name!r}; choose one of: {', '.join(TARGETS)}")
    return TARGETS[name]


def check_options(t: Target, block_size: int | None, accuracy_level: int | None) -> int | None:
    """The block size to use (the target's default when None); UserError for values the ops reject."""
    if t.bits is None:
        if block_size is not None or accuracy_level is not None:
            raise UserError("--block-size and --accuracy-level apply to int8 and int4, not fp16")
        return None
    size = t.block_size if block_size is None else block_size
    if size < 16 or size & (size - 1):
        raise UserError(f"--block-size must be a power of two >= 16 (MatMulNBits, GatherBlockQuantized), got {size}")
    if accuracy_level is not None and accuracy_level not in (0, 1, 2, 3, 4):
        raise UserError(f"--accuracy-level must be 0..4 (MatMulNBits), got {accuracy_level}")
    return size
