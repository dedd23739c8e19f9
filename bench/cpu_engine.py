"""The CPU engine's kernels (web/lib/engines/cpu) in Chromium on random weights of a model's shapes (1B or 7B)
(web/bench-pages/cpu-kernels.js, served as cpu/bench.html): one call of the kernel page per build (threads, relaxed
SIMD or plain) times its jobs: one decoder pass for 1 row (a text token) and 2 rows (a CFG image step) after `past`
cached positions, a prompt's prefill of `prefill` positions in one call (with its matrices' multiply-accumulates),
lm_head for 1 row, the image head's matrices for 2 rows, one 5632 x 2048 matrix for 1 and 2 rows; each with its
bytes read (weights, and the KV cache at `past`); and the SIMD peak of the dot instructions and the float
multiply-add on as many threads (web/lib/engines/cpu/peak.c), measured in the same page. A kernel change's
before/after: this at both commits."""

JOBS = ("decoder_1row", "decoder_2row", "lm_head_1row", "image_head_2rows", "matmul_5632x2048_1row",
        "matmul_5632x2048_2row")


def measure(runner, threads: int, relaxed: bool, dtype: str = "int8", repeats: int = 5, layers: int | None = None,
            past: int | None = None, prefill: int | None = None, m64: bool = False, shapes: str = "1b") -> dict:
    """One kernel-page call: {file, threads, bits, shapes, crossOriginIsolated, memoryMiB, jobs: {job: {ms: [...],
    bytes}}, peakGmacs: {peak_dot_i16, peak_fma, [peak_dot_i8]}}. m64: the Memory64 build of the same kernels;
    shapes: '1b' or '7b' (janus-pro-7b's decoder)."""
    config = {"threads": threads, "relaxed": relaxed, "dtype": dtype, "repeats": repeats, "m64": m64,
              "shapes": shapes, **({"layers": layers} if layers else {}),
              **({"past": past} if past is not None else {}), **({"prefill": prefill} if prefill is not None else {})}
    raw = runner.call("cpu/bench.html", "cpuBench", config)
    if "error" in raw:
        raise RuntimeError(f"the CPU engine's kernel page: {raw['error']}")
    return raw
