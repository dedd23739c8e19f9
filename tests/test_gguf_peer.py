"""The llama.cpp peer's GGUF writer on tiny shapes, read back with gguf's own reader: llama.cpp's llama tensor
names, GGML shapes (as llama.cpp's llama loader creates them) and types; Q8_0 dequantizes to the seeded weights
within Q8_0's rounding; the row-chunked stream draws the same values as one draw of the whole tensor."""

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q, GGUFReader, TokenType
from gguf.quants import dequantize

from janusweb.bench import gguf_peer
from janusweb.bench.gguf_peer import LlamaShapes, write_gguf

S = LlamaShapes(vocab=300, hidden=64, intermediate=96, layers=2, heads=4, kv_heads=2, head_dim=16,
                rope_theta=10000.0, rms_eps=1e-6)


def _expected(s: LlamaShapes) -> dict:
    """name -> GGML shape (ne0 first), as llama.cpp's llama loader creates the tensors."""
    e, q, kv = s.hidden, s.heads * s.head_dim, s.kv_heads * s.head_dim
    out = {"token_embd.weight": [e, s.vocab], "output_norm.weight": [e], "output.weight": [e, s.vocab]}
    for i in range(s.layers):
        out |= {f"blk.{i}.attn_norm.weight": [e], f"blk.{i}.attn_q.weight": [e, q], f"blk.{i}.attn_k.weight": [e, kv],
                f"blk.{i}.attn_v.weight": [e, kv], f"blk.{i}.attn_output.weight": [q, e],
                f"blk.{i}.ffn_norm.weight": [e], f"blk.{i}.ffn_gate.weight": [e, s.intermediate],
                f"blk.{i}.ffn_up.weight": [e, s.intermediate], f"blk.{i}.ffn_down.weight": [s.intermediate, e]}
    return out


def _field(reader, key):
    f = reader.fields[key]
    return f.contents()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("gguf")
    return {k: write_gguf(d / f"tiny-{k}.gguf", S, k, seed=7) for k in ("q8_0", "f32")}


@pytest.mark.parametrize("kind", ["q8_0", "f32"])
def test_llama_layout_names_shapes_types(files, kind):
    r = GGUFReader(files[kind])
    got = {t.name: t for t in r.tensors}
    want = _expected(S)
    assert set(got) == set(want)
    for name, shape in want.items():
        assert list(got[name].shape) == shape, name
        matrix_type = Q.Q8_0 if kind == "q8_0" else Q.F32
        assert got[name].tensor_type == (matrix_type if len(shape) == 2 else Q.F32), name
    assert _field(r, "general.architecture") == "llama"
    assert _field(r, "general.file_type") == (7 if kind == "q8_0" else 0)  # LLAMA_FTYPE_MOSTLY_Q8_0 / ALL_F32
    assert [_field(r, f"llama.{k}") for k in ("embedding_length", "block_count", "feed_forward_length",
                                               "attention.head_count", "attention.head_count_kv",
                                               "rope.dimension_count")] == [64, 2, 96, 4, 2, 16]
    assert _field(r, "llama.rope.freq_base") == pytest.approx(10000.0)
    assert _field(r, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(1e-6)
    tokens, types = _field(r, "tokenizer.ggml.tokens"), _field(r, "tokenizer.ggml.token_type")
    assert _field(r, "tokenizer.ggml.model") == "llama" and len(tokens) == S.vocab == len(types)
    assert tokens[:3] == ["<unk>", "<s>", "</s>"] and tokens[3 + 0x41] == "<0x41>"
    assert sum(t == TokenType.BYTE for t in types) == 256 and len(set(tokens)) == S.vocab
    assert (_field(r, "tokenizer.ggml.bos_token_id"), _field(r, "tokenizer.ggml.eos_token_id")) == (1, 2)


def test_q8_0_dequantizes_to_the_seeded_weights(files):
    q8 = {t.name: t for t in GGUFReader(files["q8_0"]).tensors}
    f32 = {t.name: t for t in GGUFReader(files["f32"]).tensors}
    for index, (name, shape) in enumerate(gguf_peer.tensor_plan(S)):
        w = gguf_peer.weights(7, index, name, shape)
        assert np.array_equal(np.asarray(f32[name].data).reshape(shape), w), name
        back = dequantize(np.asarray(q8[name].data), q8[name].tensor_type).reshape(shape)
        blocks = np.abs(w.reshape(-1, 32) if w.ndim == 2 else w.reshape(1, -1)).max(axis=1, keepdims=True)
        err = np.abs(back - w).reshape(blocks.shape[0], -1)
        assert (err <= blocks / 127 * 0.5 + 1e-3 * blocks + 1e-7).all(), name  # half a step, plus f16 scales


def test_streamed_chunks_draw_the_same_values_as_one_draw(monkeypatch):
    monkeypatch.setattr(gguf_peer, "CHUNK_ROWS", 7)
    w = gguf_peer.weights(3, 0, "token_embd.weight", (S.vocab, S.hidden))
    whole = np.random.default_rng([3, 0]).standard_normal((S.vocab, S.hidden), dtype=np.float32) * np.float32(0.02)
    assert np.array_equal(w, whole)
    assert w.std() == pytest.approx(0.02, rel=0.05)


def test_refuses_what_llama_cpp_cannot_load(tmp_path):
    with pytest.raises(ValueError, match="unknown GGUF type"):
        write_gguf(tmp_path / "x.gguf", S, "q2")
    with pytest.raises(ValueError, match="at least 259"):
        write_gguf(tmp_path / "y.gguf", LlamaShapes(200, 64, 96, 1, 4, 4, 16, 1e4, 1e-6), "f32")
    assert list(tmp_path.iterdir()) == []  # nothing half-written
