"""Running the CPU engine's kernels under Node (tests/js/cpu_check.mjs) for the kernel tests (not a test module):
the arrays go to files, a JSON spec names the kernel, its output comes back as float32."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

CHECK = Path(__file__).resolve().parent / "js" / "cpu_check.mjs"
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node runs the kernels")


def run(tmp_path: Path, spec: dict, **files) -> np.ndarray:
    for name, array in files.items():
        (tmp_path / f"{name}.bin").write_bytes(np.ascontiguousarray(array).tobytes())
    spec = {**spec, "files": [f"{n}.bin" for n in files]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    done = subprocess.run(["node", "--experimental-wasm-relaxed-simd", "--experimental-wasm-memory64", str(CHECK), str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return np.frombuffer((tmp_path / "out.bin").read_bytes(), np.float32)


def assert_close(got, want, rtol=2e-5):
    scale = np.abs(want).max()
    diff = np.abs(got - want).max()
    assert diff <= rtol * max(scale, 1.0), f"NOT OK: max diff {diff:.3g} (reference max {scale:.3g})"
