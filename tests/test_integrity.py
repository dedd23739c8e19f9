"""quantize and wgsl-pack check every input file against the manifest (size, sha256) before reading it: a
flipped byte or a truncated file is one line naming it, exit 2, and the bundle stays byte for byte as it was."""

import hashlib
import shutil
from pathlib import Path

import pytest

from janusweb.cli import main


def _tree(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture()
def bundle(tiny_bundle, tmp_path) -> Path:
    out = tmp_path / "tiny"
    shutil.copytree(tiny_bundle, out)
    return out


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


@pytest.mark.parametrize("damage,rel", [
    (lambda p: _flip(p, p.stat().st_size // 2), "onnx/lm_head.onnx"),
    (_truncate, "onnx/lm_head.onnx"),
    (_truncate, "onnx/language_model_gqa.onnx_data"),
    (lambda p: _flip(p, 10), "tokenizer.json"),
], ids=["flipped-byte", "truncated-onnx", "truncated-onnx_data", "flipped-tokenizer"])
def test_quantize_refuses_a_damaged_input(bundle, capsys, damage, rel):
    damage(bundle / rel)
    before = _tree(bundle)
    assert main(["--quiet", "quantize", str(bundle), "--dtype", "int8", "--no-report"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and rel in err[0], err
    assert _tree(bundle) == before


def test_quantize_accepts_an_intact_bundle(bundle, capsys):
    assert main(["--quiet", "quantize", str(bundle), "--dtype", "int8", "--no-report"]) == 0
    assert (bundle / "onnx" / "lm_head_int8.onnx").is_file()


def test_wgsl_pack_refuses_a_damaged_graph(bundle, capsys):
    assert main(["--quiet", "quantize", str(bundle), "--dtype", "int8", "--no-report"]) == 0
    _flip(bundle / "onnx" / "language_model_gqa_int8.onnx", 1000)
    before = _tree(bundle)
    assert main(["--quiet", "wgsl-pack", str(bundle), "--dtype", "int8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "language_model_gqa_int8.onnx" in err[0], err
    assert _tree(bundle) == before
    assert main(["--quiet", "wgsl-pack", str(bundle), "--dtype", "fp32"]) == 0  # the fp32 graph is intact
