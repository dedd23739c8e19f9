"""Compile the CPU engine's kernels (web/cpu/*.c) to WebAssembly with zig's clang (PyPI `ziglang`):
web/cpu/dist/kernels.wasm (SIMD128, one thread), kernels-mt.wasm (shared memory + atomics, for Web Workers), and
kernels-relaxed.wasm / kernels-mt-relaxed.wasm (the same with relaxed SIMD: fused multiply-add, and the int8 dot
product of q4 weights, for browsers that validate it). `float_dequant=True` builds the earlier kernels instead (quantized weights
against float activations, see matmul.c), as *-float.wasm: the benchmark's "before" numbers, not the page's.

    python web/cpu/build.py            (make setup runs it; web/build.mjs copies dist/ into the site)
    python web/cpu/build.py --float-dequant DIR       (the benchmark's before kernels, into DIR)
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
ONE = ["-Wl,--max-memory=4294901760"]
RELAXED = ["-mrelaxed-simd", "-DRELAXED"]
VARIANTS = {"kernels.wasm": ONE, "kernels-relaxed.wasm": ONE + RELAXED, "kernels-mt.wasm": THREADS,
            "kernels-mt-relaxed.wasm": THREADS + RELAXED}


def build(out: Path = HERE / "dist", float_dequant: bool = False) -> Path:
    out.mkdir(exist_ok=True)
    variants = ({n.replace(".wasm", "-float.wasm"): [*f, "-DFLOAT_DEQUANT"] for n, f in VARIANTS.items()}
                if float_dequant else VARIANTS)
    for name, flags in variants.items():
        cmd = [sys.executable, "-m", "ziglang", "cc", *BASE, *flags, *[str(HERE / s) for s in SOURCES],
               "-o", str(out / name)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"building {name} failed:\n{done.stderr}")
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    dequant = "--float-dequant" in args
    rest = [a for a in args if a != "--float-dequant"]
    build(Path(rest[0]) if rest else HERE / "dist", dequant)
