"""What an export needs in memory, from the config alone, against what the machine has available now.

Two weight sources (export.sources): the whole fp32 model held at once, or streamed (bf16 weights read per graph
and, for the language model, per decoder layer, so that only the largest graph's or layer's fp32 weights are
held). `plan` chooses before any weight is read, against MemAvailable less a margin (never MemTotal: memory that
other programs hold is not there to take):
- the whole model with the end-to-end check at its asked length, where that fits;
- else the whole model with the end-to-end image check shortened (only when --image-steps was not given), where
  at least MIN_IMAGE_STEPS steps fit: the bundle is the same, only the check is shorter;
- else streamed;
- else a one-line refusal. The choice and its reason are one line, logged and recorded in the manifest.

The factors are measured peaks (README, "Export cost"), over fp32 weight bytes: janus-pro-1b's whole-model
export peaked at 19.6 GB with 2 image steps checked end to end and 22.4 GB with all 576 (8.3 GB of fp32
weights: 2.2x, and 4.9 MB per image step, 6.2x the classifier-free-guidance rows' KV cache per position); a
streamed graph holds its fp32 weights, the exporter's serialised copy and onnxruntime's session during the check
(3x). The quantized variants (export.variants) hold the quantized decoder layers: once while onnxruntime-genai's
builder writes the fused decoder, twice while it is compared with language_model<suffix> (two sessions):
QUANT_FACTOR times their size (`--no-fused`: once, while the language model's checks run on it).
"""

from dataclasses import dataclass

import torch
from transformers import JanusConfig, JanusForConditionalGeneration

from janusweb.errors import UserError

GB = 1e9
BASE_BYTES = int(1.5 * GB)  # torch, transformers, onnxruntime and the tokenizer, before any weight
WHOLE_FACTOR = 2.2
IMAGE_STEP_FACTOR = 6.2
STREAM_FACTOR = 3.0
QUANT_FACTOR = 2.2
MARGIN = 0.1  # of MemAvailable, kept free: the peak estimates are measured, not bounds
MIN_IMAGE_STEPS = 8  # fewer than this and the export streams rather than check so little
SCALE_BITS_PER_WEIGHT = 32 / 32  # one fp32 scale per block of 32 weights
LANGUAGE_MODEL = "language_model"


@dataclass(frozen=True)
class Needs:
    parameters: int
    fixed_bytes: int  # peak of the whole-model export without the end-to-end image check's growth
    image_step_bytes: int  # what each image step of the end-to-end check adds to it
    image_tokens: int  # steps of one whole image
    stream_bytes: int  # peak of the streamed export
    largest_unit: str  # the graph or decoder layer that sets stream_bytes
    largest_unit_bytes: int  # its fp32 weights
    quantized_bytes: int = 0  # the widest quantized variant of the decoder layers (0: none asked)

    def whole_bytes(self, image_steps: int | None = None) -> int:
        """Peak of the whole-model export checking `image_steps` end to end (None: every step of one image)."""
        steps = self.image_tokens if image_steps is None else min(image_steps, self.image_tokens)
        return self.fixed_bytes + steps * self.image_step_bytes


@dataclass(frozen=True)
class Plan:
    streamed: bool
    image_steps: int | None  # the end-to-end image steps to run (None: every step of one image)
    line: str  # what was chosen and why


def _meminfo(field: str) -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/meminfo has no {field} line")


def mem_available() -> int:
    """MemAvailable of /proc/meminfo, in bytes: what can be used now without swapping."""
    return _meminfo("MemAvailable")


def budget(available: int | None = None) -> int:
    """What an export may plan to use: MemAvailable (or `available`) less MARGIN."""
    return int((mem_available() if available is None else available) * (1 - MARGIN))


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


def language_model_bytes(model: JanusForConditionalGeneration) -> int:
    """fp32 bytes of language_model.onnx: the decoder without its token embedding (prepare_inputs_embeds')."""
    lm = model.model.language_model
    return _fp32_bytes(lm) - 4 * lm.embed_tokens.weight.numel()


def fused_fp32_bytes(model: JanusForConditionalGeneration) -> int:
    """The streamed source's fp32 fused decoder: its weights held by the builder until it is saved, then two
    sessions while it is compared with language_model.onnx (QUANT_FACTOR over the fp32 decoder)."""
    return BASE_BYTES + int(QUANT_FACTOR * language_model_bytes(model))


def needs(config: JanusConfig, bits=(), fused: bool = True) -> Needs:
    """bits: the weight bits of the quantized variants (int8: 8, q4: 4)."""
    model = meta_model(config)
    parameters = sum(p.numel() for p in model.parameters())
    sizes = units(model)
    largest = max(sizes, key=sizes.get)
    quantized = max((quantized_layer_bytes(model, b) for b in bits), default=0)
    held = (QUANT_FACTOR if fused else 1.0) * quantized
    text = config.text_config
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    kv_per_position = 2 * text.num_hidden_layers * 2 * text.num_key_value_heads * head_dim * 4  # two CFG rows
    fixed = max(WHOLE_FACTOR * 4 * parameters, 4 * parameters + held)
    return Needs(parameters, BASE_BYTES + int(fixed), int(IMAGE_STEP_FACTOR * kv_per_position),
                 config.vision_config.num_image_tokens, BASE_BYTES + int(max(STREAM_FACTOR * sizes[largest], held)),
                 largest, sizes[largest], quantized)


def plan(name: str, config: JanusConfig, stream: bool, image_steps: int | None = None, validate: bool = True,
         available: int | None = None, bits=(), fused: bool = True) -> Plan:
    """The weight source and the end-to-end length (see the module docstring); UserError (one line) when not even
    the streamed export fits. image_steps: as asked (None: not given); validate=False: no end-to-end check."""
    n = needs(config, bits, fused)
    available = mem_available() if available is None else available
    room = budget(available)
    have = f"{available / GB:.1f} GB available, {MARGIN:.0%} of it kept free"
    whole = n.whole_bytes(image_steps if validate else 0)
    if not stream and whole <= room:
        return Plan(False, image_steps, f"{name}: the whole fp32 model in memory (about {whole / GB:.1f} GB; {have})")
    if not stream and validate and image_steps is None:
        steps = (room - n.whole_bytes(0)) // max(1, n.image_step_bytes)
        if steps >= MIN_IMAGE_STEPS:
            return Plan(False, int(steps), f"{name}: the whole fp32 model in memory, the end-to-end image check "
                        f"shortened to {steps} of {n.image_tokens} steps (all of them need about {whole / GB:.1f} "
                        f"GB; {have})")
    if n.stream_bytes <= room:
        why = "--stream" if stream else f"the whole fp32 model needs about {whole / GB:.1f} GB"
        return Plan(True, image_steps, f"{name}: streamed ({why}; streamed about {n.stream_bytes / GB:.1f} GB; "
                                       f"{have})")
    variants = (f"; quantized decoder layers {n.quantized_bytes / GB:.1f} GB, held "
                f"{QUANT_FACTOR if fused else 1.0:g}x{', less with --no-fused' if fused else ''}"
                if n.quantized_bytes else "")
    raise UserError(f"{name} ({n.parameters / 1e9:.2f} B parameters) needs about {n.stream_bytes / GB:.1f} GB of "
                    f"memory even streamed (--stream; {whole / GB:.1f} GB holding the whole fp32 model; "
                    f"largest unit: {n.largest_unit}, {n.largest_unit_bytes / GB:.1f} GB fp32{variants}), this "
                    f"machine has {have}")
