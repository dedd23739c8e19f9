"""A GGUF file for the llama.cpp peer row: llama architecture with a preset's decoder shapes (janus-pro-1b:
vocab 102400, hidden 2048, 24 layers, 16 heads of 128, intermediate 5632), seeded random weights, Q8_0 or F32,
written with PyPI `gguf` and streamed (one tensor in memory at a time, the largest in row chunks).

The vocabulary is SentencePiece-style ("llama" tokenizer model): <unk>, <s>, </s>, the 256 byte tokens
<0x00>..<0xFF>, then filler pieces up to the vocabulary size. A prompt of plain ASCII text therefore tokenizes
to one byte token per character (plus BOS and the leading space), so its length is known. The `peers` scenario
and the `run` scenario's wllama backend write it once into the temp folder (`cached_gguf`); `peers --gguf FILE`
takes another.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, LlamaFileType, TokenType
from gguf.quants import quant_shape_to_byte_shape, quantize

from janusweb.log import log, step

TYPES = {"q8_0": (GGMLQuantizationType.Q8_0, LlamaFileType.MOSTLY_Q8_0),
         "f32": (GGMLQuantizationType.F32, LlamaFileType.ALL_F32)}
WEIGHT_STD = 0.02
CHUNK_ROWS = 4096  # rows generated and quantized at once (the embedding is 102400 rows)
SPECIAL = ["<unk>", "<s>", "</s>"]  # ids 0, 1, 2


@dataclass(frozen=True)
class LlamaShapes:
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    rope_theta: float
    rms_eps: float
    context: int = 4096


def preset_shapes(preset: str) -> LlamaShapes:
    """The decoder's shapes, rope theta and RMSNorm epsilon of a janusweb preset's language model."""
    from janusweb.export.presets import SHAPES, janus_config  # transformers: imported only here
    s = SHAPES[preset]
    text = janus_config(s, {"bos": 1, "eos": 2, "pad": 0, "image": 3}).text_config
    return LlamaShapes(s.vocab_size, s.hidden, s.intermediate, s.layers, s.heads, s.kv_heads,
                       text.head_dim, float(text.rope_parameters["rope_theta"]), float(text.rms_norm_eps))


def bundle_shapes(bundle: Path) -> LlamaShapes:
    """The decoder's shapes from a bundle's config.json (`language_config`; rope theta 10000 where unset, as
    transformers' llama default)."""
    t = json.loads((Path(bundle) / "config.json").read_text())["language_config"]
    theta = t.get("rope_theta", (t.get("rope_parameters") or {}).get("rope_theta", 10000.0))
    return LlamaShapes(t["vocab_size"], t["hidden_size"], t["intermediate_size"], t["num_hidden_layers"],
                       t["num_attention_heads"], t["num_key_value_heads"],
                       t.get("head_dim", t["hidden_size"] // t["num_attention_heads"]), float(theta),
                       float(t["rms_norm_eps"]))


def tensor_plan(s: LlamaShapes) -> list:
    """(GGUF name, numpy shape [rows, cols]) in llama.cpp's llama layout; norms are 1-D."""
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    plan = [("token_embd.weight", (s.vocab, s.hidden))]
    for i in range(s.layers):
        b = f"blk.{i}."
        plan += [(b + "attn_norm.weight", (s.hidden,)), (b + "attn_q.weight", (q, s.hidden)),
                 (b + "attn_k.weight", (kv, s.hidden)), (b + "attn_v.weight", (kv, s.hidden)),
                 (b + "attn_output.weight", (s.hidden, q)), (b + "ffn_norm.weight", (s.hidden,)),
                 (b + "ffn_gate.weight", (s.intermediate, s.hidden)), (b + "ffn_up.weight", (s.intermediate, s.hidden)),
                 (b + "ffn_down.weight", (s.hidden, s.intermediate))]
    return plan + [("output_norm.weight", (s.hidden,)), ("output.weight", (s.vocab, s.hidden))]


def vocabulary(n: int) -> tuple:
    """(tokens, scores, token types) of an SPM vocabulary of n byte/filler tokens."""
    if n < len(SPECIAL) + 256:
        raise ValueError(f"a byte vocabulary needs at least {len(SPECIAL) + 256} tokens, not {n}")
    tokens = SPECIAL + [f"<0x{b:02X}>" for b in range(256)]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL] + [TokenType.BYTE] * 256
    fillers = n - len(tokens)
    tokens += [f"[filler{i}]" for i in range(fillers)]
    types += [TokenType.NORMAL] * fillers
    return tokens, [0.0] * len(SPECIAL + list(range(256))) + [-1.0] * fillers, types


def weight_chunks(seed: int, index: int, name: str, shape: tuple):
    """The seeded float32 values of tensor number `index`, in row chunks (norms: 1 + noise; matrices: N(0, 0.02²))."""
    rng = np.random.default_rng([seed, index])
    rows = shape[0] if len(shape) == 2 else 1
    for at in range(0, rows, CHUNK_ROWS):
        chunk = rng.standard_normal((min(CHUNK_ROWS, rows - at), *shape[1:]) if len(shape) == 2 else shape,
                                    dtype=np.float32) * np.float32(WEIGHT_STD)
        yield chunk + np.float32(1.0) if name.endswith("norm.weight") else chunk


def weights(seed: int, index: int, name: str, shape: tuple) -> np.ndarray:
    """Tensor number `index` whole (tests and small shapes)."""
    return np.concatenate(list(weight_chunks(seed, index, name, shape)), axis=0).reshape(shape)


def _qtype(name: str, shape: tuple, kind: str) -> GGMLQuantizationType:
    return TYPES[kind][0] if len(shape) == 2 else GGMLQuantizationType.F32  # norms stay F32, as llama.cpp's


def _metadata(w: GGUFWriter, s: LlamaShapes, kind: str, name: str) -> None:
    w.add_name(name)
    w.add_file_type(TYPES[kind][1])
    w.add_quantization_version(2)
    w.add_context_length(s.context)
    w.add_embedding_length(s.hidden)
    w.add_block_count(s.layers)
    w.add_feed_forward_length(s.intermediate)
    w.add_head_count(s.heads)
    w.add_head_count_kv(s.kv_heads)
    w.add_rope_dimension_count(s.head_dim)
    w.add_rope_freq_base(s.rope_theta)
    w.add_layer_norm_rms_eps(s.rms_eps)
    w.add_vocab_size(s.vocab)
    tokens, scores, types = vocabulary(s.vocab)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)


