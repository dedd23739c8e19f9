"""What an export needs in memory, from the config alone, against what the machine has (MemAvailable).

Two ways to export: the whole fp32 model held at once (export.driver), or streamed (export.stream): bf16
weights read per graph and, for the language model, per decoder layer, so that only the largest graph's or
layer's fp32 weights are held. `plan(source)` keeps the whole-model export where the machine could hold it,
streams where it could not, and refuses with one line when not even the streamed export fits, before any weight
is read.

The factors are measured peaks over fp32 weight bytes (README, "Export cost"): janus-pro-1b's whole-model
export peaked at 19.6 GB for an 8.3 GB fp32 model (2.36x); a streamed graph holds its fp32 weights, the
exporter's serialised copy and onnxruntime's session during the check (3x). The quantized variants of a streamed
export (export.variants) hold the quantized decoder layers: once while onnxruntime-genai's builder writes the
fused decoder, twice while it is compared with language_model<suffix> (two sessions): QUANT_FACTOR times their
size (`--no-fused`: once, while the language model's checks run on it).
"""

from dataclasses import dataclass

import torch
from transformers import JanusConfig, JanusForConditionalGeneration

from janusweb.errors import UserError
from janusweb.log import log

GB = 1e9
BASE_BYTES = int(1.5 * GB)  # torch, transformers, onnxruntime and the tokenizer, before any weight
WHOLE_FACTOR = 2.4
STREAM_FACTOR = 3.0
QUANT_FACTOR = 2.2
SCALE_BITS_PER_WEIGHT = 32 / 32  # one fp32 scale per block of 32 weights
LANGUAGE_MODEL = "language_model"


@dataclass(frozen=True)
class Needs:
    parameters: int
    whole_bytes: int  # peak of the whole-model export
    stream_bytes: int  # peak of the streamed export
    largest_unit: str  # the graph or decoder layer that sets stream_bytes
    largest_unit_bytes: int  # its fp32 weights
    quantized_bytes: int = 0  # the widest quantized variant of the decoder layers (0: none asked)


def _meminfo(field: str) -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/meminfo has no {field} line")


def mem_available() -> int:
    """MemAvailable of /proc/meminfo, in bytes: what can be used now without swapping."""
    return _meminfo("MemAvailable")


def mem_total() -> int:
    """MemTotal of /proc/meminfo, in bytes: the machine's memory."""
    return _meminfo("MemTotal")


def meta_model(config: JanusConfig) -> JanusForConditionalGeneration:
    """The model on the meta device: shapes and names, no weight memory."""
    with torch.device("meta"):
        return JanusForConditionalGeneration(config).eval()


def _fp32_bytes(module: torch.nn.Module, ids: set | None = None) -> int:
    return sum(p.numel() for p in module.parameters() if ids is None or id(p) in ids) * 4


def graph_parameters(spec, model: JanusForConditionalGeneration) -> set:
    """ids of the parameters the graph's wrapper reads (a forward on meta inputs; the model's buffers must be
    on the meta device too)."""
    from janusweb.export.weights import used_parameters

    args = tuple(a.to("meta") for a in spec.make_inputs(spec.export_dims, torch.Generator().manual_seed(0)))
    return used_parameters(spec.wrapper(model).eval(), args)


def units(model: JanusForConditionalGeneration) -> dict:
    """name -> fp32 weight bytes of what a streamed export holds at once: each graph but the language model,
    and each decoder layer of the language model (plus its final norm)."""
    from janusweb.export.specs import graph_specs  # specs imports the wrappers (transformers' models)

    out = {spec.name: _fp32_bytes(model, graph_parameters(spec, model))
           for spec in graph_specs(model) if spec.name != LANGUAGE_MODEL}
    for i, layer in enumerate(model.model.language_model.layers):
        out[f"{LANGUAGE_MODEL} layer {i}"] = _fp32_bytes(layer)
    return out


def quantized_layer_bytes(model: JanusForConditionalGeneration, bits: int) -> int:
    """The decoder layers' matrices at `bits` bits plus their block scales."""
    n = sum(p.numel() for layer in model.model.language_model.layers for p in layer.parameters() if p.dim() == 2)
    return int(n * (bits + SCALE_BITS_PER_WEIGHT) / 8)


def needs(config: JanusConfig, bits=(), fused: bool = True) -> Needs:
    """bits: the weight bits of the streamed export's quantized variants (int8: 8, q4: 4)."""
    model = meta_model(config)
    parameters = sum(p.numel() for p in model.parameters())
    sizes = units(model)
    largest = max(sizes, key=sizes.get)
    quantized = max((quantized_layer_bytes(model, b) for b in bits), default=0)
    stream = max(STREAM_FACTOR * sizes[largest], (QUANT_FACTOR if fused else 1.0) * quantized)
    return Needs(parameters, BASE_BYTES + int(WHOLE_FACTOR * 4 * parameters), BASE_BYTES + int(stream), largest,
                 sizes[largest], quantized)


def plan(name: str, config: JanusConfig, stream: bool, available: int | None = None,
         total: int | None = None, bits=(), fused: bool = True) -> bool:
    """True: export streamed. stream forces it; otherwise the whole-model export is kept wherever the machine
    could hold it (`total`, default MemTotal; below MemAvailable it is logged, as other work may be using memory),
    and streaming is chosen when it never could. UserError (one line) when not even the streamed export fits in
    `available` (default: MemAvailable)."""
    n = needs(config, bits, fused)
    available = mem_available() if available is None else available
    total = mem_total() if total is None else total
    if not stream and n.whole_bytes <= total:
        if n.whole_bytes > available:
            log.warning("%s: the whole-model export needs about %.1f GB, %.1f GB are available now (--stream needs "
                        "about %.1f GB)", name, n.whole_bytes / GB, available / GB, n.stream_bytes / GB)
        return False
    if n.stream_bytes <= available:
        return True
    variants = (f"; quantized decoder layers {n.quantized_bytes / GB:.1f} GB, held "
                f"{QUANT_FACTOR if fused else 1.0:g}x{', less with --no-fused' if fused else ''}"
                if n.quantized_bytes else "")
    raise UserError(f"{name} ({n.parameters / 1e9:.2f} B parameters) needs about {n.stream_bytes / GB:.1f} GB of "
                    f"memory even streamed (--stream; {n.whole_bytes / GB:.1f} GB holding the whole fp32 model; "
                    f"largest unit: {n.largest_unit}, {n.largest_unit_bytes / GB:.1f} GB fp32{variants}), this "
                    f"machine has {available / GB:.1f} GB available")
