"""Compile the CPU engine's kernels (web/cpu/*.c) to WebAssembly with zig's clang (PyPI `ziglang`):
web/cpu/dist/kernels.wasm (SIMD128, one thread), kernels-mt.wasm (shared memory + atomics, for Web Workers) and
kernels-mt-relaxed.wasm (the same with relaxed SIMD's fused multiply-add, for browsers that validate it).

    python web/cpu/build.py            (make setup runs it; web/build.mjs copies dist/ into the site)
"""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = ["matmul.c", "decoder.c", "heads.c"]
BASE = ["--target=wasm32-freestanding", "-msimd128", "-O3", "-nostdlib", "-ffreestanding", "-Wall", "-Werror",
        "-Wl,--no-entry", "-Wl,--import-memory", "-Wl,--export-dynamic", "-Wl,--export=__heap_base",
        "-Wl,--export=__stack_pointer", "-Wl,-z,stack-size=1048576"]
THREADS = ["-DTHREADS", "-matomics", "-mbulk-memory", "-Wl,--shared-memory", "-Wl,--max-memory=4294901760"]
VARIANTS = {"kernels.wasm": ["-Wl,--max-memory=4294901760"], "kernels-mt.wasm": THREADS,
            "kernels-mt-relaxed.wasm": THREADS + ["-mrelaxed-simd", "-DRELAXED"]}


def build(out: Path = HERE / "dist") -> Path:
    out.mkdir(exist_ok=True)
    for name, flags in VARIANTS.items():
        cmd = [sys.executable, "-m", "ziglang", "cc", *BASE, *flags, *[str(HERE / s) for s in SOURCES],
               "-o", str(out / name)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"building {name} failed:\n{done.stderr}")
    return out


if __name__ == "__main__":
    build()
