"""A pack's tensors written as parts of at most PART_BYTES each (`wgsl/decoder_q4.0.bin`, `.1.bin`, ...): every
packer's .bin files come from here.

The page verifies each file whole with crypto.subtle.digest, which Chromium refuses for one buffer of 2^31-1 bytes
or more, and holds each file in one ArrayBuffer while it is verified and uploaded. A part is at most 1 GiB: half
that digest limit, so a 7B q4 WGSL pack (~3.8 GB) is 4 parts, each one a download the loader resumes and verifies
on its own, and the page never holds more than one part of the pack at a time. A tensor never spans two parts (the
GPU upload and the CPU engine's copy take it from the one part that holds it); one larger than a part is refused
with its name. Within a part each tensor starts at a multiple of ALIGN bytes. A small pack is one part, the same
format. The pack's JSON gives each tensor's part and offset; the manifest lists the parts with their sizes and sha256.
"""

from pathlib import Path

import numpy as np

from janusweb.errors import UserError

PART_BYTES = 2**30
ALIGN = 256


def part_path(stem: str, index: int) -> str:
    """`wgsl/decoder_q4` -> `wgsl/decoder_q4.0.bin`."""
    return f"{stem}.{index}.bin"


class PartWriter:
    """Appends tensors to `root / stem.N.bin`, starting part N+1 when the next tensor would not fit in part N."""

    def __init__(self, root: Path, stem: str, part_bytes: int = PART_BYTES):
        self.root, self.stem, self.part_bytes = Path(root), stem, part_bytes
        self.parts, self.tensors = [], {}
        self._file, self._size = None, 0

    def _open(self) -> None:
        if self._file is not None:
            self._file.close()
        self.parts.append(part_path(self.stem, len(self.parts)))
        self._file, self._size = open(self.root / self.parts[-1], "wb"), 0

    def put(self, name: str, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        if array.nbytes > self.part_bytes:
            raise UserError(f"{name} is {array.nbytes} bytes, more than a pack part holds ({self.part_bytes} bytes)")
        if self._file is None or self._size + -self._size % ALIGN + array.nbytes > self.part_bytes:
            self._open()
        pad = -self._size % ALIGN
        self._file.write(b"\0" * pad)
        offset = self._size + pad
        self._file.write(array.tobytes())
        self._size = offset + array.nbytes
        self.tensors[name] = {"part": len(self.parts) - 1, "offset": offset, "bytes": array.nbytes,
                              "shape": list(array.shape), "type": "u8" if array.dtype == np.uint8 else "f32"}

    def close(self) -> list:
        """Close the last part; returns the parts' paths (relative to root), in order."""
        if self._file is None:
            self._open()
        self._file.close()
        return self.parts
