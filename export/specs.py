"""One declarative spec per exported graph.

GraphSpec (graph_specs: the seven graphs transformers.js and the page run): file name, wrapper module, named
inputs/outputs with symbolic dims, dummy-input builder, tolerance, and the two sets of dims used to export and
to validate. BuiltSpec (built_specs: the fused WebGPU decoder): a graph another tool builds from the model's
weights, standing in for the graph it `replaces`, validated against that graph's ONNX file.

The export driver, the validator and the manifest writer iterate over graph_specs + built_specs; quantize iterates
over the manifest's graphs the specs wrote; a new graph is a new entry here.
"""

from dataclasses import dataclass, field
from typing import Callable

import torch
from transformers import JanusForConditionalGeneration

from janusweb.export import wrappers
from janusweb.export.fused import export_fused_language_model
from janusweb.fused import REPLACEMENTS, STEM


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dims: tuple  # ints are fixed sizes, strings name a dynamic axis
    dtype: str = "float32"


@dataclass(frozen=True)
class GraphSpec:
    name: str
    wrapper: Callable[[JanusForConditionalGeneration], torch.nn.Module]
    inputs: tuple
    outputs: tuple
    make_inputs: Callable[[dict, torch.Generator], tuple]  # concrete dims -> input tensors
    export_dims: dict  # dynamic dims while tracing (>= 2: size 0/1 would be specialised)
    check_dims: tuple = field(default_factory=tuple)  # other dims used to validate the exported graph
    tolerance: float = 1e-4  # max abs diff relative to max(1, max |reference|)


@dataclass(frozen=True)
class BuiltSpec:
    name: str
    replaces: str  # the GraphSpec whose role it takes (the manifest entry says so: `replaces`)
    build: Callable  # (model, onnx_dir, tokenizer_dir) -> manifest entry; writes onnx_dir/<name>.onnx (+ data)
    compare: Callable  # (path, replaced graph's path, config.json's janusweb block) -> {case: {max_abs_diff,
    #                    reference_abs_max}}: export validates with it, quantize measures the variants with it
    tolerance: float  # max abs diff relative to max(1, reference magnitude)
    tensor: str  # the output compare compares, and the calls it runs (the validation table's tensor and case)
    calls: str


def _ints(gen, high, *shape):
    return torch.randint(0, high, shape, generator=gen)


def _floats(gen, *shape):
    return torch.randn(shape, generator=gen)


