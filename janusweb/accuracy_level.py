"""A bundle's graphs with their MatMulNBits at another accuracy_level, without touching the bundle: a view folder
where the named graphs are rewritten copies (the attribute only; weights untouched, external data linked beside
them) and every other file a link to the bundle's own. At accuracy_level 4 onnxruntime's MatMulNBits quantizes its
activations to int8 per block (as the page's CPU engine does: tests/test_cpu_kernels.py checks the two against
one numpy model); at 0 it keeps them float. The CPU engine's Python reference and its accuracy report run there."""

import os
from pathlib import Path

import onnx


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)  # a hard link: onnxruntime reads external data only from within the model's folder
    except OSError:
        dst.symlink_to(src.resolve())


def set_level(src: Path, dst: Path, level: int) -> int:
    """src's graph (without its external data) written to dst with every MatMulNBits at `level`; returns how many."""
    model = onnx.load(str(src), load_external_data=False)
    count = 0
    for node in model.graph.node:
        if node.op_type == "MatMulNBits":
            kept = [a for a in node.attribute if a.name != "accuracy_level"]
            del node.attribute[:]
            node.attribute.extend([*kept, onnx.helper.make_attribute("accuracy_level", level)])
            count += 1
    onnx.save(model, str(dst))
    return count


def accuracy_view(bundle: Path, out: Path, graphs: list, level: int) -> Path:
    """`out`: every file of `bundle` linked, the bundle-relative `graphs` (onnx/x.onnx) at `level`. Returns out."""
    bundle, out = Path(bundle), Path(out)
    rewrite = {Path(g) for g in graphs}
    for src in bundle.rglob("*"):
        rel = src.relative_to(bundle)
        if src.is_file() and rel not in rewrite:
            _link(src, out / rel)
    for rel in rewrite:
        if not set_level(bundle / rel, out / rel, level):
            raise ValueError(f"{bundle / rel} has no MatMulNBits: nothing runs at accuracy_level {level}")
    return out
