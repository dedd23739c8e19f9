"""The dtype vocabulary: one table (janusweb.dtypes), carried by manifest.json for the page, whose suffixes name
the files quantize writes."""

import json
import shutil

import pytest

from janusweb.cli import main
from janusweb.dtypes import dtype, graph_file
from janusweb.errors import UserError
from janusweb.quantize.driver import quantize_bundle

# The page's contract (web/ reads it from manifest.json), written out by hand.
PAGE_TABLE = {"fp32": {"suffix": "", "label": "fp32", "bits": 32, "requires": None},
              "int8": {"suffix": "_int8", "label": "int8", "bits": 8, "requires": None},
              "q4": {"suffix": "_q4", "label": "4-bit", "bits": 4, "requires": None},
              "fp16": {"suffix": "_fp16", "label": "fp16", "bits": 16, "requires": "shader-f16"}}


def _table(manifest: dict) -> dict:
    return {name: {k: entry[k] for k in ("suffix", "label", "bits", "requires")}
            for name, entry in manifest["dtypes"].items()}


def test_names_and_aliases():
    assert dtype("int4") is dtype("q4") and dtype("q4").name == "q4"
    assert graph_file("lm_head", "int4") == "onnx/lm_head_q4.onnx"
    assert graph_file("lm_head", "fp32") == "onnx/lm_head.onnx"
    with pytest.raises(UserError, match="unknown dtype 'int3'"):
        dtype("int3")


def test_export_writes_the_table(tiny_bundle):
    assert _table(json.loads((tiny_bundle / "manifest.json").read_text())) == PAGE_TABLE


@pytest.fixture(scope="module")
def quantized(tiny_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("dtypes") / "tiny"
    shutil.copytree(tiny_bundle, out)
    quantize_bundle(out, "int4", report=False)  # the alias: recorded as q4
    quantize_bundle(out, "fp16", report=False)
    return out


def test_quantize_keeps_the_table_and_suffixes_name_its_files(quantized):
    manifest = json.loads((quantized / "manifest.json").read_text())
    assert _table(manifest) == PAGE_TABLE
    assert set(manifest["quantization"]) == {"q4", "fp16"} and manifest["quantization"]["q4"]["cli"] == "int4"
    for name, graph in manifest["graphs"].items():
        assert set(graph["variants"]) == {"q4", "fp16"}
        for dt, variant in graph["variants"].items():
            main_file = f"onnx/{name}{manifest['dtypes'][dt]['suffix']}.onnx"  # what the page would load
            assert main_file in variant["files"] and (quantized / main_file).is_file()
            assert manifest["files"][main_file]["sha256"] == variant["files"][main_file]["sha256"]


def test_unknown_dtype_is_one_clear_line(tiny_bundle, capsys):
    assert main(["--quiet", "quantize", str(tiny_bundle), "--dtype", "fp32"]) == 2
    err = capsys.readouterr().err
    # refused by the parser (before any heavy import), naming every spelling the table accepts
    assert "invalid choice: 'fp32'" in err and all(f"'{d}'" in err for d in ("int8", "q4", "int4", "fp16"))
    assert err.count("\n") == 1


def test_a_new_format_is_one_table_entry(tiny_bundle, tmp_path, monkeypatch):
    """A format added to the table alone (here int8 with blocks of 64, reusing the nbits quantizer) is written,
    named and recorded by quantize with no other change."""
    from janusweb import dtypes
    extra = dtypes.DType("int8b64", "_int8b64", "int8 (64)", 8, quantizer="janusweb.quantize.nbits", block_size=64)
    table = dtypes.TABLE + (extra,)
    monkeypatch.setattr(dtypes, "TABLE", table)
    monkeypatch.setattr(dtypes, "_SPELLINGS", {**dtypes._SPELLINGS, extra.name: extra})
    out = tmp_path / "tiny"
    shutil.copytree(tiny_bundle, out)
    quantize_bundle(out, "int8b64", report=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dtypes"]["int8b64"] == {"suffix": "_int8b64", "label": "int8 (64)", "bits": 8, "requires": None}
    assert manifest["quantization"]["int8b64"]["block_size"] == 64
    for name, graph in manifest["graphs"].items():
        assert f"onnx/{name}_int8b64.onnx" in graph["variants"]["int8b64"]["files"]
        assert (out / "onnx" / f"{name}_int8b64.onnx").is_file()