def graph_specs(model: JanusForConditionalGeneration) -> list:
    cfg = model.config
    text, vision, vq = cfg.text_config, cfg.vision_config, cfg.vq_config
    hidden, vocab, codebook = text.hidden_size, text.vocab_size, vq.num_embeddings
    layers, kv_heads = text.num_hidden_layers, text.num_key_value_heads
    head_dim = getattr(text, "head_dim", None) or hidden // text.num_attention_heads
    tokens = vision.num_image_tokens
    size = vision.image_size
    image_px = vq.num_patches * 2 ** (len(vq.channel_multiplier) - 1)

    def prepare_inputs(d, gen):
        b, n, s = d["batch_size"], d["images"], d["seq"]
        ids = _ints(gen, vocab, b, s)
        seq_mask = torch.zeros(b, s, dtype=torch.bool)
        emb_mask = torch.ones(b, d.get("mask_images", n), d.get("image_tokens", tokens), dtype=torch.bool)
        for row in range(b):  # each row holds its images one after another after a 2-token text prefix
            seq_mask[row, 2:2 + n * tokens] = True
        if n and b > 1:
            emb_mask[-1, -1] = False  # the last row leaves its last image out
            seq_mask[-1, 2 + (n - 1) * tokens:2 + n * tokens] = False
        ids[seq_mask] = cfg.image_token_id
        pixels = torch.rand(b, n, 3, d.get("height", size), d.get("height", size), generator=gen) * 2 - 1
        return ids, pixels, seq_mask, emb_mask

    def lm_inputs(d, gen):
        b, s, p = d["batch_size"], d["seq"], d["past"]
        mask = torch.ones(b, p + s, dtype=torch.int64)
        if b > 1:
            mask[-1, : min(2, p + s - 1)] = 0  # a left-padded row
        positions = (torch.cumsum(mask, 1) - 1).clamp(min=0)[:, p:]
        past = [_floats(gen, b, kv_heads, p, head_dim) for _ in range(2 * layers)]
        return (_floats(gen, b, s, hidden), mask, positions, *past)

    def gen_step_inputs(d, gen):
        n, s = d["images"], d["seq"]
        # Logits of the tiny presets are small: scale the hidden states so the draws hit varied tokens.
        hidden_states = _floats(gen, 2, n, s, hidden) * 4
        draws = torch.rand(n, tokens, generator=gen)
        tokens_so_far = _ints(gen, codebook, n, tokens).to(torch.float32)
        return (hidden_states, draws, torch.tensor([5.0]), torch.tensor([d.get("temperature", 1.0)]),
                tokens_so_far, torch.tensor([float(d.get("step", 1))]))

    kv_in = [TensorSpec(f"past_key_values.{i}.{k}", ("batch_size", kv_heads, "past", head_dim))
             for i in range(layers) for k in ("key", "value")]
    kv_out = [TensorSpec(f"present.{i}.{k}", ("batch_size", kv_heads, "total", head_dim))
              for i in range(layers) for k in ("key", "value")]
    hidden_in = (TensorSpec("hidden_states", ("batch_size", "seq", hidden)),)

    return [
        GraphSpec(
            "prepare_inputs_embeds", wrappers.PrepareInputsEmbeds,
            inputs=(TensorSpec("input_ids", ("batch_size", "seq"), "int64"),
                    TensorSpec("pixel_values", ("batch_size", "images", 3, "height", "width")),
                    TensorSpec("images_seq_mask", ("batch_size", "seq"), "bool"),
                    TensorSpec("images_emb_mask", ("batch_size", "mask_images", "image_tokens"), "bool")),
            outputs=(TensorSpec("inputs_embeds", ("batch_size", "seq", hidden)),),
            make_inputs=prepare_inputs,
            # traced with images larger than the model's, so that no exporter specialises height to image_size
            export_dims={"batch_size": 2, "images": 2, "seq": 2 * tokens + 5, "height": size + 16},
            check_dims=({"batch_size": 1, "images": 1, "seq": tokens + 7}, {"batch_size": 3, "images": 2, "seq": 2 * tokens + 3},
                        {"batch_size": 1, "images": 0, "seq": 6, "height": 384},
                        # transformers.js's text steps: no pixels, images_emb_mask [1, 1, 0]
                        {"batch_size": 1, "images": 0, "seq": 1, "height": 384, "mask_images": 1, "image_tokens": 0}),
        ),
        GraphSpec(
            "language_model", wrappers.LanguageModel,
            inputs=(TensorSpec("inputs_embeds", ("batch_size", "seq", hidden)),
                    TensorSpec("attention_mask", ("batch_size", "total"), "int64"),
                    TensorSpec("position_ids", ("batch_size", "seq"), "int64"), *kv_in),
            outputs=(TensorSpec("hidden_states", ("batch_size", "seq", hidden)), *kv_out),
            make_inputs=lm_inputs,
            export_dims={"batch_size": 2, "seq": 3, "past": 5},
            check_dims=({"batch_size": 1, "seq": 9, "past": 0}, {"batch_size": 3, "seq": 1, "past": 17},
                        {"batch_size": 2, "seq": 4, "past": 2}),
        ),
        GraphSpec(
            "lm_head", wrappers.LmHead, inputs=hidden_in,
            outputs=(TensorSpec("logits", ("batch_size", "seq", vocab)),),
            make_inputs=lambda d, gen: (_floats(gen, d["batch_size"], d["seq"], hidden),),
            export_dims={"batch_size": 2, "seq": 3}, check_dims=({"batch_size": 1, "seq": 1}, {"batch_size": 3, "seq": 7}),
        ),
        GraphSpec(
            "gen_head", wrappers.GenHead, inputs=hidden_in,
            outputs=(TensorSpec("logits", ("batch_size", "seq", codebook)),),
            make_inputs=lambda d, gen: (_floats(gen, d["batch_size"], d["seq"], hidden),),
            export_dims={"batch_size": 2, "seq": 3}, check_dims=({"batch_size": 1, "seq": 1}, {"batch_size": 4, "seq": 2}),
        ),
        GraphSpec(
            "gen_img_embeds", wrappers.GenImgEmbeds,
            inputs=(TensorSpec("image_ids", ("batch_size", "seq"), "int64"),),
            outputs=(TensorSpec("inputs_embeds", ("batch_size", "seq", hidden)),),
            make_inputs=lambda d, gen: (_ints(gen, codebook, d["batch_size"], d["seq"]),),
            export_dims={"batch_size": 2, "seq": 3}, check_dims=({"batch_size": 1, "seq": 1}, {"batch_size": 4, "seq": 5}),
        ),
        GraphSpec(
            "image_decode", wrappers.ImageDecode,
            inputs=(TensorSpec("generated_tokens", ("batch_size", tokens), "int64"),),
            outputs=(TensorSpec("decoded_image", ("batch_size", 3, image_px, image_px)),),
            make_inputs=lambda d, gen: (_ints(gen, codebook, d["batch_size"], tokens),),
            export_dims={"batch_size": 2}, check_dims=({"batch_size": 1},),  # the VQ decoder is the slowest check
        ),
        GraphSpec(
            "gen_step", wrappers.GenStep,
            inputs=(TensorSpec("hidden_states", (2, "images", "seq", hidden)), TensorSpec("draws", ("images", tokens)),
                    TensorSpec("guidance", (1,)), TensorSpec("temperature", (1,)),
                    TensorSpec("tokens", ("images", tokens)), TensorSpec("step", (1,))),
            outputs=(TensorSpec("image_ids", ("images", 1), "int64"),
                     TensorSpec("inputs_embeds", ("rows", 1, hidden)),
                     TensorSpec("tokens_out", ("images", tokens)),
                     TensorSpec("image_tokens", ("images", tokens), "int64")),
            make_inputs=gen_step_inputs,
            export_dims={"images": 2, "seq": 3},
            check_dims=({"images": 1, "seq": 1}, {"images": 3, "seq": 5, "step": tokens - 1},
                        {"images": 2, "seq": 1, "temperature": 0.0}, {"images": 4, "seq": 2, "temperature": 0.5}),
        ),
    ]


def built_specs(traced: list) -> list:
    """The graphs built beside the traced ones; tolerances are those of the graphs they replace."""
    tolerance = {s.name: s.tolerance for s in traced}
    return [BuiltSpec(STEM, "language_model", export_fused_language_model, REPLACEMENTS[STEM],
                      tolerance["language_model"], "hidden_states", "prefill+4 steps")]

