"""Compile the CPU engine's kernels (web/lib/engines/cpu/*.c) to WebAssembly with zig's clang (PyPI `ziglang`):
web/lib/engines/cpu/dist/kernels.wasm (SIMD128, one thread), kernels-mt.wasm (shared memory + atomics, for Web Workers), and
kernels-relaxed.wasm / kernels-mt-relaxed.wasm (the same with relaxed SIMD: fused multiply-add, and the byte dot
product for q4 weights, and for int8 weights where the browser computes it exactly on unsigned bytes (qmat.h), for
browsers that validate it). Each also as a Memory64 build, kernels*-m64.wasm
(wasm64-freestanding, -DMEMORY64: 64-bit addresses, a memory of up to 16 GiB, for packs that a 32-bit memory
cannot hold; cpu.h's `addr`). peak.wasm / peak-relaxed.wasm (32-bit only): the benchmark's measure of the SIMD
instructions' peak rate (peak.c).

    python web/lib/engines/cpu/build.py [DIR]      (make setup runs it; web/build.mjs copies dist/ into the site)
"""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = ["matmul.c", "qlayout.c", "qmatmul.c", "attention.c", "decoder.c", "heads.c", "vision.c", "conv.c", "vq.c"]
BASE = ["-msimd128", "-O3", "-nostdlib", "-ffreestanding", "-Wall", "-Werror",
        "-Wl,--no-entry", "-Wl,--import-memory", "-Wl,--export-dynamic", "-Wl,--export=__heap_base",
        "-Wl,--export=__stack_pointer", "-Wl,-z,stack-size=1048576"]
THREADS = ["-DTHREADS", "-matomics", "-mbulk-memory", "-Wl,--shared-memory"]
RELAXED = ["-mrelaxed-simd", "-DRELAXED"]
# address width: the target and the memory's largest size (runtime.js's MAX_PAGES: 4 GiB less one 64 KiB page).
# The Memory64 builds' largest size, 16 GiB (the most V8 gives a Memory64 memory), is written into the module
# after linking (set_memory_max): zig's linker takes --max-memory in 32 bits.
WIDTHS = {"": ["--target=wasm32-freestanding", "-Wl,--max-memory=4294901760"],
          "-m64": ["--target=wasm64-freestanding", "-DMEMORY64", "-Wl,--max-memory=4294901760"]}
MAX_PAGES_64 = 2**18
VARIANTS = {f"kernels{mt}{relaxed}{width}.wasm": [*w, *(THREADS if mt else []), *(RELAXED if relaxed else [])]
            for width, w in WIDTHS.items() for mt in ("", "-mt") for relaxed in ("", "-relaxed")}
# the benchmark's SIMD peak (peak.c), apart from the engine's kernels
PEAK = {"peak.wasm": WIDTHS[""], "peak-relaxed.wasm": [*WIDTHS[""], *RELAXED]}


def build(out: Path = HERE / "dist") -> Path:
    out.mkdir(parents=True, exist_ok=True)
    builds = [(name, flags, SOURCES) for name, flags in VARIANTS.items()]
    builds += [(name, flags, ["peak.c"]) for name, flags in PEAK.items()]
    for name, flags, sources in builds:
        cmd = [sys.executable, "-m", "ziglang", "cc", *BASE, *flags, *[str(HERE / s) for s in sources],
               "-o", str(out / name)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"building {name} failed:\n{done.stderr}")
        if "-m64" in name:
            (out / name).write_bytes(set_memory_max((out / name).read_bytes(), MAX_PAGES_64))
    return out


def _leb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_leb(data: bytes, at: int) -> tuple:
    value = shift = 0
    while True:
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if byte < 0x80:
            return value, at


def set_memory_max(wasm: bytes, pages: int) -> bytes:
    """The module with its imported memory's maximum set to `pages` (the import section re-encoded)."""
    at, out = 8, bytearray(wasm[:8])
    while at < len(wasm):
        sid = wasm[at]
        size, body = _read_leb(wasm, at + 1)
        end = body + size
        if sid == 2:
            section = _memory_max_in_imports(wasm[body:end], pages)
            out += bytes([sid]) + _leb(len(section)) + section
        else:
            out += wasm[at:end]
        at = end
    return bytes(out)


def _memory_max_in_imports(section: bytes, pages: int) -> bytes:
    count, at = _read_leb(section, 0)
    out = bytearray(_leb(count))
    for _ in range(count):
        start = at
        for _name in range(2):  # module, field
            n, at = _read_leb(section, at)
            at += n
        if section[at] != 2:
            raise ValueError("the kernels import nothing but their memory")
        head = section[start:at + 1]  # the names and the kind
        flags, at = section[at + 1], at + 2
        minimum, at = _read_leb(section, at)
        if flags & 1:
            _, at = _read_leb(section, at)
        out += head + bytes([flags | 1]) + _leb(minimum) + _leb(pages)
    return bytes(out)


if __name__ == "__main__":
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "dist")
