"""The bundle's format versions (janusweb/formats.py): the manifest and every pack carry one, and a reader refuses
one it does not know in one line (BundleFormatError, exit 2) before it uses anything."""

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from test_web_units import needs_node, run_node

from janusweb import formats
from janusweb.cli import main
from janusweb.errors import BundleFormatError
from janusweb.manifest import file_digest
from janusweb.site.server import Handler, Server, site_roots

CLI = [sys.executable, "-m", "janusweb"]


def _with_pack(tiny_bundle, tmp_path, pack_format):
    """A copy of the tiny bundle listing a WGSL pack whose JSON says `pack_format` (recorded in the manifest's file
    table as it is: the file is intact, only its version is unknown)."""
    bundle = shutil.copytree(tiny_bundle, tmp_path / "b")
    (bundle / "wgsl").mkdir()
    (bundle / "wgsl" / "decoder.json").write_text(json.dumps({"format": pack_format, "tensors": {}}))
    (bundle / "wgsl" / "decoder.0.bin").write_bytes(b"\0" * 256)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["wgsl"] = {"fp32": {"json": "wgsl/decoder.json", "parts": ["wgsl/decoder.0.bin"]}}
    for rel in ("wgsl/decoder.json", "wgsl/decoder.0.bin"):
        manifest["files"][rel] = file_digest(bundle / rel)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    return bundle


@pytest.mark.parametrize("found,fix", [("janusweb-wgsl/99", "update janusweb to read it"),
                                       ("janusweb-wgsl/0", "write it again: janusweb pack wgsl BUNDLE --dtype fp32"),
                                       ("janusweb-cpu/3", "write it again")])
def test_serve_refuses_a_pack_of_an_unknown_format_in_one_line(tiny_bundle, tmp_path, found, fix):
    bundle = _with_pack(tiny_bundle, tmp_path, found)
    done = subprocess.run([*CLI, "serve", str(bundle), "--port", "0"], capture_output=True, text=True, timeout=60)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"janusweb: error: {bundle / 'wgsl' / 'decoder.json'}: wgsl pack format {found!r}, "
                               "this janusweb reads janusweb-wgsl/1; ") and fix in lines[0], lines[0]


@pytest.mark.parametrize("known", [formats.PACKS["wgsl"], None])
def test_a_known_pack_format_is_accepted(tiny_bundle, tmp_path, known):
    """The current version, or none at all (read as the current one)."""
    bundle = _with_pack(tiny_bundle, tmp_path, known)
    if known is None:
        (bundle / "wgsl" / "decoder.json").write_text(json.dumps({"tensors": {}}))
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert formats.check_bundle(bundle, manifest) is manifest


