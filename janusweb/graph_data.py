"""Reading an ONNX graph's external data (weights stored beside the graph file) without onnx.load, which
refuses files with several hard links, as a bundle's files have once `janusweb build-web` has linked them."""

from pathlib import Path

import onnx


def external_tensors(graph: onnx.GraphProto) -> list:
    return [t for t in graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]


def external_bytes(tensor: onnx.TensorProto, base: Path) -> bytes:
    """The bytes of a tensor stored in an external data file beside its graph (folder `base`)."""
    info = {e.key: e.value for e in tensor.external_data}
    location = Path(info["location"])
    if location.is_absolute() or ".." in location.parts:
        raise ValueError(f"{tensor.name}: external data location {location} is outside the graph's folder")
    with open(base / location, "rb") as f:
        f.seek(int(info.get("offset", 0)))
        length = int(info["length"]) if "length" in info else -1
        data = f.read(length)
    if length >= 0 and len(data) != length:
        raise ValueError(f"{tensor.name}: {base / location} is truncated ({len(data)} of {length} bytes)")
    return data
