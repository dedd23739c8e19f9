"""The scenarios that measure janusweb's own commands and arithmetic, on small cases: `serve` (its HTTP server
under load: every body right, descriptors back), `export` (a child `janusweb export tiny`: exit status, wall time,
its process tree's peak memory, the bundle's size) and `cpu-accuracy` (the CPU engine's int8 activations against
float ones on tiny's int8 graphs)."""

import json

from janusweb.cli import main


def _report(out):
    return json.loads((out / "report.json").read_text())


def test_serve_under_load(tmp_path):
    assert main(["--quiet", "bench", "serve", "--clients", "1,3", "--seconds", "2", "--out", str(tmp_path)]) == 0
    rows = _report(tmp_path)["rows"]
    assert [(r["params"]["clients"], r["status"]) for r in rows] == [(1, "ran"), (3, "ran")]
    for r in rows:
        m = r["metrics"]
        assert m["requests"] > 0 and m["errors"] == 0 and m["requests_per_s"] > 0
        assert m["server_fds_after"] <= m["server_fds_start"] and m["server_rss_peak_bytes"] > 10e6
    assert all(v["met"] for v in _report(tmp_path)["verdicts"])


def test_export_measured(tmp_path):
    out = tmp_path / "r"
    assert main(["--quiet", "bench", "export", "--source", "tiny", "--validate", "no", "--out", str(out)]) == 0
    (row,) = _report(out)["rows"]
    m = row["metrics"]
    assert m["exit_code"] == 0 and m["wall_s"] > 1 and m["bundle_bytes"] > 1e6
    assert m["peak_rss_bytes"] > 200e6 and m["peak_rss_sum_bytes"] >= m["peak_pss_sum_bytes"] > 100e6  # torch alone
    assert row["detail"]["files"]["onnx/lm_head.onnx"] > 0 and "--no-validate" in row["detail"]["command"]
    assert (out / row["detail"]["log"]).stat().st_size > 0  # the export's log beside the report
    assert not list(tmp_path.glob("**/bundle-1"))  # measured, then removed (no --keep)


def test_cpu_accuracy_on_tiny_int8(tiny_packed, tmp_path):
    assert main(["--quiet", "bench", "cpu-accuracy", "--bundle", str(tiny_packed), "--tokens", "8", "--out",
                 str(tmp_path)]) == 0
    (row,) = _report(tmp_path)["rows"]
    m = row["metrics"]
    assert row["status"] == "ran" and m["positions"] > 8
    assert 0 < m["logit_max_diff"] < 0.5 * m["logit_max_abs"] and 0.99 < m["cosine_min"] <= 1.0
    assert 0 <= m["kl_mean"] < 0.01 and m["top1_agreement_pct"] > 80 and 0 <= m["greedy_agreement_pct"] <= 100


def test_fresh_pack_of_a_bundle_whose_cpu_pack_is_in_parts(tiny_packed, tmp_path):
    """`run --fresh-pack cpu` on a bundle whose CPU pack is in parts (a 1B's is): the scratch copy leaves the old
    parts out, files and manifest entries both (this failed with "unhashable type: 'list'"), links the graphs,
    and this checkout's pack then verifies against the manifest; the bundle itself is untouched."""
    import shutil

    from janusweb.bench.scratch import fresh_packs
    from janusweb.integrity import verify_files
    from janusweb.pack.driver import write_packs

    src = tmp_path / "src"
    shutil.copytree(tiny_packed, src)
    tensors = json.loads((src / "cpu" / "decoder_int8.json").read_text())["tensors"].values()
    write_packs(src, "cpu", ["int8"], part_bytes=max(t["bytes"] for t in tensors))
    before = json.loads((src / "manifest.json").read_text())
    old_parts = before["cpu"]["int8"]["parts"]
    assert len(old_parts) > 1
    copy = fresh_packs(src, tmp_path / "work", "cpu", ["int8"])
    manifest = json.loads((copy / "manifest.json").read_text())
    assert list(manifest["cpu"]) == ["int8"] and len(manifest["cpu"]["int8"]["parts"]) == 1  # one 1 GiB part
    assert not [p for p in old_parts[1:] if (copy / p).exists() or p in manifest["files"]]
    verify_files(copy, manifest, [manifest["cpu"]["int8"]["json"], *manifest["cpu"]["int8"]["parts"]])
    assert (copy / "onnx" / "lm_head.onnx").stat().st_ino == (src / "onnx" / "lm_head.onnx").stat().st_ino
    assert json.loads((src / "manifest.json").read_text()) == before