def test_commands_refuse_a_manifest_of_an_unknown_format_in_one_line(tiny_bundle, tmp_path, capsys):
    bundle = shutil.copytree(tiny_bundle, tmp_path / "b")
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["format"] = "janusweb-bundle/2"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    before = sorted(p.name for p in bundle.rglob("*"))
    for argv in (["quantize", str(bundle), "--dtype", "int8"], ["pack", "wgsl", str(bundle), "--dtype", "fp32"],
                 ["end-to-end", str(bundle), "--dtype", "fp32"]):
        assert main(["--quiet", *argv]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "manifest format 'janusweb-bundle/2', this janusweb reads janusweb-bundle/1; " \
                                 "update janusweb to read it" in err[0], (argv, err)
    assert sorted(p.name for p in bundle.rglob("*")) == before


# The page's side (web/lib/formats.js): the same table, the same sentence, checked before the files it lists.

# [what, JSON] -> each case as both readers see it: formats.js's answer is compared with janusweb/formats.py's
FORMAT_CASES = [
    ("manifest", {"format": "janusweb-bundle/2"}), ("manifest", {"format": "janusweb-bundle/0"}),
    ("manifest", {"format": "janusweb-bundle/1"}), ("manifest", {}), ("manifest", {"format": None}),
    ("manifest", {"format": 2}), ("manifest", {"format": "janusweb-bundle/12x"}), ("manifest", {"format": "it's/9"}),
    ("cpu", {"format": "janusweb-cpu/5"}), ("cpu", {"format": "janusweb-cpu/4"}), ("cpu", {"format": "janusweb-cpu/2"}),
    ("cpu", {"format": "janusweb-cpu/3"}),
    ("cpu", {"format": "janusweb-wgsl/9"}), ("cpu", {"tensors": {}}), ("cpu", [1, 2]), ("cpu", {"format": "a\\b"}),
    ("wgsl", {"format": "janusweb-wgsl/10"}), ("wgsl", {"format": "janusweb-wgsl/1"}), ("wgsl", {"format": True}),
]


def _python_answer(what: str, found, where: str, dtype: str):
    try:
        back = formats.check_manifest(found, where) if what == "manifest" else \
            formats.check_pack(what, found, where, dtype)
    except BundleFormatError as e:
        return {"name": "BundleFormatError", "kind": "bundle", "message": str(e)}
    assert back is found
    return "accepted"


@needs_node
def test_the_pages_table_and_refusals_are_these(tmp_path):
    cases = [{"what": what, "json": found, "where": f"http://h/model/{i}.json", "dtype": "int8"}
             for i, (what, found) in enumerate(FORMAT_CASES)]
    got = run_node("format_cases.mjs", tmp_path, cases)
    assert (got["MANIFEST"], got["PACKS"]) == (formats.MANIFEST, formats.PACKS)
    expected = [_python_answer(c["what"], c["json"], c["where"], c["dtype"]) for c in cases]
    assert got["answers"] == expected
    assert expected.count("accepted") == 5  # the current versions, and a file without a `format`


def _served_plan(bundle: Path, tmp_path: Path, options: dict):
    """planJanus (node) on `bundle` served by `janusweb serve`'s server: its answer, and the bundle files fetched."""
    site = tmp_path / "site"
    (site / "ort").mkdir(parents=True)
    (site / "ort" / "files.json").write_text(json.dumps({"ort-wasm-simd-threaded.asyncify.wasm": 1}))
    fetched = []
    handler = type("Seen", (Handler,), {"roots": site_roots(site, bundle),
                                        "do_GET": lambda self: (fetched.append(self.path), Handler.do_GET(self))})
    server = Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        got = run_node("plan_bundle.mjs", tmp_path, {"url": url + "model/", "options": {"assets": url, **options}})
    finally:
        server.shutdown()
        server.server_close()
    return got, url + "model/", [p.removeprefix("/model/") for p in fetched if p.startswith("/model/")]


def _restamped(src: Path, tmp_path: Path, rel: str, found: str) -> Path:
    """A copy of `src` whose file `rel` says `format: found`, recorded in the manifest's file table as it is (the
    file is intact: only its version is unknown)."""
    bundle = shutil.copytree(src, tmp_path / "b")
    data = json.loads((bundle / rel).read_text())
    (bundle / rel).write_text(json.dumps({**data, "format": found}))
    if rel != "manifest.json":
        manifest = json.loads((bundle / "manifest.json").read_text())
        manifest["files"][rel] = file_digest(bundle / rel)
        (bundle / "manifest.json").write_text(json.dumps(manifest))
    return bundle


CPU_FP32 = {"backend": "wasm", "engine": "cpu", "dtype": "fp32"}


@needs_node
def test_the_page_plans_a_bundle_of_the_current_formats(tiny_packed, tmp_path):
    """The control for the two below: the same bundle, as written, plans the CPU engine with its pack's parts."""
    got, _, fetched = _served_plan(tiny_packed, tmp_path, CPU_FP32)
    pack = json.loads((tiny_packed / "manifest.json").read_text())["cpu"]["fp32"]
    assert "files" in got, got
    assert set(pack["parts"]) <= set(got["files"]), got
    assert fetched == ["manifest.json", "config.json", pack["json"]]


@needs_node
def test_the_page_refuses_a_manifest_of_an_unknown_format_before_any_other_file(tiny_packed, tmp_path):
    bundle = _restamped(tiny_packed, tmp_path, "manifest.json", "janusweb-bundle/2")
    got, url, fetched = _served_plan(bundle, tmp_path, CPU_FP32)
    with pytest.raises(BundleFormatError) as python:
        formats.check_manifest(json.loads((bundle / "manifest.json").read_text()), f"{url}manifest.json")
    assert got == {"error": {"name": "BundleFormatError", "kind": "bundle", "message": str(python.value)}}
    assert got["error"]["message"].endswith("manifest format 'janusweb-bundle/2', this janusweb reads "
                                            "janusweb-bundle/1; update janusweb to read it")
    assert fetched == ["manifest.json"]


@needs_node
@pytest.mark.parametrize("found", ["janusweb-cpu/5", "janusweb-cpu/3"])
def test_the_page_refuses_a_pack_of_an_unknown_format_before_its_parts(tiny_packed, tmp_path, found):
    rel = json.loads((tiny_packed / "manifest.json").read_text())["cpu"]["fp32"]["json"]
    bundle = _restamped(tiny_packed, tmp_path, rel, found)
    got, url, fetched = _served_plan(bundle, tmp_path, CPU_FP32)
    with pytest.raises(BundleFormatError) as python:
        formats.check_pack("cpu", json.loads((bundle / rel).read_text()), f"{url}{rel}", "fp32")
    assert got == {"error": {"name": "BundleFormatError", "kind": "bundle", "message": str(python.value)}}
    assert ("update janusweb" in str(python.value)) == found.endswith("/5")
    assert fetched == ["manifest.json", "config.json", rel]  # no graph, no part of the pack
