"""One bundle check for every command that reads a bundle (quantize, the packs, end-to-end, build-web, serve): a damaged or foreign bundle is one line naming what is wrong, exit 2, before any work, and the bundle is
left byte for byte as it was."""

import importlib
import json
import os
import shutil
from pathlib import Path

import pytest

from faults import one_line, tree
from janusweb.cli import main
from janusweb.manifest import file_digest

# each command as it would start on bundle b (serve never gets past the check here: see `stopped`)
COMMANDS = {
    "quantize": lambda b: ["quantize", str(b), "--dtype", "int8", "--no-report"],
    "wgsl-pack": lambda b: ["wgsl-pack", str(b), "--dtype", "fp32"],
    "cpu-pack": lambda b: ["cpu-pack", str(b), "--dtype", "fp32"],
    "end-to-end": lambda b: ["end-to-end", str(b)],
    "build-web": lambda b: ["build-web", str(b), "--out", str(b.parent / "site")],
    "serve": lambda b: ["serve", str(b), "--port", "0"],
}


def _json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _not_onnx_but_listed(b: Path) -> None:
    """gen_head.onnx replaced by other bytes, and the manifest updated to match them."""
    path = b / "onnx" / "gen_head.onnx"
    path.write_bytes(b"PK\x03\x04 not a model at all" * 100)
    digest = file_digest(path)
    _json(b / "manifest.json", lambda m: (m["files"].__setitem__("onnx/gen_head.onnx", digest),
                                          m["graphs"]["gen_head"]["files"].__setitem__("onnx/gen_head.onnx", digest)))


def _listed_outside(b: Path) -> None:
    _json(b / "manifest.json", lambda m: m["files"].__setitem__("../outside.txt", m["files"]["config.json"]))


def _linked_outside(b: Path) -> None:
    """tokenizer.json a symlink to an identical file outside the bundle (the manifest's size and sha256 hold)."""
    outside = b.parent / "tokenizer-outside.json"
    shutil.copyfile(b / "tokenizer.json", outside)
    (b / "tokenizer.json").unlink()
    os.symlink(outside, b / "tokenizer.json")


# (id, damage, fragment of the line)
DAMAGES = [
    ("manifest-{}", lambda b: (b / "manifest.json").write_text("{}"), "not a janusweb manifest"),
    ("manifest-not-json", lambda b: (b / "manifest.json").write_text("{\"format\": "), "not valid JSON"),
    ("manifest-a-list", lambda b: (b / "manifest.json").write_text("[]"), "not a JSON object"),
    ("files-not-a-table", lambda b: _json(b / "manifest.json", lambda m: m.__setitem__("files", [])),
     "no files / graphs table"),
    ("listed-outside", _listed_outside, "not a path inside the bundle"),
    ("no-tokenizer", lambda b: (b / "tokenizer.json").unlink(), "tokenizer.json: missing"),
    ("tokenizer-linked-outside", _linked_outside, "resolves outside the bundle"),
    ("config-llama", lambda b: (b / "config.json").write_text('{"model_type": "llama"}'), "model_type 'llama'"),
    ("config-not-json", lambda b: (b / "config.json").write_text("{"), "config.json is not valid JSON"),
    ("config-hidden-size", lambda b: _json(b / "config.json", lambda c: c["janusweb"].__setitem__("hidden_size", -64)),
     "janusweb.hidden_size is -64"),
    ("empty-graph", lambda b: (b / "onnx" / "gen_head.onnx").write_bytes(b""), "0 bytes, the manifest says"),
    ("graph-not-onnx", _not_onnx_but_listed, "gen_head.onnx is not an ONNX model"),
    ("graph-missing", lambda b: (b / "onnx" / "lm_head.onnx").unlink(), "lm_head.onnx: missing"),
]


@pytest.fixture(scope="module")
def damaged(tiny_bundle, tmp_path_factory) -> dict:
    """Each damage on its own copy of the tiny bundle (made once; the commands must leave them as they are)."""
    out = {}
    for name, damage, _ in DAMAGES:
        b = tmp_path_factory.mktemp(name) / "b"
        shutil.copytree(tiny_bundle, b)
        damage(b)
        out[name] = b
    return out


@pytest.fixture()
def stopped(monkeypatch):
    """serve fails loudly (exit 3) if it gets past the check, instead of serving."""
    def started(*args, **kwargs):
        raise AssertionError("the command started its work on a damaged bundle")
    monkeypatch.setattr(importlib.import_module("janusweb.site.serve"), "make_server", started)


@pytest.mark.parametrize("damage,fragment", [(name, fragment) for name, _, fragment in DAMAGES],
                         ids=[name for name, *_ in DAMAGES])
@pytest.mark.parametrize("command", COMMANDS)
def test_every_reader_refuses_a_damaged_bundle(damaged, stopped, capsys, command, damage, fragment):
    b = damaged[damage]
    before = tree(b.parent)
    assert main(["--quiet", *COMMANDS[command](b)]) == 2
    one_line(capsys.readouterr().err, fragment)
    assert tree(b.parent) == before