def write_gguf(out: Path, s: LlamaShapes, kind: str = "q8_0", seed: int = 0, name: str = "janusweb-peer") -> Path:
    """Write the GGUF to `out` (a temporary file beside it, renamed when complete); returns `out`."""
    if kind not in TYPES:
        raise ValueError(f"unknown GGUF type {kind}; known: {', '.join(TYPES)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    plan = tensor_plan(s)
    w = GGUFWriter(tmp, "llama")
    try:
        _metadata(w, s, kind, name)
        for tname, shape in plan:
            qt = _qtype(tname, shape, kind)
            byte_shape = quant_shape_to_byte_shape(shape, qt) if qt != GGMLQuantizationType.F32 else shape
            nbytes = int(np.prod(byte_shape)) * (1 if qt != GGMLQuantizationType.F32 else 4)
            w.add_tensor_info(tname, byte_shape, np.dtype(np.uint8 if qt != GGMLQuantizationType.F32 else np.float32),
                              nbytes, raw_dtype=qt if qt != GGMLQuantizationType.F32 else None)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        for index, (tname, shape) in enumerate(plan):
            qt = _qtype(tname, shape, kind)
            data = np.concatenate([quantize(c, qt) for c in weight_chunks(seed, index, tname, shape)], axis=0)
            w.write_tensor_data(data)
            if index % 9 == 0:
                log.info("  gguf: %d/%d tensors", index + 1, len(plan))
        w.close()
        os.replace(tmp, out)
    except BaseException:
        w.close()
        tmp.unlink(missing_ok=True)
        raise
    return out


def cached_gguf(s: LlamaShapes, kind: str = "q8_0", seed: int = 0) -> Path:
    """The GGUF of these shapes in the temp folder's janusweb-gguf/, written the first time it is asked for."""
    import tempfile
    key = f"{s.vocab}v{s.hidden}h{s.intermediate}i{s.layers}l{s.heads}x{s.head_dim}"
    path = Path(tempfile.gettempdir()) / "janusweb-gguf" / f"peer-{key}-{kind}-seed{seed}.gguf"
    if not path.is_file():
        with step(f"writing the peer GGUF {path}"):
            write_gguf(path, s, kind, seed)
    return path

