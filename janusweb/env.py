"""Versions of everything janusweb runs on, for `janusweb env` and for benchmark labels."""

import importlib.metadata
import platform
import shutil
import subprocess

PYTHON_PACKAGES = ("torch", "transformers", "onnx", "onnxscript", "onnxruntime", "tokenizers", "playwright")
CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser", "google-chrome")


def _command_version(cmd: list) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"not runnable ({e.__class__.__name__})"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else "unknown"


def chromium_path() -> str | None:
    for c in CHROMIUM_CANDIDATES:
        found = shutil.which(c)
        if found:
            return found
    return None


def versions() -> dict:
    out = {"janusweb": importlib.metadata.version("janusweb"), "python": platform.python_version()}
    for pkg in PYTHON_PACKAGES:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    node = shutil.which("node")
    out["node"] = _command_version([node, "--version"]) if node else "not installed"
    chromium = chromium_path()
    out["chromium"] = _command_version([chromium, "--version"]) if chromium else "not installed"
    return out
